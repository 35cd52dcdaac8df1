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
from .locator import MAX_NESTING, KeyLines
from .reader import DocumentReader, syntax_error
from .schema import (
    SECTIONS,
    TOP_LEVEL,
    UNUSED_KEYS,
    BuildConfig,
    Config,
    key_for,
    known_keys,
)
from .values import BadValue, suggest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_CANDIDATES = (".air.toml", ".config/air.toml")
_BIND = re.compile(r"[A-Za-z0-9_.:-]+|\[[0-9A-Fa-f:.]+\]")  # a name, IPv4 or IPv6
MAX_BYTES = 256 * 1024  # a real .air.toml is a few KiB: a bigger file is the wrong one


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


def _apply_os_overrides(
    build: dict[str, Any], raw: Mapping[str, Any], reader: DocumentReader
) -> None:
    """Apply this OS's ``[build.<os>]`` block (air: only the command keys)."""
    block = raw.get(current_os())
    if block is not None:
        build.update(reader.os_block(current_os(), block))


def read_config_text(path: Path) -> str:
    """The config file's text (without a BOM); ConfigError when unreadable or over MAX_BYTES."""
    try:
        with path.open("rb") as source:
            data = source.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                size = os.fstat(source.fileno()).st_size
                raise ConfigError(
                    f"config file is {size / 1e6:.1f} MB; pyair reads configs up to "
                    f"{MAX_BYTES // 1024} KiB",
                    path=path,
                    hint="is this the right file? pass yours with -c",
                )
        # as text mode reads it: universal newlines
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read config: {exc}", path=path, hint="check the file and its permissions"
        ) from None
    return text.removeprefix("\ufeff")  # a BOM some editors write


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
    text = "" if path is None else read_config_text(path)
    reader = DocumentReader(path, text)
    document: dict[str, Any] = {}
    if path is not None:
        if reader.keys.too_deep is not None:
            line, col = reader.keys.too_deep
            raise ConfigError(
                f"arrays or inline tables nested more than {MAX_NESTING} deep",
                path=path,
                line=line,
                col=col,
                hint="no key takes that: flatten the value (lists of strings, one table level)",
            )
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise syntax_error(path, exc, text) from None
        except RecursionError:  # nesting the scanner did not see (it never raises)
            raise ConfigError(
                "TOML nested too deeply to read", path=path, hint="flatten the nested value"
            ) from None

    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    env: dict[str, str] = {}
    for key, value in document.items():
        if key in UNUSED_KEYS:
            reader.unused.append(key)
        elif key in SECTIONS:
            sections[key] = reader.section(key, SECTIONS[key], value)
            if key == "build" and isinstance(value, dict):
                _apply_os_overrides(sections["build"], value, reader)
        elif key == "env":
            env = reader.env_table(value)
        elif key in TOP_LEVEL:
            top[key] = reader.value(key, TOP_LEVEL[key], value)
        else:
            raise reader.unknown(
                key, [*TOP_LEVEL, *SECTIONS, "env"], "at the top level",
                table=isinstance(value, dict),
            )  # fmt: skip

    for dotted, raw_value in (overrides or {}).items():
        _apply_override(dotted, raw_value, top, sections, env, reader)

    tmp_dir = top.get("tmp_dir", "tmp")
    if tmp_dir != "tmp" and "exclude_dir" not in sections["build"]:
        # air's adjustDefaultsForTmpDir: the default exclude_dir follows tmp_dir
        default = BuildConfig().exclude_dir
        sections["build"]["exclude_dir"] = tuple(tmp_dir if d == "tmp" else d for d in default)

    _expand_ready_url(sections, reader)

    base_dir = path.parent if path is not None else cwd
    if path is not None and path.parent.name == ".config" and path.name == "air.toml":
        base_dir = path.parent.parent
    root = _resolve_root(top.pop("root", "."), base_dir=base_dir, cwd=cwd, reader=reader)

    config = Config(
        root=root,
        **{name: cls(**sections[name]) for name, cls in SECTIONS.items()},
        env=MappingProxyType(env),
        source=path,
        extra_args=tuple(extra_args),
        unused_keys=tuple(dict.fromkeys(reader.unused)),
        **top,
    )
    _check_semantics(config, reader)
    if check_app:
        resolve_app_command(config, problem=reader.problem)
    return config


def _expand_ready_url(sections: dict[str, dict[str, Any]], reader: DocumentReader) -> None:
    """A ``/path`` ready_url is on the app: ``http://127.0.0.1:<app_port>/path``."""
    url = sections["build"].get("ready_url", "")
    if not url.startswith("/"):
        return
    port = sections["proxy"].get("app_port", 0)
    if not port:
        raise reader.problem(
            "build.ready_url",
            f"{url!r} is a path, but [proxy] app_port is not set",
            "set [proxy] app_port, or give a full URL, e.g. http://127.0.0.1:8000/healthz",
        )
    sections["build"]["ready_url"] = f"http://127.0.0.1:{port}{url}"


