"""The config's shape: frozen dataclasses per section, air's keys, defaults and units.

BuildConfig().delay            # 10 (milliseconds)
known_keys()[:2]               # ['root', 'tmp_dir']: every key is also a --flag
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .command import AppCommand, resolve_app_command
from .values import (
    BadValue,
    parse_bool,
    parse_duration_ms,
    parse_entrypoint,
    parse_preload,
    parse_str_list,
    suggest,
    type_name,
)

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


def coerce(dotted: str, kind: Any, value: object, *, from_flag: bool) -> object:
    """Turn a TOML (or flag) value into the dataclass field's type, or raise BadValue.

    File values must have the right TOML type (``enabled = "yes"`` is an error); flag values
    are strings and are converted. Durations accept integers and duration strings in both.
    """
    if dotted == "build.preload":
        return parse_preload(value, from_flag=from_flag)
    if dotted in DURATION_KEYS:
        try:
            ms = parse_duration_ms(value, nanos_if_large=dotted == "build.kill_delay")
        except ValueError as exc:
            raise BadValue(str(exc)) from None
        return _normalize(dotted, ms)
    if kind in ("bool", bool):
        return parse_bool(value, from_flag=from_flag)
    if kind in ("int", int):
        if isinstance(value, str) and from_flag and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadValue(f"expected a whole number, got {type_name(value)} {value!r}")
        if dotted in PORT_KEYS and not 0 <= value <= 65535:
            raise BadValue(f"a port is 0..65535, got {value}")
        return value
    if kind in ("tuple[str, ...]",):
        if dotted == "build.entrypoint":
            return parse_entrypoint(value, from_flag=from_flag)
        return _normalize(dotted, parse_str_list(value, from_flag=from_flag))
    if kind in ("str", "str | None", str):
        if not isinstance(value, str):
            raise BadValue(f"expected a string, got {type_name(value)} {value!r}")
        return _check_str(dotted, value)
    raise BadValue(f"unsupported type for {dotted}")  # pragma: no cover - schema bug


def _check_str(dotted: str, value: str) -> str:
    allowed = CHOICES.get(dotted)
    if allowed is not None and value not in allowed:
        guess = suggest(value, [a for a in allowed if a])
        choices = ", ".join(repr(a) for a in allowed if a)
        raise BadValue(
            f"expected one of {choices}, got {value!r}",
            f"did you mean {guess!r}?" if guess else f"use one of {choices}",
        )
    if dotted in COLOR_KEYS:
        name = value.strip().lower()
        if name not in COLOR_NAMES:
            guess = suggest(name, [c for c in COLOR_NAMES if c])
            names = ", ".join(c for c in COLOR_NAMES if c)
            hint = f"did you mean {guess!r}?" if guess else f"use one of {names}"
            raise BadValue(f"unknown colour {value!r}", hint)
        return name
    if dotted == "build.ready_url" and value and not value.startswith(READY_URL_PREFIXES):
        raise BadValue(
            f"ready_url must be an http(s):// URL or a /path on the app, got {value!r}",
            'e.g. ready_url = "/healthz" or "http://127.0.0.1:8000/healthz"',
        )
    if dotted in ("tmp_dir", "testdata_dir") and not value.strip():
        return "tmp" if dotted == "tmp_dir" else "testdata"  # air: empty means the default
    return value


def field_kinds(cls: type[Any]) -> dict[str, Any]:
    return {f.name: f.type for f in fields(cls)}


def known_keys() -> list[str]:
    """Every dotted key pyair understands (the CLI builds its override flags from this)."""
    keys = list(TOP_LEVEL_KEYS)
    for section, cls in SECTIONS.items():
        keys.extend(f"{section}.{name}" for name in field_kinds(cls))
    return keys


def with_overrides(config: Config, **changes: Any) -> Config:
    """A copy of ``config`` with top-level fields replaced (for tests and subcommands)."""
    return replace(config, **changes)
