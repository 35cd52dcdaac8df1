"""Air-style TOML config: air's keys, units and defaults, plus pyair's own sections.

    cfg = load_config(Path(".air.toml"), overrides={"build.delay": "50"})
    cfg.build.delay          # 50 (milliseconds)
    cfg.app_command().argv   # ['/usr/bin/python3', 'app.py']

Every problem is a :class:`ConfigError` whose ``str()`` is one line:
``.air.toml:7:3: unknown key 'dealy' in [build]; did you mean 'delay'?``

The file is parsed with the standard library's ``tomllib`` (``tomli`` before 3.11): its
syntax errors already carry line and column, and for semantic errors (unknown key, wrong type)
a small scanner finds the line of each key, so no third-party parser is needed on 3.11+.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_CANDIDATES = (".air.toml", ".config/air.toml")

# Directories no Python project wants watched; skipped at any depth, whatever exclude_dir says.
ALWAYS_EXCLUDED_DIRS = (
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "__pycache__",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    ".hypothesis",
    "site-packages",
)

TEMPLATE_EXTS = ("html", "htm", "jinja", "jinja2", "j2", "tpl", "tmpl", "txt", "xml")
DEFAULT_INCLUDE_EXT = ("py", "html", "htm", "jinja", "jinja2", "j2", "tpl", "tmpl", "css", "js")


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class BuildConfig:
    pre_cmd: tuple[str, ...] = ()
    cmd: str = ""
    post_cmd: tuple[str, ...] = ()
    bin: str = ""
    entrypoint: tuple[str, ...] = ()
    full_bin: str = ""
    args_bin: tuple[str, ...] = ()
    log: str = "build-errors.log"
    include_ext: tuple[str, ...] = DEFAULT_INCLUDE_EXT
    exclude_dir: tuple[str, ...] = ("assets", "tmp", "vendor", "testdata")
    include_dir: tuple[str, ...] = ()
    include_file: tuple[str, ...] = ()
    exclude_file: tuple[str, ...] = ()
    exclude_regex: tuple[str, ...] = (r"_test\.py$",)
    exclude_unchanged: bool = False
    follow_symlink: bool = False
    poll: bool = False
    poll_interval: int = 500  # ms; smaller values become 500 (air's minimum)
    delay: int = 10  # ms of quiet before acting on a save (trailing; air: 1000 ms leading)
    stop_on_error: bool = False
    send_interrupt: bool = False
    kill_delay: int = 500  # ms between the polite signal and SIGKILL
    rerun: bool = False
    rerun_delay: int = 500  # ms
    ignore_dangerous_root_dir: bool = False
    # pyair additions
    ready_url: str = ""
    ready_timeout: int = 10_000  # ms
    # "auto" (restarts fork a warm interpreter that imported what the last app did), or the
    # modules to preload; () when off (preload = false). See supervisor/zygote.py.
    preload: str | tuple[str, ...] = "auto"


@dataclass(frozen=True)
class LogConfig:
    time: bool = False
    main_only: bool = False
    silent: bool = False


@dataclass(frozen=True)
class ColorConfig:
    main: str = "magenta"
    watcher: str = "cyan"
    build: str = "yellow"
    runner: str = "green"
    app: str = ""
    mode: str = "auto"


@dataclass(frozen=True)
class MiscConfig:
    clean_on_exit: bool = False
    startup_banner: str | None = None


@dataclass(frozen=True)
class ScreenConfig:
    clear_on_rebuild: bool = False
    keep_scroll: bool = True


@dataclass(frozen=True)
class ProxyConfig:
    enabled: bool = False
    proxy_port: int = 0
    app_port: int = 0
    app_start_timeout: int = 5000  # ms; 0 means this default (air)
    css_refresh: bool = True
    bind: str = "127.0.0.1"


@dataclass(frozen=True)
class TemplatesConfig:
    include_ext: tuple[str, ...] = ("html", "jinja", "jinja2", "j2")
    include_dir: tuple[str, ...] = ()
    exclude_dir: tuple[str, ...] = ()
    on_no_agent: str = "restart"
    swap_timeout: int = 1000  # ms


@dataclass(frozen=True)
class AppCommand:
    """How to start the app: ``argv`` run directly, or ``shell`` through ``/bin/sh -c``."""

    argv: tuple[str, ...] | None
    shell: str | None

    @property
    def display(self) -> str:
        return self.shell if self.shell is not None else shlex.join(self.argv or ())


@dataclass(frozen=True)
class Config:
    root: Path = field(default_factory=Path.cwd)
    tmp_dir: str = "tmp"
    testdata_dir: str = "testdata"
    env_files: tuple[str, ...] = ()
    build: BuildConfig = BuildConfig()
    log: LogConfig = LogConfig()
    color: ColorConfig = ColorConfig()
    misc: MiscConfig = MiscConfig()
    screen: ScreenConfig = ScreenConfig()
    proxy: ProxyConfig = ProxyConfig()
    templates: TemplatesConfig = TemplatesConfig()
    env: Mapping[str, str] = field(default_factory=dict)  # read-only after load_config
    # where it came from, and the extra args given after ``--``
    source: Path | None = None
    extra_args: tuple[str, ...] = ()
    unused_keys: tuple[str, ...] = ()

    @property
    def tmp_path(self) -> Path:
        return self.root / self.tmp_dir

    @property
    def build_log_path(self) -> Path:
        return self.tmp_path / self.build.log

    def app_command(self) -> AppCommand:
        """The command that starts the app (air's full_bin > entrypoint > bin, else detected)."""
        return resolve_app_command(self)


SECTIONS: dict[str, type[Any]] = {
    "build": BuildConfig,
    "log": LogConfig,
    "color": ColorConfig,
    "misc": MiscConfig,
    "screen": ScreenConfig,
    "proxy": ProxyConfig,
    "templates": TemplatesConfig,
}
TOP_LEVEL_KINDS = {
    "root": "str",
    "tmp_dir": "str",
    "testdata_dir": "str",
    "env_files": "tuple[str, ...]",
}
TOP_LEVEL_KEYS = tuple(TOP_LEVEL_KINDS)
OS_OVERRIDE_KEYS = ("pre_cmd", "cmd", "post_cmd", "bin", "entrypoint", "full_bin", "args_bin")
OS_SECTIONS = ("linux", "darwin", "windows", "freebsd", "openbsd", "netbsd")

# Keys air documents that mean nothing for pyair: accepted, named once as unused.
UNUSED_KEYS = {
    "color.app": "air reads no colour for the app either; the app's own output is passed through",
    "build.rules": "[[build.rules]] is not supported yet; those files are watched as usual",
    "watch_dir": "a legacy .air.conf key; use [build] include_dir",
}

DURATION_KEYS = {
    "build.poll_interval",
    "build.delay",
    "build.kill_delay",
    "build.rerun_delay",
    "build.ready_timeout",
    "proxy.app_start_timeout",
    "templates.swap_timeout",
}
PORT_KEYS = {"proxy.proxy_port", "proxy.app_port"}
CHOICES = {
    "color.mode": ("auto", "always", "never", ""),
    "templates.on_no_agent": ("restart", "ignore"),
}
COLOR_KEYS = {"color.main", "color.watcher", "color.build", "color.runner", "color.app"}
COLOR_NAMES = ("red", "green", "yellow", "blue", "magenta", "cyan", "white", "raw", "")
READY_URL_PREFIXES = ("http://", "https://", "/")
MIN_POLL_INTERVAL_MS = 500
DEFAULT_APP_START_TIMEOUT_MS = 5000


# --------------------------------------------------------------------------- locating keys


_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class KeyLines:
    """Maps dotted key paths of a TOML text to (line, column), both 1-based.

    A scanner, not a parser: it never reads values, it only tracks where each key, table
    header and inline-table key starts. It follows strings (including multi-line ones that
    span lines inside arrays), comments, arrays and inline tables, so text inside a string
    is never mistaken for a key or a ``[table]`` header. It never raises, whatever the text.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[str, tuple[int, int]] = {}
        # (line, col, what) of the first string or bracket that never closes: a syntax error
        # "at end of document" really starts there
        self.unclosed: tuple[int, int, str] | None = None
        self._text = text
        self._i = 0
        self._line = 1
        self._line_start = 0
        self._starts: list[int] = []
        with contextlib.suppress(IndexError):  # malformed text: keep what was found
            self._scan()

    def find(self, dotted: str) -> tuple[int | None, int | None]:
        """The position of ``dotted``, else of its closest recorded parent, else (None, None)."""
        probe = dotted
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe.rpartition(".")[0]
        return None, None

    # -- scanning -------------------------------------------------------------------------

    def _record(self, path: list[str], pos: int) -> None:
        if path:
            self.lines.setdefault(".".join(path), (self._line, pos - self._line_start + 1))

    def _record_key(self, prefix: list[str], key: list[str]) -> None:
        for n, start in enumerate(self._starts[: len(key)], start=1):
            self._record([*prefix, *key[:n]], start)

    def _pos(self, at: int) -> tuple[int, int]:
        return self._line, at - self._line_start + 1

    def _mark_unclosed(self, line: int, col: int, what: str) -> None:
        if self.unclosed is None:
            self.unclosed = (line, col, what)

    def _newline(self, at: int) -> None:
        self._line += 1
        self._line_start = at + 1

    def _skip_blanks(self) -> None:
        text = self._text
        while self._i < len(text) and text[self._i] in " \t\r":
            self._i += 1

    def _skip_comment(self) -> None:
        end = self._text.find("\n", self._i)
        self._i = len(self._text) if end < 0 else end

    def _skip_string(self) -> None:
        text, i = self._text, self._i
        quote = text[i]
        opened = self._pos(i)
        if text.startswith(quote * 3, i):
            i += 3
            while i < len(text):
                char = text[i]
                if char == "\\" and quote == '"':
                    if i + 1 < len(text) and text[i + 1] == "\n":
                        self._newline(i + 1)
                    i += 2
                    continue
                if char == "\n":
                    self._newline(i)
                elif text.startswith(quote * 3, i):
                    i += 3
                    extra = 0  # up to two quotes may end the content: """a""""
                    while extra < 2 and i < len(text) and text[i] == quote:
                        i += 1
                        extra += 1
                    self._i = i
                    return
                i += 1
            self._i = i
            self._mark_unclosed(*opened, "string")
            return
        i += 1
        while i < len(text) and text[i] != "\n":
            if text[i] == "\\" and quote == '"':
                i += 2
                continue
            if text[i] == quote:
                self._i = i + 1
                return
            i += 1
        self._i = i
        self._mark_unclosed(*opened, "string")

    def _read_key(self) -> list[str]:
        """A (dotted) key at the cursor; leaves the cursor after it.

        Each part's start is kept in ``self._starts`` so a dotted key can be located by its
        last part (``build.dealy = 5`` points at ``dealy``).
        """
        text = self._text
        parts: list[str] = []
        self._starts = []
        while self._i < len(text):
            self._skip_blanks()
            if self._i >= len(text):
                break
            char = text[self._i]
            self._starts.append(self._i)
            if char in "\"'":
                start = self._i
                self._skip_string()
                raw = text[start + 1 : self._i - 1]
                parts.append(_unescape_key(raw) if char == '"' else raw)
            elif char in _BARE_KEY_CHARS:
                start = self._i
                while self._i < len(text) and text[self._i] in _BARE_KEY_CHARS:
                    self._i += 1
                parts.append(text[start : self._i])
            else:
                self._starts.pop()
                break
            self._skip_blanks()
            if self._i < len(text) and text[self._i] == ".":
                self._i += 1
                continue
            break
        return parts

    def _scan(self) -> None:
        text = self._text
        table: list[str] = []
        # open arrays ("[") and inline tables ("{"), each with the key path it belongs to
        stack: list[tuple[str, list[str], tuple[int, int]]] = []
        current: list[str] = []  # the key path of the value being read
        expect_key = False  # right after "{" or "," inside an inline table
        line_begin = True  # at the start of a top-level statement
        while self._i < len(text):
            char = text[self._i]
            if char == "\n":
                self._newline(self._i)
                self._i += 1
                if not stack:
                    line_begin = True
                continue
            if char in " \t\r":
                self._i += 1
                continue
            if char == "#":
                self._skip_comment()
                continue
            if not stack and line_begin:
                line_begin = False
                if char == "[":
                    self._i += 2 if text.startswith("[[", self._i) else 1
                    self._skip_blanks()
                    start = self._i
                    table = self._read_key()
                    for n in range(1, len(table) + 1):
                        self._record(table[:n], start)
                    self._skip_comment()  # the rest of a header line: "]", "]]", a comment
                    continue
                key = self._read_key()
                if not key:
                    self._skip_comment()
                    continue
                current = [*table, *key]
                self._record_key(table, key)
                self._skip_blanks()
                if self._i < len(text) and text[self._i] == "=":
                    self._i += 1
                continue
            if expect_key:
                expect_key = False
                if char == "}":
                    stack.pop()
                    self._i += 1
                    current = stack[-1][1] if stack else current
                    continue
                key = self._read_key()
                if key:
                    current = [*stack[-1][1], *key]
                    self._record_key(stack[-1][1], key)
                    self._skip_blanks()
                    if self._i < len(text) and text[self._i] == "=":
                        self._i += 1
                    continue
            if char in "\"'":
                self._skip_string()
            elif char in "[{":
                stack.append((char, current, self._pos(self._i)))
                expect_key = char == "{"
                self._i += 1
            elif char in "]}":
                if stack:
                    stack.pop()
                current = stack[-1][1] if stack else current
                self._i += 1
            elif char == ",":
                if stack:
                    current = stack[-1][1]
                    expect_key = stack[-1][0] == "{"
                self._i += 1
            else:
                self._i += 1
        if stack:
            self._mark_unclosed(*stack[0][2], stack[0][0])


def _unescape_key(raw: str) -> str:
    try:
        loaded: dict[str, Any] = tomllib.loads(f'"{raw}" = 0')
    except tomllib.TOMLDecodeError:
        return raw
    return next(iter(loaded), raw)


# --------------------------------------------------------------------------- value coercion


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)[ \t]*(ns|us|µs|μs|ms|s|m|h)[ \t]*")
_UNIT_MS = {
    "ns": Fraction(1, 1_000_000),
    "us": Fraction(1, 1000),
    "µs": Fraction(1, 1000),  # U+00B5 micro sign
    "μs": Fraction(1, 1000),  # U+03BC greek mu; Go accepts both
    "ms": Fraction(1),
    "s": Fraction(1000),
    "m": Fraction(60_000),
    "h": Fraction(3_600_000),
}
_NANOS_THRESHOLD = 1_000_000  # a millisecond's worth of nanoseconds


def parse_duration_ms(value: object, *, nanos_if_large: bool = False) -> int:
    """Milliseconds from ``500``, ``"500ms"``, ``"2s"``, ``"1m30s"`` or ``"250"``.

    Strings use Go's ``time.ParseDuration`` units (ns, us/µs, ms, s, m, h); a bare number
    is milliseconds. Sub-millisecond remainders are dropped, as Go's ``Milliseconds()`` does.
    ``nanos_if_large`` is air's ``kill_delay`` rule: a bare number of a millisecond's worth of
    nanoseconds or more (>= 1_000_000) is nanoseconds, so ``500000000`` is 500 ms.
    Raises ValueError for anything else, for a negative value, and for inf/nan.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    bare = False
    if isinstance(value, int):
        ms, bare = Fraction(value), True
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be a finite number, got {value!r}")
        ms, bare = Fraction(value), True
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)", text):
            ms, bare = Fraction(text), True
        else:
            negative = text.startswith("-")
            body = text[1:] if text[:1] in "+-" else text
            pos, total = 0, Fraction(0)
            for match in _DURATION.finditer(body):
                if match.start() != pos:
                    break
                total += Fraction(match.group(1)) * _UNIT_MS[match.group(2)]
                pos = match.end()
            if pos != len(body) or not body:
                raise ValueError(f"cannot read {value!r} as a duration")
            ms = -total if negative else total
    else:
        raise ValueError(f"expected a duration, got {_type_name(value)}")
    if ms < 0:
        raise ValueError(f"a duration cannot be negative ({value!r})")
    if bare and nanos_if_large and ms >= _NANOS_THRESHOLD:
        ms = ms / _NANOS_THRESHOLD
    return math.floor(ms)


