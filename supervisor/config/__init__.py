"""Air-style TOML config: air's keys, units and defaults, plus pyair's own sections.

    config = load_config(find_config(None, Path.cwd()), overrides={"build.delay": "50"})
    config.build.delay                      # 50 (milliseconds)
    config.app_command().argv               # ('/usr/bin/python3', 'app.py')
    config_warnings(config)                 # one line per include_dir / env_files not there
    child_environment(config, os.environ)   # + env_files + [env], for the build and the app

Every problem is a :class:`ConfigError` whose ``str()`` is one line:
``.air.toml:7:3: unknown key 'dealy' in [build]; did you mean 'delay'?``

One job per module; imports point one way, loading → reader → schema → keys → values:

- ``loading``: find the file, parse it, apply ``[build.<os>]`` and flags, check it whole.
- ``reader``: the parsed file table by table into checked values; errors at the key's line.
- ``schema``: the sections as frozen dataclasses, air's defaults, the keys they declare.
- ``keys``: how a field declares its key: ``duration(500)``, ``port()``, ``choice(...)``.
- ``values``: kinds of values (durations, booleans, lists) read from TOML or from a flag.
- ``locator``: ``KeyLines``, where each key sits in the text.
- ``command``: the command that starts the app; ``environment``: dotenv and the child's env
  (both take a Config, and import it for typing only).

Adding a key is one line in ``schema`` plus its row in the README's config reference:
``swap_retry: int = duration(250)`` in ``TemplatesConfig`` reads ``250`` or ``"2s"`` from the
file and ``--templates.swap_retry 1m`` from the command line, and a bad value gets an error
that shows how to write one.
"""

from __future__ import annotations

from .command import AppCommand, detect_entry, python_executable, resolve_app_command
from .environment import child_environment, parse_dotenv
from .loading import (
    CONFIG_CANDIDATES,
    config_warnings,
    current_os,
    find_config,
    load_config,
    table_flag_error,
)
from .locator import KeyLines
from .schema import (
    ALWAYS_EXCLUDED_DIRS,
    DEFAULT_INCLUDE_EXT,
    TEMPLATE_EXTS,
    UNUSED_KEYS,
    BuildConfig,
    ColorConfig,
    Config,
    LogConfig,
    MiscConfig,
    ProcessConfig,
    ProxyConfig,
    RuleConfig,
    ScreenConfig,
    TemplatesConfig,
    known_keys,
    table_keys,
    with_overrides,
)
from .values import parse_duration_ms

__all__ = [
    "ALWAYS_EXCLUDED_DIRS",
    "CONFIG_CANDIDATES",
    "DEFAULT_INCLUDE_EXT",
    "TEMPLATE_EXTS",
    "UNUSED_KEYS",
    "AppCommand",
    "BuildConfig",
    "ColorConfig",
    "Config",
    "KeyLines",
    "LogConfig",
    "MiscConfig",
    "ProcessConfig",
    "ProxyConfig",
    "RuleConfig",
    "ScreenConfig",
    "TemplatesConfig",
    "child_environment",
    "config_warnings",
    "current_os",
    "detect_entry",
    "find_config",
    "known_keys",
    "load_config",
    "parse_dotenv",
    "parse_duration_ms",
    "python_executable",
    "resolve_app_command",
    "table_flag_error",
    "table_keys",
    "with_overrides",
]
