"""The config's shape: one frozen dataclass per section, air's keys, defaults and units.

    BuildConfig().delay                 # 10 (milliseconds)
    key_for("build.kill_delay")         # its Key: a duration, with air's nanoseconds rule
    known_keys()[:2]                    # ['root', 'tmp_dir']: every key is also a --flag

Each field says what it accepts through a helper of ``keys`` (``duration(500, at_most=MINUTE)``,
``choice("restart", "ignore")``...), so adding a key is one line here and its row in the
README's config reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from .command import AppCommand, resolve_app_command
from .keys import (
    HOUR,
    MINUTE,
    Key,
    app_url,
    argv,
    boolean,
    choice,
    colour,
    duration,
    environment,
    extensions,
    host_names,
    optional_text,
    path,
    paths,
    port,
    preload,
    strings,
    tables,
    text,
)
from .keys import RowProblem as RowProblem

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


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _check_regexes(patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise RowProblem(
                "exclude_regex",
                f"bad regular expression {pattern!r} ({exc})",
                "escape special characters, e.g. '_test\\\\.py$'",
            ) from None


@dataclass(frozen=True)
class RuleConfig:
    """One ``[[build.rules]]`` entry (air #919): ``cmd`` runs when a file it matches changes,
    after ``delay`` ms of quiet; such a file never restarts the app."""

    name: str = text()
    cmd: str = text()
    include_dir: tuple[str, ...] = paths()
    include_ext: tuple[str, ...] = extensions(())
    include_file: tuple[str, ...] = paths()
    exclude_regex: tuple[str, ...] = strings()
    delay: int = duration(1000, at_most=HOUR)  # air's default; a trailing quiet window per rule

    @classmethod
    def finish(cls, index: int, values: dict[str, Any]) -> RuleConfig:
        """Entry ``index`` of the array: air's default name, and what air requires."""
        if not values.get("name", "").strip():
            values["name"] = f"rule-{index}"
        if not values.get("cmd", "").strip():
            raise RowProblem(
                "cmd", "a rule needs a cmd", 'e.g. cmd = "npx tailwindcss -i in.css -o out.css"'
            )
        if not (
            values.get("include_dir") or values.get("include_ext") or values.get("include_file")
        ):
            raise RowProblem(
                None,
                "a rule needs include_dir, include_ext or include_file",
                'say which files run it, e.g. include_ext = ["scss"]',
            )
        _check_regexes(values.get("exclude_regex", ()))
        return cls(**values)


RESTART_POLICIES = ("app", "files", "never")


@dataclass(frozen=True)
class ProcessConfig:
    """One ``[[process]]`` entry: a long-running process beside the app (a worker, an asset
    watcher). ``restart``: "app" (with the app, after its build passed), "files" (when one of
    its own include_* files changes), "never" (keep it running); a crash reruns it."""

    UNIQUE_KEY: ClassVar[str] = "name"  # its console prefix and its process tree's token
    name: str = text()
    cmd: str = text()
    cwd: str = text()  # relative to root; "" is root
    env: Mapping[str, str] = environment()
    restart: str = choice("", *RESTART_POLICIES)  # "": "files" with include_*, else "app"
    include_dir: tuple[str, ...] = paths()
    include_ext: tuple[str, ...] = extensions(())
    include_file: tuple[str, ...] = paths()
    exclude_regex: tuple[str, ...] = strings()

    @property
    def has_patterns(self) -> bool:
        return bool(self.include_dir or self.include_ext or self.include_file)

    @classmethod
    def finish(cls, index: int, values: dict[str, Any]) -> ProcessConfig:
        """Entry ``index``: a name and a cmd, a restart policy that fits its patterns."""
        name = values.get("name", "").strip()
        if not _NAME.fullmatch(name):
            what = f"name {name!r} is not a plain name" if name else "a process needs a name"
            raise RowProblem("name", what, 'use letters, digits, "-", "_" or ".", e.g. "worker"')
        values["name"] = name
        if not values.get("cmd", "").strip():
            raise RowProblem(
                "cmd", "a process needs a cmd", 'e.g. cmd = "python -m celery -A proj worker"'
            )
        row = cls(**{**values, "env": MappingProxyType(dict(values.get("env", {})))})
        restart = row.restart or ("files" if row.has_patterns else "app")
        if restart == "files" and not row.has_patterns:
            raise RowProblem(
                "restart",
                'restart = "files" needs include_dir, include_ext or include_file',
                'say which files restart it, e.g. include_ext = ["py"]',
            )
        if restart == "never" and row.has_patterns:
            raise RowProblem(
                "restart",
                'restart = "never", but include_* files are given',
                'drop the include_* keys, or use restart = "files"',
            )
        _check_regexes(row.exclude_regex)
        return replace(row, restart=restart)


@dataclass(frozen=True)
class BuildConfig:
    pre_cmd: tuple[str, ...] = strings(per_os=True)
    cmd: str = text(per_os=True)
    post_cmd: tuple[str, ...] = strings(per_os=True)
    bin: str = text(per_os=True)
    entrypoint: tuple[str, ...] = argv(per_os=True)
    full_bin: str = text(per_os=True)
    args_bin: tuple[str, ...] = strings(per_os=True)
    log: str = text("build-errors.log")
    include_ext: tuple[str, ...] = extensions(DEFAULT_INCLUDE_EXT)
    exclude_dir: tuple[str, ...] = paths(("assets", "tmp", "vendor", "testdata"))
    include_dir: tuple[str, ...] = paths()
    include_file: tuple[str, ...] = paths()
    exclude_file: tuple[str, ...] = strings()
    exclude_regex: tuple[str, ...] = strings((r"_test\.py$",))
    exclude_unchanged: bool = boolean(False)
    follow_symlink: bool = boolean(False)
    poll: bool = boolean(False)
    poll_interval: int = duration(500, at_least=500, at_most=MINUTE)  # air's minimum
    delay: int = duration(10, at_most=MINUTE)  # quiet after a save (trailing; air: leading)
    stop_on_error: bool = boolean(False)
    send_interrupt: bool = boolean(False)
    kill_delay: int = duration(500, at_most=MINUTE, nanos_if_large=True)  # polite signal → SIGKILL
    rerun: bool = boolean(False)
    rerun_delay: int = duration(500, at_most=HOUR)
    ignore_dangerous_root_dir: bool = boolean(False)
    # pyair additions
    ready_url: str = app_url()
    ready_timeout: int = duration(10_000, at_most=HOUR)
    # "auto" (restarts fork a warm interpreter that imported what the last app did), or the
    # modules to preload; () when off (preload = false). See supervisor/zygote.py.
    preload: str | tuple[str, ...] = preload("auto")
    # The app's port stays open across restarts: pyair holds the listening socket and the app's
    # own bind() adopts it (Python apps); listen_fds hands it to any other program the systemd
    # way; overlap starts the new app once the old one stopped accepting, while it drains.
    # See supervisor/listeners.py.
    hold_port: bool = boolean(True)
    listen_fds: bool = boolean(False)
    overlap: bool = boolean(True)
    # air's [[build.rules]]: commands run on matching files, which never restart the app
    rules: tuple[RuleConfig, ...] = tables(RuleConfig)


@dataclass(frozen=True)
class LogConfig:
    time: bool = boolean(False)
    main_only: bool = boolean(False)
    silent: bool = boolean(False)


@dataclass(frozen=True)
class ColorConfig:
    main: str = colour("magenta")
    watcher: str = colour("cyan")
    build: str = colour("yellow")
    runner: str = colour("green")
    app: str = colour("", unused="the app's own output is passed through uncoloured, as in air")
    mode: str = choice("auto", "always", "never", "")


@dataclass(frozen=True)
class MiscConfig:
    clean_on_exit: bool = boolean(False)
    startup_banner: str | None = optional_text()


@dataclass(frozen=True)
class ScreenConfig:
    clear_on_rebuild: bool = boolean(False)
    keep_scroll: bool = boolean(True)


@dataclass(frozen=True)
class ProxyConfig:
    enabled: bool = boolean(False)
    proxy_port: int = port()
    app_port: int = port()
    app_start_timeout: int = duration(5000, at_most=HOUR, zero_means_default=True)  # air
    css_refresh: bool = boolean(True)
    bind: str = text("127.0.0.1")
    allowed_hosts: tuple[str, ...] = host_names()  # besides localhost and IP addresses


@dataclass(frozen=True)
class TemplatesConfig:
    include_ext: tuple[str, ...] = extensions(("html", "jinja", "jinja2", "j2"), lower=True)
    include_dir: tuple[str, ...] = paths()
    exclude_dir: tuple[str, ...] = paths()
    on_no_agent: str = choice("restart", "ignore")
    swap_timeout: int = duration(1000, at_most=MINUTE)


@dataclass(frozen=True)
class Config:
    root: Path = path(default_factory=Path.cwd)  # noqa: RUF009 - a field with a factory
    tmp_dir: str = text("tmp", blank_means_default=True)
    testdata_dir: str = text("testdata", blank_means_default=True)
    env_files: tuple[str, ...] = strings()
    # pyair: [[process]], the long-running processes beside the app
    process: tuple[ProcessConfig, ...] = tables(ProcessConfig)
    build: BuildConfig = BuildConfig()
    log: LogConfig = LogConfig()
    color: ColorConfig = ColorConfig()
    misc: MiscConfig = MiscConfig()
    screen: ScreenConfig = ScreenConfig()
    proxy: ProxyConfig = ProxyConfig()
    templates: TemplatesConfig = TemplatesConfig()
    # not keys: [env] (read-only after load_config), where the config came from, the extra
    # args given after ``--``, and the air keys that were read and ignored
    env: Mapping[str, str] = field(default_factory=dict)
    source: Path | None = None
    extra_args: tuple[str, ...] = ()
    unused_keys: tuple[str, ...] = ()

    @property
    def tmp_path(self) -> Path:
        return self.root / self.tmp_dir

    @property
    def build_log_path(self) -> Path:
        return self.tmp_path / self.build.log

    def process_named(self, name: str) -> ProcessConfig:
        """The ``[[process]]`` entry called ``name`` (KeyError if none)."""
        for process in self.process:
            if process.name == name:
                return process
        raise KeyError(name)

    def app_command(self) -> AppCommand:
        """The command that starts the app (air's full_bin > entrypoint > bin, else detected)."""
        return resolve_app_command(self)


def with_overrides(config: Config, **changes: Any) -> Config:
    """A copy of ``config`` with top-level fields replaced (for tests and subcommands)."""
    return replace(config, **changes)


# --------------------------------------------------------------------------- reading the schema


def section_keys(cls: type[Any]) -> Mapping[str, Key]:
    """The keys of a section (or of Config's top level), by name, in declaration order."""
    return {f.name: key for f in fields(cls) if (key := Key.of(f)) is not None}


# a field whose default is a dataclass is a section, a table in the file
SECTIONS: dict[str, type[Any]] = {
    f.name: type(f.default) for f in fields(Config) if is_dataclass(f.default)
}
TOP_LEVEL: Mapping[str, Key] = section_keys(Config)  # root, tmp_dir, testdata_dir, env_files
TOP_LEVEL_KEYS = tuple(TOP_LEVEL)
OS_SECTIONS = ("linux", "darwin", "windows", "freebsd", "openbsd", "netbsd")  # [build.<os>]
OS_OVERRIDE_KEYS = tuple(name for name, key in section_keys(BuildConfig).items() if key.per_os)


def key_for(dotted: str) -> Key | None:
    """The key ``root`` or ``build.delay`` names; None for anything else."""
    section_name, _, name = dotted.partition(".")
    if not name:
        return section_keys(Config).get(dotted)
    cls = SECTIONS.get(section_name)
    return section_keys(cls).get(name) if cls is not None else None


def known_keys() -> list[str]:
    """Every dotted key a flag may set (the CLI builds its override flags from this).

    Arrays of tables (``build.rules``, ``process``) are not among them: as in air, only the
    file sets those (see :func:`table_keys`).
    """
    keys = [name for name, key in TOP_LEVEL.items() if key.flag]
    for section_name, cls in SECTIONS.items():
        keys.extend(f"{section_name}.{name}" for name, key in section_keys(cls).items() if key.flag)
    return keys


def table_keys() -> list[str]:
    """The dotted keys that are arrays of tables: ``process``, ``build.rules``."""
    keys = [name for name, key in TOP_LEVEL.items() if not key.flag]
    for section_name, cls in SECTIONS.items():
        keys.extend(
            f"{section_name}.{name}" for name, key in section_keys(cls).items() if not key.flag
        )
    return keys


# Keys air documents that mean nothing for pyair: accepted, named once as unused. Those with a
# field say so on it (``unused=``); these have none.
_UNUSED_WITHOUT_FIELD = {
    "watch_dir": "a legacy .air.conf key; use [build] include_dir",
}
UNUSED_KEYS: Mapping[str, str] = {
    **{
        dotted: key.unused
        for dotted in known_keys()
        if (key := key_for(dotted)) is not None and key.unused is not None
    },
    **_UNUSED_WITHOUT_FIELD,
}
