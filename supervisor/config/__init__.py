"""Air-style TOML config: air's keys, units and defaults, plus pyair's own sections.

    cfg = load_config(Path(".air.toml"), overrides={"build.delay": "50"})
    cfg.build.delay          # 50 (milliseconds)
    cfg.app_command().argv   # ['/usr/bin/python3', 'app.py']

Every problem is a :class:`ConfigError` whose ``str()`` is one line:
``.air.toml:7:3: unknown key 'dealy' in [build]; did you mean 'delay'?``
"""

from __future__ import annotations

from .command import AppCommand, detect_entry, python_executable, resolve_app_command
from .environment import child_environment, parse_dotenv
from .loading import CONFIG_CANDIDATES, current_os, find_config, load_config
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
    ProxyConfig,
    ScreenConfig,
    TemplatesConfig,
    known_keys,
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
    "ProxyConfig",
    "ScreenConfig",
    "TemplatesConfig",
    "child_environment",
    "current_os",
    "detect_entry",
    "find_config",
    "known_keys",
    "load_config",
    "parse_dotenv",
    "parse_duration_ms",
    "python_executable",
    "resolve_app_command",
    "with_overrides",
]
