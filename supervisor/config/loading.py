"""Loading: find the file, parse it, apply ``[build.<os>]`` and flags, check it whole.

    path = find_config(None, Path.cwd())             # .air.toml, else .config/air.toml, else None
    cfg = load_config(path, overrides={"build.delay": "50"})

Order, as air: defaults < file < ``[build.<os>]`` < overrides (CLI flags). Every problem is a
:class:`ConfigError` whose ``str()`` is one line naming the file, the line and the fix.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError
from .command import resolve_app_command
from .environment import check_env_name
from .locator import KeyLines
from .schema import (
    CHOICES,
    DURATION_KEYS,
    OS_OVERRIDE_KEYS,
    OS_SECTIONS,
    SECTIONS,
    TOP_LEVEL_KEYS,
    TOP_LEVEL_KINDS,
    UNUSED_KEYS,
    BuildConfig,
    ColorConfig,
    Config,
    LogConfig,
    MiscConfig,
    ProxyConfig,
    ScreenConfig,
    TemplatesConfig,
    coerce,
    field_kinds,
    known_keys,
)
from .values import PRELOAD_HINT, BadValue, suggest, toml_str, type_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_CANDIDATES = (".air.toml", ".config/air.toml")


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
        guess = suggest(leaf, candidates)
        if elsewhere:
            home = elsewhere[0].rpartition(".")[0]
            hint = f"'{leaf}' belongs in [{home}]" if home else f"'{leaf}' is a top-level key"
            if not home:
                hint += " (put it above the first [table])"
        elif guess:
            hint = f"did you mean '{guess}'?"
        else:
            far = suggest(leaf, [k.rpartition(".")[2] for k in known if "." in k])
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
        kinds = field_kinds(cls)
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
        kinds = field_kinds(BuildConfig)
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
            return coerce(dotted, kind, value, from_flag=False)
        except BadValue as exc:
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
            return f"write a list: {leaf} = [{toml_str(value)}]"
        return f'write a list of strings, e.g. {leaf} = ["a", "b"]'
    if dotted in CHOICES:
        return "use one of " + ", ".join(repr(c) for c in CHOICES[dotted] if c)
    return f'write a quoted string, e.g. {leaf} = "..."'


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
        resolve_app_command(config, problem=loader.problem)
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


def _env_table(value: object, loader: _Loader) -> dict[str, str]:
    if not isinstance(value, dict):
        raise loader.error("env", "'env' must be a table", 'write it as [env] with NAME = "value"')
    env: dict[str, str] = {}
    for name, item in value.items():
        bad_name = check_env_name(name)
        if bad_name:
            raise loader.error(f"env.{name}", f"env: {bad_name}", "use letters, digits and _")
        if isinstance(item, bool):
            env[name] = "true" if item else "false"
        elif isinstance(item, int | float | str):
            env[name] = str(item)
        else:
            raise loader.error(
                f"env.{name}",
                f"env.{name}: expected a string, got {type_name(item)}",
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
        bad_name = check_env_name(key)
        if bad_name:
            raise ConfigError(f"{flag}: {bad_name}", hint="use --env.NAME value")
        env[key] = str(raw_value)
        return
    target: dict[str, Any]
    if not key and dotted in TOP_LEVEL_KINDS:
        kind, target, name = TOP_LEVEL_KINDS[dotted], top, dotted
    elif section in SECTIONS and key in field_kinds(SECTIONS[section]):
        kind = field_kinds(SECTIONS[section])[key]
        target, name = sections[section], key
    else:
        guess = suggest(dotted, known_keys())
        raise ConfigError(
            f"unknown option {flag}",
            hint=f"did you mean --{guess}?" if guess else "see `pyair --help` for the options",
        )
    try:
        target[name] = coerce(dotted, kind, raw_value, from_flag=True)
    except BadValue as exc:
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