def _type_name(value: object) -> str:
    if isinstance(value, list) and value:
        inner = next((v for v in value if not isinstance(v, str)), None)
        if inner is not None:
            return f"a list containing {_type_name(inner)}"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class _BadValue(ValueError):
    """A value that cannot be used; optionally with a specific hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


_TRUE = ("true", "1", "yes", "on", "t")
_FALSE = ("false", "0", "no", "off", "f")


def _parse_bool(value: object, *, from_flag: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_flag and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise _BadValue(f"expected true or false, got {_type_name(value)} {value!r}")


def _parse_str_list(value: object, *, from_flag: bool) -> tuple[str, ...]:
    if from_flag and isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _BadValue(f"expected a list of strings, got {_type_name(value)}")


def _parse_entrypoint(value: object, *, from_flag: bool) -> tuple[str, ...]:
    """air: a string or an array. pyair also splits a string shell-style: "python app.py"."""
    if isinstance(value, str) and not (from_flag and "," in value):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise _BadValue(f"cannot split {value!r} into arguments ({exc})") from None
    return _parse_str_list(value, from_flag=from_flag)


PRELOAD_HINT = 'write preload = "auto", preload = false or preload = ["flask", "jinja2"]'


def _parse_preload(value: object, *, from_flag: bool) -> str | tuple[str, ...]:
    """``"auto"``, ``false`` (→ ``()``), ``true`` (→ ``"auto"``) or a list of module names."""
    if isinstance(value, bool):
        return "auto" if value else ()
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "auto":
            return "auto"
        if from_flag and word in _TRUE:
            return "auto"
        if from_flag and word in _FALSE:
            return ()
        if not from_flag:
            raise _BadValue(
                f'expected "auto", false or a list of modules, got {value!r}', PRELOAD_HINT
            )
    names = _parse_str_list(value, from_flag=from_flag)
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise _BadValue(f"{name!r} is not a module name", PRELOAD_HINT)
    return names


def _clean_dir(path: str) -> str:
    return os.path.normpath(path.strip())


# Post-processing of list values: air users write ".py" and "templates/" too.
_EXT_KEYS = {"build.include_ext", "templates.include_ext"}
_DIR_KEYS = {
    "build.exclude_dir",
    "build.include_dir",
    "build.include_file",
    "templates.include_dir",
    "templates.exclude_dir",
}


def _normalize(dotted: str, value: object) -> object:
    if dotted in _EXT_KEYS and isinstance(value, tuple):
        exts = (str(v).strip().lstrip(".") for v in value)
        if dotted == "templates.include_ext":
            exts = (e.lower() for e in exts)
        return tuple(e for e in exts if e)
    if dotted in _DIR_KEYS and isinstance(value, tuple):
        return tuple(_clean_dir(str(v)) for v in value if str(v).strip())
    if dotted == "build.poll_interval" and isinstance(value, int):
        return max(value, MIN_POLL_INTERVAL_MS)  # air's minimum (runner/watcher.go)
    if dotted == "proxy.app_start_timeout" and value == 0:
        return DEFAULT_APP_START_TIMEOUT_MS  # air: 0 means the default
    return value


def _coerce(dotted: str, kind: Any, value: object, *, from_flag: bool) -> object:
    """Turn a TOML (or flag) value into the dataclass field's type, or raise _BadValue.

    File values must have the right TOML type (``enabled = "yes"`` is an error); flag values
    are strings and are converted. Durations accept integers and duration strings in both.
    """
    if dotted == "build.preload":
        return _parse_preload(value, from_flag=from_flag)
    if dotted in DURATION_KEYS:
        try:
            ms = parse_duration_ms(value, nanos_if_large=dotted == "build.kill_delay")
        except ValueError as exc:
            raise _BadValue(str(exc)) from None
        return _normalize(dotted, ms)
    if kind in ("bool", bool):
        return _parse_bool(value, from_flag=from_flag)
    if kind in ("int", int):
        if isinstance(value, str) and from_flag and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _BadValue(f"expected a whole number, got {_type_name(value)} {value!r}")
        if dotted in PORT_KEYS and not 0 <= value <= 65535:
            raise _BadValue(f"a port is 0..65535, got {value}")
        return value
    if kind in ("tuple[str, ...]",):
        if dotted == "build.entrypoint":
            return _parse_entrypoint(value, from_flag=from_flag)
        return _normalize(dotted, _parse_str_list(value, from_flag=from_flag))
    if kind in ("str", "str | None", str):
        if not isinstance(value, str):
            raise _BadValue(f"expected a string, got {_type_name(value)} {value!r}")
        return _check_str(dotted, value)
    raise _BadValue(f"unsupported type for {dotted}")  # pragma: no cover - schema bug


def _check_str(dotted: str, value: str) -> str:
    allowed = CHOICES.get(dotted)
    if allowed is not None and value not in allowed:
        guess = _suggest(value, [a for a in allowed if a])
        choices = ", ".join(repr(a) for a in allowed if a)
        raise _BadValue(
            f"expected one of {choices}, got {value!r}",
            f"did you mean {guess!r}?" if guess else f"use one of {choices}",
        )
    if dotted in COLOR_KEYS:
        name = value.strip().lower()
        if name not in COLOR_NAMES:
            guess = _suggest(name, [c for c in COLOR_NAMES if c])
            names = ", ".join(c for c in COLOR_NAMES if c)
            hint = f"did you mean {guess!r}?" if guess else f"use one of {names}"
            raise _BadValue(f"unknown colour {value!r}", hint)
        return name
    if dotted == "build.ready_url" and value and not value.startswith(READY_URL_PREFIXES):
        raise _BadValue(
            f"ready_url must be an http(s):// URL or a /path on the app, got {value!r}",
            'e.g. ready_url = "/healthz" or "http://127.0.0.1:8000/healthz"',
        )
    if dotted in ("tmp_dir", "testdata_dir") and not value.strip():
        return "tmp" if dotted == "tmp_dir" else "testdata"  # air: empty means the default
    return value


def _field_kinds(cls: type[Any]) -> dict[str, Any]:
    return {f.name: f.type for f in fields(cls)}


def known_keys() -> list[str]:
    """Every dotted key pyair understands (the CLI builds its override flags from this)."""
    keys = list(TOP_LEVEL_KEYS)
    for section, cls in SECTIONS.items():
        keys.extend(f"{section}.{name}" for name in _field_kinds(cls))
    return keys


def current_os() -> str:
    """The ``[build.<os>]`` block that applies here, named as Go's GOOS names it."""
    plat = sys.platform
    if plat.startswith("linux"):
        return "linux"
    if plat in ("win32", "cygwin", "msys"):
        return "windows"
    for name in ("darwin", "freebsd", "openbsd", "netbsd"):
        if plat.startswith(name):
            return name
    return plat


