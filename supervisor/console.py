"""pyair's own output: one prefix and colour per component, on stderr (as air does since #887).

    console = Console(config.log, config.color, config.screen)
    console.watcher("app.py changed")          # "watcher  app.py changed"
    console.error("build failed", source=...)  # red, never silenced by main_only

This is the only module that imports rich. Colours follow ``[color]``; ``NO_COLOR`` and a
non-TTY stderr give plain text, so CI logs stay readable.
"""

from __future__ import annotations

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
    ) -> None:
        if self.log.silent or (quiet_when_main_only and self.log.main_only):
            return
        text = Text()
        if self.log.time:
            text.append(time.strftime("[%H:%M:%S] "), style="dim")
        colour = getattr(self.color, component, "") if component in COMPONENTS else ""
        label_style = None if colour in ("", "raw") else colour
        text.append(f"{_LABELS[component]:<6}", style=label_style)
        text.append(" ")
        body_style = style or ("dim" if dim else None)
        text.append(message, style=body_style)
        self._rich.print(text)
