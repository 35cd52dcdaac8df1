"""The ``PyairError`` family: every user-facing failure carries a location and a fix.

Example::

    raise ConfigError("unknown key 'dealy'", path=p, line=7, hint="did you mean 'delay'?")
    # -> .air.toml:7: unknown key 'dealy'; did you mean 'delay'?
"""

from __future__ import annotations

from pathlib import Path


class PyairError(Exception):
    """Base class: a one-line message, optionally with ``file:line[:col]`` and a hint."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        col: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.col = col
        self.hint = hint

    @property
    def location(self) -> str:
        if self.path is None:
            return ""
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        return where

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text += f"; {self.hint}"
        where = self.location
        return f"{where}: {text}" if where else text


class ConfigError(PyairError):
    """Bad config file, bad override flag or bad CLI usage: nothing is started."""

    exit_code = 2


class UsageError(ConfigError):
    """A bad command line."""


class BuildError(PyairError):
    """A build step exited non-zero (the old app keeps serving)."""
