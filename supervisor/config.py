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

import difflib
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
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
    poll_interval: int = 500  # ms; air clamps 0 to 500
    delay: int = 20  # ms of quiet before acting (a trailing debounce; air: 1000 ms leading)
    stop_on_error: bool = False
    send_interrupt: bool = False
    kill_delay: int = 500  # ms between the polite signal and SIGKILL
    rerun: bool = False
    rerun_delay: int = 500  # ms
    ignore_dangerous_root_dir: bool = False
    # pyair additions
    ready_url: str = ""
    ready_timeout: int = 10_000  # ms


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
    app_start_timeout: int = 5000  # ms; air turns 0 into 5000
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
    env: Mapping[str, str] = field(default_factory=dict)
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
TOP_LEVEL_KEYS = ("root", "tmp_dir", "testdata_dir", "env_files")
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
COLOR_NAMES = ("red", "green", "yellow", "blue", "magenta", "cyan", "white", "raw", "")


# --------------------------------------------------------------------------- locating keys


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


class KeyLines:
    """Maps dotted key paths of a TOML text to (line, column), both 1-based.

    A scanner, not a parser: good enough to point at a key, never used to read values.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[str, tuple[int, int]] = {}
        table: list[str] = []
        multiline: str | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            if multiline is not None:
                if raw.count(multiline) % 2 == 1:
                    multiline = None
                continue
            header = _HEADER.match(raw)
            if header and "=" not in raw.split("#", 1)[0].split("]", 1)[0]:
                table = _split_dotted(header.group(2))
                self.lines.setdefault(".".join(table), (number, raw.index(header.group(2)) + 1))
                continue
            key = _KEY.match(raw)
            if key:
                dotted = ".".join([*table, *_split_dotted(key.group(1))])
                self.lines.setdefault(dotted, (number, raw.index(key.group(1)) + 1))
                rest = raw[key.end() :]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        multiline = quote

    def find(self, dotted: str) -> tuple[int | None, int | None]:
        probe = dotted
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe.rpartition(".")[0]
        return None, None


# --------------------------------------------------------------------------- value coercion


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_duration_ms(value: object, *, nanos_if_large: bool = False) -> int:
    """Milliseconds from ``500``, ``"500ms"``, ``"2s"``, ``"1m30s"`` or ``"250"``.

    ``nanos_if_large`` is air's ``kill_delay`` rule: integers of a millisecond's worth of
    nanoseconds or more are nanoseconds (``500000000`` is 500 ms).
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(value, int | float):
        ms = float(value)
        if nanos_if_large and ms >= 1_000_000:
            ms = ms / 1_000_000
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            ms = float(text)
        else:
            negative = text.startswith("-")
            body = text[1:] if negative else text
            pos, total = 0, 0.0
            for match in _DURATION.finditer(body):
                if match.start() != pos:
                    break
                total += float(match.group(1)) * _UNIT_MS[match.group(2)]
                pos = match.end()
            if pos != len(body) or not body:
                raise ValueError(f"cannot read {value!r} as a duration")
            ms = -total if negative else total
    else:
        raise ValueError(f"expected a duration, got {_type_name(value)}")
    if ms < 0:
        raise ValueError(f"a duration cannot be negative ({value!r})")
    return round(ms)


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
    raise ValueError(f"expected true or false, got {_type_name(value)} {value!r}")


def _parse_str_list(value: object, *, from_flag: bool) -> tuple[str, ...]:
    if isinstance(value, str):
        if from_flag:
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"expected a list of strings, got {_type_name(value)}")


def _coerce(dotted: str, kind: Any, value: object, *, from_flag: bool) -> object:
    """Turn a TOML (or flag) value into the dataclass field's type, or raise ValueError."""
    if dotted in DURATION_KEYS:
        return parse_duration_ms(value, nanos_if_large=dotted == "build.kill_delay")
    if kind in ("bool", bool):
        return _parse_bool(value)
    if kind in ("int", int):
        if isinstance(value, str) and from_flag and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_type_name(value)}")
        if dotted in PORT_KEYS and not 0 <= value <= 65535:
            raise ValueError(f"a port is 0..65535, got {value}")
        return value
    if kind in ("tuple[str, ...]",):
        if dotted == "build.entrypoint" and isinstance(value, str) and not from_flag:
            return tuple(shlex.split(value))
        return _parse_str_list(value, from_flag=from_flag)
    if kind in ("str", "str | None", str):
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_type_name(value)}")
        allowed = CHOICES.get(dotted)
        if allowed is not None and value not in allowed:
            raise ValueError(f"expected one of {', '.join(repr(a) for a in allowed if a)}")
        return value
    raise ValueError(f"unsupported type for {dotted}")  # pragma: no cover - schema bug