# --------------------------------------------------------------------------- loading


def find_config(explicit: Path | None, cwd: Path) -> Path | None:
    """air's discovery: ``-c FILE``, else ``.air.toml``, else ``.config/air.toml``, else None.

    As in air, the candidates are looked for in ``$air_wd`` when it is set, else in ``cwd``.
    """
    if explicit is not None:
        path = explicit.expanduser()
        path = path if path.is_absolute() else cwd / path
        if path.is_dir():
            raise ConfigError(
                f"config path {explicit} is a directory",
                hint=f"pass the file itself, e.g. -c {Path(explicit) / '.air.toml'}",
            )
        if not path.is_file():
            raise ConfigError(
                f"config file {explicit} not found",
                hint="check the -c path, or run `pyair init` to write one",
            )
        return path
    base = cwd
    air_wd = os.environ.get("air_wd")  # noqa: SIM112 - air's own (lowercase) name
    if air_wd:
        base = cwd / Path(air_wd).expanduser()
    for name in CONFIG_CANDIDATES:
        candidate = base / name
        if candidate.is_file():
            return candidate
    return None


_SYNTAX_HINTS = (
    ("cannot overwrite", "a key or table is defined twice; keep only one"),
    ("cannot declare", "merge the two into one table"),
    ("unterminated string", "close the string with the same quote it starts with"),
    ("unclosed '['", "close the list with ]"),
    ("unclosed '{'", "close the inline table with } on the same line"),
    ("illegal character '\\n'", 'a "string" ends on its line; use """ for multi-line text'),
    ("expected '=' after a key", 'write key = value; strings need quotes: key = "text"'),
    ("invalid value", 'strings need quotes ("..."), lists need [ ], booleans are true/false'),
    ("invalid initial character for a key", "keys are letters, digits, _ and -; quote others"),
)