def _apply_override(
    dotted: str,
    raw_value: str,
    top: dict[str, Any],
    sections: dict[str, dict[str, Any]],
    env: dict[str, str],
    reader: DocumentReader,
) -> None:
    flag = f"--{dotted}"
    section, _, key = dotted.partition(".")
    if section == "env" and key:
        bad_name = check_env_name(key)
        if bad_name:
            raise ConfigError(f"{flag}: {bad_name}", hint="use --env.NAME value")
        env[key] = str(raw_value)
        return
    spec = key_for(dotted)
    if spec is not None and not spec.flag:
        raise table_flag_error(dotted)
    if spec is None:
        guess = suggest(dotted, known_keys())
        raise ConfigError(
            f"unknown option {flag}",
            hint=f"did you mean --{guess}?" if guess else "see `pyair --help` for the options",
        )
    target, name = (sections[section], key) if key else (top, dotted)
    try:
        target[name] = spec.read(raw_value, from_flag=True)
    except BadValue as exc:
        raise ConfigError(f"{flag}: {exc}", hint=exc.hint or spec.flag_hint(dotted)) from None
    reader.flags.add(dotted)


def table_flag_error(dotted: str) -> ConfigError:
    """``--build.rules``: an array of tables is only read from the file, as in air."""
    return ConfigError(
        f"--{dotted} cannot be set by a flag (as in air)",
        hint=f"write [[{dotted}]] tables in the config file",
    )


def _resolve_root(value: str, *, base_dir: Path, cwd: Path, reader: DocumentReader) -> Path:
    """root from --root (relative to cwd), else $air_wd (as air), else the file (relative to it)."""
    air_wd = os.environ.get("air_wd")  # noqa: SIM112 - air's own (lowercase) name
    if "root" in reader.flags:
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
    if "root" in reader.flags:
        raise ConfigError(f"--root: {what}", hint="pass your project directory")
    if air_wd:
        raise ConfigError(
            f"air_wd: {what}",
            hint="point the air_wd environment variable at your project, or unset it",
        )
    raise reader.error(
        "root", what, "set root to your project directory (relative to the config file)"
    )


def _check_semantics(config: Config, reader: DocumentReader) -> None:
    dangerous = {Path("/"), Path("/root"), Path.home().resolve()}
    if config.root in dangerous and not config.build.ignore_dangerous_root_dir:
        raise reader.error(
            "root",
            f"refusing to watch {config.root}: it is a dangerous root directory",
            "point root at your project, or set [build] ignore_dangerous_root_dir = true",
        )
    for pattern in config.build.exclude_regex:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise reader.problem(
                "build.exclude_regex",
                f"bad regular expression {pattern!r} ({exc})",
                "escape special characters, e.g. '_test\\\\.py$'",
            ) from None
    proxy = config.proxy
    if not _BIND.fullmatch(proxy.bind):
        raise reader.problem(
            "proxy.bind",
            f"{proxy.bind!r} is not an address or a host name",
            'write an address, e.g. bind = "127.0.0.1" (or "0.0.0.0" for every interface)',
        )
    if proxy.enabled and proxy.app_port == 0:
        raise reader.problem(
            "proxy.enabled",
            "the proxy is enabled but proxy.app_port is not set",
            "set [proxy] app_port (or --proxy.app_port) to the port your app listens on",
            where="proxy",
        )
    if proxy.enabled and proxy.proxy_port != 0 and proxy.proxy_port == proxy.app_port:
        raise reader.problem(
            "proxy.proxy_port",
            f"proxy_port and app_port are both {proxy.app_port}",
            "the proxy needs its own port, e.g. proxy_port = app_port + 1",
        )


def config_warnings(config: Config) -> list[str]:
    """One line for each configured path that is not there: an ``include_dir`` (build or
    templates) that is not a directory, an ``env_files`` entry that is not a file. pyair starts
    anyway (a directory may be created later, a ``.env`` is optional in air); said once.
    """
    where = _key_lines(config.source)
    found: list[str] = []

    def warn(dotted: str, what: str) -> None:
        line, _col = where.find(dotted) if where is not None else (None, None)
        at = f"{config.source}:{line}: " if config.source and line else ""
        found.append(f"{at}{dotted}: {what}")

    for section, dirs in (
        ("build", config.build.include_dir),
        ("templates", config.templates.include_dir),
    ):
        for entry in dirs:
            if not (path := config.root / entry).is_dir():
                warn(f"{section}.include_dir", f"{entry!r} is not a directory ({path})")
    for name in config.env_files:
        if not (path := config.root / Path(name).expanduser()).is_file():
            warn("env_files", f"{name!r} does not exist ({path}); it is skipped")
    return found


def _key_lines(source: Path | None) -> KeyLines | None:
    if source is None:
        return None
    try:
        return KeyLines(read_config_text(source))
    except ConfigError:
        return None