def _field_kinds(cls: type[Any]) -> dict[str, Any]:
    return {f.name: f.type for f in fields(cls)}


def known_keys() -> list[str]:
    """Every dotted key pyair understands (the CLI builds its override flags from this)."""
    keys = list(TOP_LEVEL_KEYS)
    for section, cls in SECTIONS.items():
        keys.extend(f"{section}.{name}" for name in _field_kinds(cls))
    return keys


# --------------------------------------------------------------------------- loading


def find_config(explicit: Path | None, cwd: Path) -> Path | None:
    """air's discovery: ``-c FILE``, else ``.air.toml``, else ``.config/air.toml``, else None."""
    if explicit is not None:
        path = explicit if explicit.is_absolute() else cwd / explicit
        if not path.is_file():
            raise ConfigError(
                f"config file {explicit} not found",
                hint="check the -c path, or run `pyair init` to write one",
            )
        return path
    for name in CONFIG_CANDIDATES:
        candidate = cwd / name
        if candidate.is_file():
            return candidate
    return None


def _syntax_error(path: Path, exc: Exception) -> ConfigError:
    text = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", text)
    line = int(match.group(1)) if match else None
    col = int(match.group(2)) if match else None
    what = re.sub(r"\s*\(at line \d+, column \d+\)", "", text) or "invalid TOML"
    return ConfigError(
        f"TOML syntax error: {what[0].lower() + what[1:]}",
        path=path,
        line=line,
        col=col,
        hint="fix the TOML at that spot (strings need quotes, lists need [ ])",
    )