def _syntax_error(path: Path, exc: Exception, text: str = "") -> ConfigError:
    message = str(exc)
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
    line: int | None = None
    col: int | None = None
    if match:
        line, col = int(match.group(1)), int(match.group(2))
    what = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
    if "(at end of document)" in message:
        unclosed = KeyLines(text).unclosed
        if unclosed is not None:
            line, col, kind = unclosed
            what = "unterminated string" if kind == "string" else f"unclosed '{kind}'"
        else:  # the end of the last line that has anything on it
            lines = text.rstrip().split("\n")
            line, col = len(lines), len(lines[-1]) + 1
    # tomllib names tables as tuples: "Cannot declare ('a', 'b') twice" -> [a.b]
    what = re.sub(
        r"\(((?:'[^']*'(?:, )?)+),?\)",
        lambda m: "[" + ".".join(re.findall(r"'([^']*)'", m[1])) + "]",
        what,
    )
    what = " ".join(what.split()) or "invalid TOML"
    hint = next(
        (h for needle, h in _SYNTAX_HINTS if needle in what.lower()),
        "fix the TOML at that spot",
    )
    return ConfigError(
        f"TOML syntax error: {what[0].lower() + what[1:]}",
        path=path,
        line=line,
        col=col,
        hint=hint,
    )


