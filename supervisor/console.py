"""pyair's own output: one prefix and colour per component, on stderr (as air does since #887).

    console = Console(config.log, config.color, config.screen)
    console.watcher("app.py changed")          # "watcher  app.py changed"
    console.error("build failed", source=...)  # red, never silenced by main_only
    console.name_processes(["worker", "tailwind"])  # each its own label and colour
    console.process_output("worker", "task received")  # "worker   task received"

This is the only module that imports rich. Colours follow ``[color]``; ``NO_COLOR`` and a
non-TTY stderr give plain text, so CI logs stay readable.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console as RichConsole
from rich.text import Text

from .config import ColorConfig, LogConfig, ScreenConfig

COMPONENTS = ("main", "watcher", "build", "runner")
_LABELS = {"main": "pyair", "watcher": "watch", "build": "build", "runner": "run", "app": "app"}
# the extra processes' labels, in order (pyair's own components use the [color] ones)
PROCESS_COLOURS = ("bright_blue", "bright_magenta", "bright_cyan", "bright_yellow", "blue", "red")


class Console:
    """Prefixed, coloured log lines for each pyair component."""

    def __init__(
        self,
        log: LogConfig | None = None,
        color: ColorConfig | None = None,
        screen: ScreenConfig | None = None,
        *,
        debug: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.log = log or LogConfig()
        self.color = color or ColorConfig()
        self.screen = screen or ScreenConfig()
        self.debug_enabled = debug
        self.stream = stream or sys.stderr
        mode = (self.color.mode or "auto").lower()
        force = True if mode == "always" else None
        no_color = mode == "never" or "NO_COLOR" in os.environ
        self._rich = RichConsole(
            file=self.stream,
            force_terminal=force,
            no_color=no_color,
            highlight=False,
            soft_wrap=True,
            emoji=False,
            markup=False,
        )
        self._width = 6  # of the labels: pyair's components, then the processes' names
        self._prefixes: dict[str, str] = {}  # a process's name -> its rendered label

    @property
    def coloured(self) -> bool:
        """Whether this console writes colours (a terminal, or ``--color always``)."""
        return self._rich.color_system is not None and not self._rich.no_color

    # -- extra processes ------------------------------------------------------------------

    def name_processes(self, names: Sequence[str]) -> None:
        """Give each extra process a label and a colour (the labels widen to the longest)."""
        self._width = max(6, *(len(name) for name in names)) if names else 6
        self._prefixes.clear()
        for index, name in enumerate(names):
            colour = PROCESS_COLOURS[index % len(PROCESS_COLOURS)]
            with self._rich.capture() as capture:
                self._rich.print(Text(f"{name:<{self._width}}", style=colour), end="")
            self._prefixes[name] = capture.get() + " "

    def process_output(self, name: str, line: str) -> None:
        """A line a process printed, under its label (like the app's output, never silenced).

        Written straight to the stream, not through rich: a chatty process prints many, and
        its own colours pass through as they are.
        """
        prefix = self._prefixes.get(name) or f"{name:<{self._width}} "
        stamp = time.strftime("[%H:%M:%S] ") if self.log.time else ""
        with contextlib.suppress(OSError, ValueError):  # the terminal is gone
            self.stream.write(f"{stamp}{prefix}{line}\n")

    def process(self, name: str, message: str, *, error: bool = False) -> None:
        """pyair's line about a process (started, exited, restarting), under its label."""
        if error:
            self._line("main", message, style="bold red", label=name)
        else:
            self._line("runner", message, quiet_when_main_only=True, label=name)

    def rule(self, name: str, message: str, *, error: bool = False) -> None:
        """A line about a ``[[build.rules]]`` entry: ``build  [css] ...``."""
        if error:
            self._line("build", f"[{name}] {message}", style="bold red")
        else:
            self._line("build", f"[{name}] {message}", quiet_when_main_only=True)

    def rule_output(self, name: str, line: str) -> None:
        """A line printed by a rule's command, shown as it arrives."""
        self._line("build", f"[{name}] {line}", quiet_when_main_only=True, dim=True)

    # -- components -----------------------------------------------------------------------

    def main(self, message: str) -> None:
        self._line("main", message)

    def watcher(self, message: str) -> None:
        self._line("watcher", message, quiet_when_main_only=True)

    def build(self, message: str) -> None:
        self._line("build", message, quiet_when_main_only=True)

    def runner(self, message: str) -> None:
        self._line("runner", message, quiet_when_main_only=True)

    def build_output(self, line: str) -> None:
        """A line printed by a build step, shown as it arrives."""
        self._line("build", line.rstrip("\n"), quiet_when_main_only=True, dim=True)

    def debug(self, message: str) -> None:
        if self.debug_enabled:
            self._line("main", message, dim=True)

    def warning(self, message: str) -> None:
        self._line("main", message, style="yellow")

    def error(self, message: str, *, source: Sequence[str] = ()) -> None:
        """An error line (never hidden by ``main_only``), with optional source context lines."""
        self._line("main", message, style="bold red")
        for line in source:
            self._line("main", line, style="red", dim=True)

    # -- screen ---------------------------------------------------------------------------

    def clear_on_rebuild(self) -> None:
        if self.screen.clear_on_rebuild and not self.log.silent and self.stream.isatty():
            self.stream.write("\033[2J\033[H" if self.screen.keep_scroll else "\033c")
            self.stream.flush()

    # -- internals ------------------------------------------------------------------------

    def _line(
        self,
        component: str,
        message: str,
        *,
        quiet_when_main_only: bool = False,
        style: str | None = None,
        dim: bool = False,
        label: str | None = None,
    ) -> None:
        if self.log.silent or (quiet_when_main_only and self.log.main_only):
            return
        text = Text()
        if self.log.time:
            text.append(time.strftime("[%H:%M:%S] "), style="dim")
        if label is not None and label in self._prefixes:
            text.append_text(Text.from_ansi(self._prefixes[label]))
        else:
            colour = getattr(self.color, component, "") if component in COMPONENTS else ""
            label_style = None if colour in ("", "raw") else colour
            text.append(f"{label or _LABELS[component]:<{self._width}}", style=label_style)
            text.append(" ")
        body_style = style or ("dim" if dim else None)
        text.append(message, style=body_style)
        self._rich.print(text)
