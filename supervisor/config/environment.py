"""The environment of build steps and the app: ``[env]``, ``env_files`` (dotenv) and pyair's own.

    env = child_environment(config, os.environ)    # re-reads the env_files on every call
    parse_dotenv("A=1\\nB=${A}2\\n")                # {'A': '1', 'B': '12'}

Nothing here touches ``os.environ``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .schema import Config


def check_env_name(name: str) -> str | None:
    """Why ``name`` cannot name an environment variable, or None when it can."""
    if not name:
        return "an environment variable name cannot be empty"
    if "=" in name or "\0" in name:
        return f"{name!r} cannot be an environment variable name (no '=' or NUL)"
    return None


_ENV_KEY = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.-]*)[ \t]*[=:][ \t]*")
_ENV_VAR = re.compile(r"(\\)?\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_DQ_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "\\$"}


def _dotenv_entries(text: str) -> list[tuple[str, str, bool]]:
    """(key, raw value, expand?) in file order, as godotenv reads them."""
    entries: list[tuple[str, str, bool]] = []
    text = text.replace("\r\n", "\n")
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        match = _ENV_KEY.match(text, pos, end)
        if not match or text[pos:end].lstrip().startswith("#"):
            pos = end + 1
            continue
        key, start = match.group(1), match.end()
        quote = text[start] if start < len(text) else ""
        if quote in ("'", '"'):
            close = start + 1
            while close < len(text):
                if text[close] == "\\" and quote == '"':
                    close += 2
                    continue
                if text[close] == quote:
                    break
                close += 1
            if close < len(text):  # a quoted value, possibly over several lines
                body = text[start + 1 : close]
                if quote == '"':
                    body = re.sub(r"\\(.)", lambda m: _DQ_ESCAPES.get(m[1], m[1]), body, flags=re.S)
                entries.append((key, body, quote == '"'))
                nl = text.find("\n", close)
                pos = len(text) if nl < 0 else nl + 1
                continue
        value = text[start:end]
        comment = re.search(r"(^|[ \t])#", value)
        if comment:
            value = value[: comment.start()]
        entries.append((key, value.strip(), True))
        pos = end + 1
    return entries


def _expand_dotenv(
    entries: list[tuple[str, str, bool]],
    first: Mapping[str, str],
    last: Mapping[str, str],
) -> dict[str, str]:
    """Resolve ``$VAR``/``${VAR}``: from ``first``, else the file's own keys (in any order,
    cycles give ""), else ``last``; ``\\$`` is a literal dollar."""
    raw: dict[str, tuple[str, bool]] = {}
    for key, value, expand in entries:
        raw[key] = (value, expand)
    done: dict[str, str] = {}
    active: set[str] = set()

    def lookup(name: str) -> str:
        if name in first:
            return first[name]
        if name in raw and name not in active:
            return resolve(name)
        return last.get(name, "")

    def resolve(key: str) -> str:
        if key not in done:
            value, expand = raw[key]
            active.add(key)
            if expand:

                def swap(m: re.Match[str]) -> str:
                    return m[0][1:] if m[1] else lookup(m[2] or m[3])

                value = _ENV_VAR.sub(swap, value)
            active.discard(key)
            done[key] = value
        return done[key]

    return {key: resolve(key) for key in raw}


def parse_dotenv(text: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``KEY=value`` lines as godotenv reads them.

    ``export`` prefixes, ``#`` comments (whole-line, or after a space), single quotes
    (literal), double quotes (``\\n``, ``\\t``, ``\\"`` escapes; may span lines), and
    ``$VAR``/``${VAR}`` expansion in unquoted and double-quoted values. A variable is looked
    up in ``environ`` first (those values win in the child), then in the file itself.
    """
    return _expand_dotenv(_dotenv_entries(text), environ or {}, {})


def child_environment(
    config: Config, base: Mapping[str, str], *, read: Callable[[Path], str] | None = None
) -> dict[str, str]:
    """The environment for build steps and the app: ``base`` + env_files + ``[env]``.

    As in air, env_files never override a variable already in ``base``; among the files, a
    later one wins; missing files are skipped. ``[env]`` (and ``--env.NAME``) override all.
    Re-read on every call, so edits to ``.env`` apply at the next restart. Nothing here
    touches ``os.environ``.
    """
    reader = read or (lambda p: p.read_text(encoding="utf-8"))
    from_files: dict[str, str] = {}
    for name in config.env_files:
        path = config.root / Path(name).expanduser()
        try:
            text = reader(path)
        except (OSError, UnicodeDecodeError):
            continue
        entries = _dotenv_entries(text.removeprefix("\ufeff"))
        from_files.update(_expand_dotenv(entries, base, from_files))
    env = dict(base)
    for key, value in from_files.items():
        env.setdefault(key, value)
    env.update(config.env)
    return env