def _suggest(name: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


class _Loader:
    """Validates one parsed document section by section; knows where each key came from."""

    def __init__(self, path: Path | None, text: str) -> None:
        self.path = path
        self.keys = KeyLines(text)
        self.unused: list[str] = []
        self.flags: set[str] = set()  # dotted keys set by a CLI override

    def error(self, where: str, message: str, hint: str) -> ConfigError:
        """An error located at the key ``where`` in the file (no location without a file)."""
        line, col = self.keys.find(where) if self.path else (None, None)
        return ConfigError(message, path=self.path, line=line, col=col, hint=hint)

    def problem(
        self, dotted: str, what: str, hint: str, *, where: str | None = None
    ) -> ConfigError:
        """``--dotted: what`` when the value came from a flag, else ``file:line: dotted: what``."""
        if dotted in self.flags:
            return ConfigError(f"--{dotted}: {what}", hint=hint)
        return self.error(where or dotted, f"{dotted}: {what}", hint)

    def unknown(
        self, dotted: str, candidates: Iterable[str], where: str, *, table: bool = False
    ) -> ConfigError:
        leaf = dotted.rpartition(".")[2]
        candidates = list(candidates)
        known = known_keys()
        elsewhere = [k for k in known if k.rpartition(".")[2] == leaf and k != dotted]
        guess = _suggest(leaf, candidates)
        if elsewhere:
            home = elsewhere[0].rpartition(".")[0]
            hint = f"'{leaf}' belongs in [{home}]" if home else f"'{leaf}' is a top-level key"
            if not home:
                hint += " (put it above the first [table])"
        elif guess:
            hint = f"did you mean '{guess}'?"
        else:
            far = _suggest(leaf, [k.rpartition(".")[2] for k in known if "." in k])
            home = next((k.rpartition(".")[0] for k in known if k.endswith(f".{far}")), "")
            if far and home:
                hint = f"did you mean '{far}' in [{home}]?"
            else:
                hint = "remove it (see the config reference in the README)"
        what = f"unknown table [{dotted}]" if table else f"unknown key '{leaf}' {where}"
        return self.error(dotted, what, hint)

    def section(self, name: str, cls: type[Any], table: object) -> dict[str, Any]:
        if not isinstance(table, dict):
            raise self.error(name, f"'{name}' must be a table", f"write it as [{name}]")
        kinds = _field_kinds(cls)
        values: dict[str, Any] = {}
        for key, value in table.items():
            dotted = f"{name}.{key}"
            if dotted in UNUSED_KEYS:
                self.unused.append(dotted)
                continue
            if name == "build" and key in OS_SECTIONS:
                self.os_block(key, value)
                continue  # applied by _apply_os_overrides
            if key not in kinds:
                raise self.unknown(dotted, kinds, f"in [{name}]")
            values[key] = self.value(dotted, kinds[key], value)
        return values

    def os_block(self, os_name: str, block: object) -> dict[str, Any]:
        """Validate a ``[build.<os>]`` block (every OS's, not only this one's)."""
        name = f"build.{os_name}"
        if not isinstance(block, dict):
            raise self.error(name, f"'{name}' must be a table", f"write it as [{name}]")
        kinds = _field_kinds(BuildConfig)
        values: dict[str, Any] = {}
        for key, value in block.items():
            if key not in OS_OVERRIDE_KEYS:
                if key in kinds:
                    raise self.error(
                        f"{name}.{key}",
                        f"'{key}' cannot be set per OS in [{name}]",
                        f"only {', '.join(OS_OVERRIDE_KEYS)} can; set {key} in [build]",
                    )
                raise self.unknown(f"{name}.{key}", OS_OVERRIDE_KEYS, f"in [{name}]")
            values[key] = self.value(f"build.{key}", kinds[key], value, where=f"{name}.{key}")
        return values

    def value(self, dotted: str, kind: Any, value: object, *, where: str | None = None) -> object:
        try:
            return _coerce(dotted, kind, value, from_flag=False)
        except _BadValue as exc:
            hint = exc.hint or _fix_hint(dotted, kind, value)
            raise self.error(where or dotted, f"{dotted}: {exc}", hint) from None


def _fix_hint(dotted: str, kind: Any, value: object = None, *, flag: bool = False) -> str:
    leaf = dotted.rpartition(".")[2]
    if flag:
        example = {
            "bool": "true or false",
            "int": "a whole number, e.g. 8000",
            "tuple[str, ...]": "comma-separated values, e.g. a,b",
        }.get(str(kind), "a value")
        if dotted in DURATION_KEYS:
            example = "milliseconds or a duration, e.g. 500 or 2s"
        return f"pass --{dotted} {example}"
    if dotted in DURATION_KEYS:
        return f'write milliseconds or a duration, e.g. {leaf} = 500 or {leaf} = "2s"'
    if kind in ("bool", bool):
        return f"write {leaf} = true or {leaf} = false (no quotes)"
    if kind in ("int", int):
        return f"write a whole number, e.g. {leaf} = 8000"
    if dotted == "build.entrypoint":
        return 'write entrypoint = ["./bin/app", "--flag"] or entrypoint = "python app.py"'
    if dotted == "build.preload":
        return PRELOAD_HINT
    if kind == "tuple[str, ...]":
        if isinstance(value, str):
            return f"write a list: {leaf} = [{_toml_str(value)}]"
        return f'write a list of strings, e.g. {leaf} = ["a", "b"]'
    if dotted in CHOICES:
        return "use one of " + ", ".join(repr(c) for c in CHOICES[dotted] if c)
    return f'write a quoted string, e.g. {leaf} = "..."'


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _apply_os_overrides(build: dict[str, Any], raw: Mapping[str, Any], loader: _Loader) -> None:
    """Apply this OS's ``[build.<os>]`` block (air: only the command keys)."""
    block = raw.get(current_os())
    if block is not None:
        build.update(loader.os_block(current_os(), block))


def load_config(
    path: Path | None,
    *,
    overrides: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    extra_args: Iterable[str] = (),
    check_app: bool = True,
) -> Config:
    """Read ``path`` (None: defaults only), apply dotted ``overrides``, validate everything.

    Order, as air: defaults < file < ``[build.<os>]`` < overrides (CLI flags). Unlike air, a
    flag wins even when its value equals the built-in default.
    Raises ConfigError with a ``file:line[:col]: what; fix`` message on any problem.
    """
    cwd = cwd or Path.cwd()
    text = ""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read config: {exc}", path=path, hint="check the file and its permissions"
            ) from None
        text = text.removeprefix("\ufeff")  # a BOM some editors write
        try:
            document: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _syntax_error(path, exc, text) from None
    else:
        document = {}
    loader = _Loader(path, text)

    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    env: dict[str, str] = {}
    for key, value in document.items():
        if key in UNUSED_KEYS:
            loader.unused.append(key)
        elif key in SECTIONS:
            sections[key] = loader.section(key, SECTIONS[key], value)
            if key == "build" and isinstance(value, dict):
                _apply_os_overrides(sections["build"], value, loader)
        elif key == "env":
            env = _env_table(value, loader)
        elif key in TOP_LEVEL_KINDS:
            top[key] = loader.value(key, TOP_LEVEL_KINDS[key], value)
        else:
            raise loader.unknown(
                key, [*TOP_LEVEL_KEYS, *SECTIONS, "env"], "at the top level",
                table=isinstance(value, dict),
            )  # fmt: skip

    for dotted, raw_value in (overrides or {}).items():
        _apply_override(dotted, raw_value, top, sections, env, loader)

    tmp_dir = top.get("tmp_dir", "tmp")
    if tmp_dir != "tmp" and "exclude_dir" not in sections["build"]:
        # air's adjustDefaultsForTmpDir: the default exclude_dir follows tmp_dir
        default = BuildConfig().exclude_dir
        sections["build"]["exclude_dir"] = tuple(tmp_dir if d == "tmp" else d for d in default)

    _expand_ready_url(sections, loader)

    base_dir = path.parent if path is not None else cwd
    if path is not None and path.parent.name == ".config" and path.name == "air.toml":
        base_dir = path.parent.parent
    root = _resolve_root(top.pop("root", "."), base_dir=base_dir, cwd=cwd, loader=loader)

    config = Config(
        root=root,
        build=BuildConfig(**sections["build"]),
        log=LogConfig(**sections["log"]),
        color=ColorConfig(**sections["color"]),
        misc=MiscConfig(**sections["misc"]),
        screen=ScreenConfig(**sections["screen"]),
        proxy=ProxyConfig(**sections["proxy"]),
        templates=TemplatesConfig(**sections["templates"]),
        env=MappingProxyType(env),
        source=path,
        extra_args=tuple(extra_args),
        unused_keys=tuple(dict.fromkeys(loader.unused)),
        **top,
    )
    _check_semantics(config, loader)
    if check_app:
        _resolve_app_command(config, loader)
    return config


