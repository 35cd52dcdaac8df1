"""The command that starts the app: air's ``full_bin`` > ``entrypoint`` > ``bin``, else detected.

    command = resolve_app_command(config)   # also config.app_command()
    command.argv or command.shell           # ('/venv/bin/python', 'app.py') or 'python app.py'
    command.display                         # as the console shows it

With none of air's three set, a Python app is found by its file (``app.py``, ``main.py``,
``manage.py``) and run with the project's interpreter (see :func:`python_executable`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .schema import Config


@dataclass(frozen=True)
class AppCommand:
    """How to start the app: ``argv`` run directly, or ``shell`` through ``/bin/sh -c``."""

    argv: tuple[str, ...] | None
    shell: str | None

    @property
    def display(self) -> str:
        return self.shell if self.shell is not None else shlex.join(self.argv or ())


def python_executable(root: Path | None = None) -> str:
    """The interpreter for a detected Python app.

    The active venv's (``$VIRTUAL_ENV``), else the project's ``.venv``/``venv`` under
    ``root``, else pyair's own when pyair runs in a venv, else ``python3`` on PATH.
    """
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        candidate = Path(venv) / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    if root is not None:
        for name in (".venv", "venv"):
            candidate = root / name / "bin" / "python"
            if candidate.exists():
                return str(candidate)
    if sys.prefix != sys.base_prefix or not (shutil.which("python3") or shutil.which("python")):
        return sys.executable
    return shutil.which("python3") or shutil.which("python") or sys.executable


def detect_entry(root: Path) -> tuple[str, ...] | None:
    """``app.py``, ``main.py`` or ``manage.py runserver --noreload`` in ``root``, if present."""
    for name in ("app.py", "main.py"):
        if (root / name).is_file():
            return (name,)
    if (root / "manage.py").is_file():
        return ("manage.py", "runserver", "--noreload")
    return None


# How a loader reports a bad key: (dotted key, what is wrong, how to fix it) -> the error.
Problem = Callable[[str, str, str], ConfigError]


def resolve_app_command(config: Config, *, problem: Problem | None = None) -> AppCommand:
    """air's order: full_bin (a shell line) > entrypoint (argv) > bin (a shell line); else a
    detected ``app.py`` / ``main.py`` / ``manage.py``. args_bin, then the extra args, follow.

    ``problem`` words an error about a key (loading passes one that points at the key's line).
    """
    build = config.build
    extra = (*build.args_bin, *config.extra_args)

    def fail(dotted: str, what: str, hint: str) -> ConfigError:
        if problem is not None:
            return problem(dotted, what, hint)
        return ConfigError(f"{dotted}: {what}", path=config.source, hint=hint)

    if build.full_bin:
        shell = build.full_bin + (" " + shlex.join(extra) if extra else "")
        return AppCommand(argv=None, shell=shell)
    if build.entrypoint:
        exe = build.entrypoint[0]
        expanded = os.path.expanduser(exe)
        if os.path.isabs(expanded) or "/" in exe or os.sep in exe:
            # relative to root; never resolve symlinks: .venv/bin/python must stay the venv's
            resolved = os.path.normpath(config.root / expanded)
            if not build.cmd and not os.path.exists(resolved):
                raise fail(
                    "build.entrypoint",
                    f"{exe!r} does not exist (looked for {resolved})",
                    "give a path relative to root, or set [build] cmd to build it",
                )
        else:
            found = shutil.which(exe)
            resolved = found if found else str(config.root / exe)
            if found is None and not build.cmd and not os.path.exists(resolved):
                raise fail(
                    "build.entrypoint",
                    f"{exe!r} is not on PATH and not in {config.root}",
                    'install it, or give a path relative to root, e.g. ["./bin/app"]',
                )
        return AppCommand(argv=(resolved, *build.entrypoint[1:], *extra), shell=None)
    if build.bin:
        shell = build.bin + (" " + shlex.join(extra) if extra else "")
        return AppCommand(argv=None, shell=shell)
    entry = detect_entry(config.root)
    if entry is None:
        raise ConfigError(
            f"no app to run: no app.py, main.py or manage.py in {config.root}",
            path=config.source,
            hint='set [build] full_bin, e.g. full_bin = "python server.py"',
        )
    return AppCommand(argv=(python_executable(config.root), *entry, *extra), shell=None)