def _suggest(name: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


class _Loader:
    """Validates one parsed document section by section, collecting field values."""

    def __init__(self, path: Path | None, text: str) -> None:
        self.path = path
        self.keys = KeyLines(text)
        self.unused: list[str] = []

    def error(self, dotted: str, message: str, hint: str) -> ConfigError:
        line, col = self.keys.find(dotted) if self.path else (None, None)
        return ConfigError(message, path=self.path, line=line, col=col, hint=hint)

    def unknown(self, dotted: str, candidates: Iterable[str], where: str) -> ConfigError:
        leaf = dotted.rpartition(".")[2]
        guess = _suggest(leaf, candidates)
        elsewhere = [k for k in known_keys() if k.rpartition(".")[2] == leaf and k != dotted]
        if guess:
            hint = f"did you mean '{guess}'?"
        elif elsewhere:
            hint = f"'{leaf}' belongs in [{elsewhere[0].rpartition('.')[0]}]"
            if "." not in elsewhere[0]:
                hint = f"'{leaf}' is a top-level key"
        else:
            hint = "remove it (see the config reference in the README)"
        return self.error(dotted, f"unknown key '{leaf}' {where}", hint)

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
                continue  # per-OS overrides, applied by _apply_os_overrides
            if key not in kinds:
                raise self.unknown(dotted, kinds, f"in [{name}]")
            values[key] = self.value(dotted, kinds[key], value)
        return values

    def value(self, dotted: str, kind: Any, value: object) -> object:
        try:
            coerced = _coerce(dotted, kind, value, from_flag=False)
        except ValueError as exc:
            raise self.error(dotted, f"{dotted}: {exc}", _fix_hint(dotted, kind)) from None
        if dotted.startswith("color.") and dotted != "color.mode" and coerced not in COLOR_NAMES:
            raise self.error(
                dotted,
                f"{dotted}: unknown colour {coerced!r}",
                f"use one of {', '.join(c for c in COLOR_NAMES if c)}",
            )
        return coerced


def _fix_hint(dotted: str, kind: Any) -> str:
    leaf = dotted.rpartition(".")[2]
    if dotted in DURATION_KEYS:
        return f'write milliseconds or a duration, e.g. {leaf} = 500 or {leaf} = "2s"'
    if kind in ("bool", bool):
        return f"write {leaf} = true or {leaf} = false"
    if kind in ("int", int):
        return f"write a whole number, e.g. {leaf} = 8000"
    if kind == "tuple[str, ...]":
        return f'write a list of strings, e.g. {leaf} = ["a", "b"]'
    if dotted in CHOICES:
        return "use one of " + ", ".join(repr(c) for c in CHOICES[dotted] if c)
    return f'write a quoted string, e.g. {leaf} = "..."'


def _apply_os_overrides(build: dict[str, Any], raw: Mapping[str, Any], loader: _Loader) -> None:
    block = raw.get(sys.platform if sys.platform != "linux2" else "linux")
    if block is None:
        return
    name = f"build.{sys.platform}"
    if not isinstance(block, dict):
        raise loader.error(name, f"'{name}' must be a table", f"write it as [{name}]")
    kinds = _field_kinds(BuildConfig)
    for key, value in block.items():
        if key not in OS_OVERRIDE_KEYS:
            raise loader.unknown(f"{name}.{key}", OS_OVERRIDE_KEYS, f"in [{name}]")
        build[key] = loader.value(f"build.{key}", kinds[key], value)


def load_config(
    path: Path | None,
    *,
    overrides: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    extra_args: Iterable[str] = (),
    check_app: bool = True,
) -> Config:
    """Read ``path`` (None: defaults only), apply dotted ``overrides``, validate everything.

    Raises ConfigError with a ``file:line[:col]: what; fix`` message on any problem.
    """
    cwd = cwd or Path.cwd()
    text = ""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config: {exc}", path=path) from None
        try:
            document: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _syntax_error(path, exc) from None
    else:
        document = {}
    loader = _Loader(path, text)

    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    env: dict[str, str] = {}
    top_kinds = _field_kinds(Config)
    for key, value in document.items():
        if key in UNUSED_KEYS:
            loader.unused.append(key)
        elif key in SECTIONS:
            sections[key] = loader.section(key, SECTIONS[key], value)
            if key == "build" and isinstance(value, dict):
                _apply_os_overrides(sections["build"], value, loader)
        elif key == "env":
            env = _env_table(value, loader)
        elif key in TOP_LEVEL_KEYS:
            kind = "tuple[str, ...]" if key == "env_files" else "str"
            top[key] = loader.value(key, kind, value)
        else:
            raise loader.unknown(key, [*TOP_LEVEL_KEYS, *SECTIONS, "env"], "at the top level")

    for dotted, raw_value in (overrides or {}).items():
        _apply_override(dotted, raw_value, top, sections, env, top_kinds)

    base_dir = path.parent if path is not None else cwd
    if path is not None and path.parent.name == ".config" and path.name == "air.toml":
        base_dir = path.parent.parent
    root = _resolve_root(top.pop("root", "."), base_dir, loader, from_file="root" in document)

    config = Config(
        root=root,
        build=BuildConfig(**sections["build"]),
        log=LogConfig(**sections["log"]),
        color=ColorConfig(**sections["color"]),
        misc=MiscConfig(**sections["misc"]),
        screen=ScreenConfig(**sections["screen"]),
        proxy=ProxyConfig(**sections["proxy"]),
        templates=TemplatesConfig(**sections["templates"]),
        env=env,
        source=path,
        extra_args=tuple(extra_args),
        unused_keys=tuple(loader.unused),
        **top,
    )
    _check_semantics(config, loader)
    if check_app:
        config.app_command()
    return config


def _env_table(value: object, loader: _Loader) -> dict[str, str]:
    if not isinstance(value, dict):
        raise loader.error("env", "'env' must be a table", 'write it as [env] with NAME = "value"')
    env: dict[str, str] = {}
    for name, item in value.items():
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
    return env


def _apply_override(
    dotted: str,
    raw_value: str,
    top: dict[str, Any],
    sections: dict[str, dict[str, Any]],
    env: dict[str, str],
    top_kinds: Mapping[str, Any],
) -> None:
    flag = f"--{dotted}"
    section, _, key = dotted.partition(".")
    if section == "env" and key:
        env[key] = raw_value
        return
    if not key:
        if dotted not in TOP_LEVEL_KEYS:
            guess = _suggest(dotted, known_keys())
            raise ConfigError(
                f"unknown option {flag}",
                hint=f"did you mean --{guess}?" if guess else "see `pyair --help`",
            )
        kind = "tuple[str, ...]" if dotted == "env_files" else top_kinds[dotted]
        target, name = top, dotted
    elif section in SECTIONS and key in _field_kinds(SECTIONS[section]):
        kind = _field_kinds(SECTIONS[section])[key]
        target, name = sections[section], key
    else:
        guess = _suggest(dotted, known_keys())
        raise ConfigError(
            f"unknown option {flag}",
            hint=f"did you mean --{guess}?" if guess else "see `pyair --help`",
        )
    try:
        target[name] = _coerce(dotted, kind, raw_value, from_flag=True)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}", hint=_fix_hint(dotted, kind)) from None