def _expand_ready_url(sections: dict[str, dict[str, Any]], loader: _Loader) -> None:
    """A ``/path`` ready_url is on the app: ``http://127.0.0.1:<app_port>/path``."""
    url = sections["build"].get("ready_url", "")
    if not url.startswith("/"):
        return
    port = sections["proxy"].get("app_port", 0)
    if not port:
        raise loader.problem(
            "build.ready_url",
            f"{url!r} is a path, but [proxy] app_port is not set",
            "set [proxy] app_port, or give a full URL, e.g. http://127.0.0.1:8000/healthz",
        )
    sections["build"]["ready_url"] = f"http://127.0.0.1:{port}{url}"


def _check_env_name(name: str) -> str | None:
    if not name:
        return "an environment variable name cannot be empty"
    if "=" in name or "\0" in name:
        return f"{name!r} cannot be an environment variable name (no '=' or NUL)"
    return None


def _env_table(value: object, loader: _Loader) -> dict[str, str]:
    if not isinstance(value, dict):
        raise loader.error("env", "'env' must be a table", 'write it as [env] with NAME = "value"')
    env: dict[str, str] = {}
    for name, item in value.items():
        bad_name = _check_env_name(name)
        if bad_name:
            raise loader.error(f"env.{name}", f"env: {bad_name}", "use letters, digits and _")
        if isinstance(item, bool):
            env[name] = "true" if item else "false"
        elif isinstance(item, int | float | str):
            env[name] = str(item)
        else:
            raise loader.error(
                f"env.{name}",
                f"env.{name}: expected a string, got {_type_name(item)}",
                f'write {name} = "value"',
            )
        if "\0" in env[name]:
            raise loader.error(
                f"env.{name}", f"env.{name}: a value cannot contain NUL", "remove the \\u0000"
            )
    return env


def _apply_override(
    dotted: str,
    raw_value: str,
    top: dict[str, Any],
    sections: dict[str, dict[str, Any]],
    env: dict[str, str],
    loader: _Loader,
) -> None:
    flag = f"--{dotted}"
    section, _, key = dotted.partition(".")
    if section == "env" and key:
        bad_name = _check_env_name(key)
        if bad_name:
            raise ConfigError(f"{flag}: {bad_name}", hint="use --env.NAME value")
        env[key] = str(raw_value)
        return
    target: dict[str, Any]
    if not key and dotted in TOP_LEVEL_KINDS:
        kind, target, name = TOP_LEVEL_KINDS[dotted], top, dotted
    elif section in SECTIONS and key in _field_kinds(SECTIONS[section]):
        kind = _field_kinds(SECTIONS[section])[key]
        target, name = sections[section], key
    else:
        guess = _suggest(dotted, known_keys())
        raise ConfigError(
            f"unknown option {flag}",
            hint=f"did you mean --{guess}?" if guess else "see `pyair --help` for the options",
        )
    try:
        target[name] = _coerce(dotted, kind, raw_value, from_flag=True)
    except _BadValue as exc:
        raise ConfigError(
            f"{flag}: {exc}", hint=exc.hint or _fix_hint(dotted, kind, flag=True)
        ) from None
    loader.flags.add(dotted)