def _resolve_root(value: str, base_dir: Path, loader: _Loader, *, from_file: bool) -> Path:
    env_root = os.environ.get("air_wd")
    raw = env_root or value
    candidate = Path(raw).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if not candidate.is_dir():
        raise loader.error(
            "root",
            f"root directory {raw!r} does not exist",
            "set root to your project directory (relative to the config file)",
        ) if from_file else ConfigError(
            f"root directory {raw!r} does not exist", hint="pass --root or fix air_wd"
        )
    return candidate.resolve()


def _check_semantics(config: Config, loader: _Loader) -> None:
    dangerous = {Path("/"), Path("/root"), Path.home().resolve()}
    if config.root in dangerous and not config.build.ignore_dangerous_root_dir:
        raise loader.error(
            "root",
            f"refusing to watch {config.root}: it is a dangerous root directory",
            "point root at your project, or set [build] ignore_dangerous_root_dir = true",
        )
    for dotted, pattern in (("build.exclude_regex", p) for p in config.build.exclude_regex):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise loader.error(
                dotted,
                f"{dotted}: bad regular expression {pattern!r} ({exc})",
                "escape special characters, e.g. '_test\\\\.py$'",
            ) from None
    if config.proxy.enabled and config.proxy.app_port == 0:
        raise loader.error(
            "proxy.app_port",
            "proxy.enabled is true but proxy.app_port is not set",
            "set [proxy] app_port to the port your app listens on",
        )


# --------------------------------------------------------------------------- the app command


def python_executable() -> str:
    """The interpreter for a detected Python app: the active venv's, else pyair's own."""
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        candidate = Path(venv) / "bin" / "python"
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
    build = config.build
    extra = (*build.args_bin, *config.extra_args)
    if build.full_bin:
        shell = build.full_bin + (" " + shlex.join(extra) if extra else "")
        return AppCommand(argv=None, shell=shell)
    if build.entrypoint:
        exe = build.entrypoint[0]
        if os.sep in exe:
            exe = str((config.root / exe).resolve())
        else:
            found = shutil.which(exe)
            if found is None:
                raise ConfigError(
                    f"build.entrypoint: {exe!r} is not on PATH",
                    path=config.source,
                    hint="give a path relative to root, or install it",
                )
            exe = found
        return AppCommand(argv=(exe, *build.entrypoint[1:], *extra), shell=None)
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
    return AppCommand(argv=(python_executable(), *entry, *extra), shell=None)


# --------------------------------------------------------------------------- environment


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$")


def parse_dotenv(text: str) -> dict[str, str]:
    """``KEY=value`` lines as godotenv reads them: quotes, ``export``, ``#`` comments."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _ENV_LINE.match(line)
        if not match:
            continue
        key, raw = match.group(1), match.group(2).strip()
        if raw[:1] in ("'", '"') and raw[:1] in raw[1:]:
            quote = raw[0]
            body = raw[1 : raw.index(quote, 1)]
            values[key] = body.encode().decode("unicode_escape") if quote == '"' else body
        else:
            values[key] = raw.split(" #", 1)[0].strip()
    return values


def child_environment(
    config: Config, base: Mapping[str, str], *, read: Callable[[Path], str] | None = None
) -> dict[str, str]:
    """The environment for build steps and the app: ``base`` + env_files + ``[env]``.

    As in air, env_files never override a variable that was already set; ``[env]`` does.
    Re-read on every build, so edits to ``.env`` apply at the next restart.
    """
    env = dict(base)
    reader = read or (lambda p: p.read_text(encoding="utf-8"))
    for name in config.env_files:
        path = config.root / name
        try:
            loaded = parse_dotenv(reader(path))
        except (OSError, UnicodeDecodeError):
            continue
        for key, value in loaded.items():
            env.setdefault(key, value)
    env.update(config.env)
    return env


def with_overrides(config: Config, **changes: Any) -> Config:
    """A copy of ``config`` with top-level fields replaced (for tests and subcommands)."""
    return replace(config, **changes)