def _resolve_root(value: str, *, base_dir: Path, cwd: Path, loader: _Loader) -> Path:
    """root from --root (relative to cwd), else $air_wd (as air), else the file (relative to it)."""
    air_wd = os.environ.get("air_wd")  # noqa: SIM112 - air's own (lowercase) name
    if "root" in loader.flags:
        raw, base = value, cwd
    elif air_wd:
        raw, base = air_wd, cwd
    else:
        raw, base = value, base_dir
    candidate = Path(raw).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    if candidate.is_dir():
        return candidate.resolve()
    what = (
        f"root {raw!r} is not a directory"
        if candidate.exists()
        else f"root directory {raw!r} does not exist"
    )
    if "root" in loader.flags:
        raise ConfigError(f"--root: {what}", hint="pass your project directory")
    if air_wd:
        raise ConfigError(
            f"air_wd: {what}",
            hint="point the air_wd environment variable at your project, or unset it",
        )
    raise loader.error(
        "root", what, "set root to your project directory (relative to the config file)"
    )


def _check_semantics(config: Config, loader: _Loader) -> None:
    dangerous = {Path("/"), Path("/root"), Path.home().resolve()}
    if config.root in dangerous and not config.build.ignore_dangerous_root_dir:
        raise loader.error(
            "root",
            f"refusing to watch {config.root}: it is a dangerous root directory",
            "point root at your project, or set [build] ignore_dangerous_root_dir = true",
        )
    for pattern in config.build.exclude_regex:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise loader.problem(
                "build.exclude_regex",
                f"bad regular expression {pattern!r} ({exc})",
                "escape special characters, e.g. '_test\\\\.py$'",
            ) from None
    proxy = config.proxy
    if proxy.enabled and proxy.app_port == 0:
        raise loader.problem(
            "proxy.enabled",
            "the proxy is enabled but proxy.app_port is not set",
            "set [proxy] app_port (or --proxy.app_port) to the port your app listens on",
            where="proxy",
        )
    if proxy.enabled and proxy.proxy_port != 0 and proxy.proxy_port == proxy.app_port:
        raise loader.problem(
            "proxy.proxy_port",
            f"proxy_port and app_port are both {proxy.app_port}",
            "the proxy needs its own port, e.g. proxy_port = app_port + 1",
        )


# --------------------------------------------------------------------------- the app command


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


def resolve_app_command(config: Config) -> AppCommand:
    """air's order: full_bin (a shell line) > entrypoint (argv) > bin (a shell line); else a
    detected ``app.py`` / ``main.py`` / ``manage.py``. args_bin, then the extra args, follow.
    """
    return _resolve_app_command(config, None)


def _resolve_app_command(config: Config, loader: _Loader | None) -> AppCommand:
    build = config.build
    extra = (*build.args_bin, *config.extra_args)

    def fail(dotted: str, what: str, hint: str) -> ConfigError:
        if loader is not None:
            return loader.problem(dotted, what, hint)
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


# --------------------------------------------------------------------------- environment


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


def with_overrides(config: Config, **changes: Any) -> Config:
    """A copy of ``config`` with top-level fields replaced (for tests and subcommands)."""
    return replace(config, **changes)
