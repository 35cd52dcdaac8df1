"""Command line: ``pyair [-c FILE] [-d] [--version] [--section.key VALUE ...] [-- ARGS]``.

    $ pyair -c .air.toml
    $ pyair --build.full_bin "python app.py" --build.delay 50 -- --port 8000
    $ pyair init
    $ pyair smoke -c .air.toml --json smoke.json

Every config key is also a flag named by its dotted path (lists are comma-separated), and a
flag always wins over the file. This is the only module that exits.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from . import __version__
from .config import find_config, known_keys, load_config, table_flag_error, table_keys
from .console import Console
from .engine import Engine, one_line_error
from .errors import ConfigError, PyairError

if sys.version_info < (3, 11):  # pragma: no cover - anyio brings the backport
    from exceptiongroup import BaseExceptionGroup

SUBCOMMANDS = ("init", "smoke")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyair",
        description="Live-reload supervisor: rebuild and restart your app when its files change.",
        epilog="Every config key is a flag too: --build.cmd '...', --build.delay 50, "
        "--proxy.enabled true, --env.NAME value. Arguments after -- go to the app. "
        "Subcommands: `pyair init` writes .air.toml for the app found here; "
        "`pyair smoke` runs the CI check (see `pyair smoke --help`).",
        allow_abbrev=False,
    )
    parser.add_argument("-c", "--config", metavar="FILE", type=Path, help="config file")
    parser.add_argument("-d", "--debug", action="store_true", help="log every file event")
    parser.add_argument("-v", "--version", action="version", version=f"pyair {__version__}")
    parser.add_argument("--color", choices=("auto", "always", "never"), help="colour output")
    overrides = parser.add_argument_group("config overrides")
    for key in known_keys():
        overrides.add_argument(
            f"--{key}", dest=f"set:{key}", metavar="VALUE", help=argparse.SUPPRESS
        )
    return parser


def _split_app_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        index = list(argv).index("--")
        return list(argv[:index]), list(argv[index + 1 :])
    return list(argv), []


def _env_flags(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Pull out ``--env.NAME VALUE`` / ``--env.NAME=VALUE`` (names are free-form)."""
    rest: list[str] = []
    env: dict[str, str] = {}
    items = iter(argv)
    for item in items:
        if item.startswith("--env."):
            name, eq, value = item[len("--env.") :].partition("=")
            if not eq:
                value = next(items, "")
            env[f"env.{name}"] = value
        else:
            rest.append(item)
    return rest, env


def _unknown_option(option: str) -> ConfigError:
    name = option.split("=", 1)[0]
    if name[2:] in table_keys():
        return table_flag_error(name[2:])
    choices = [f"--{k}" for k in known_keys()] + ["--config", "--debug", "--version", "--color"]
    guess = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    hint = f"did you mean {guess[0]}?" if guess else "see `pyair --help`"
    return ConfigError(f"unknown option {name}", hint=hint)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, str], list[str]]:
    """Options, dotted overrides and the app's extra args, or ConfigError."""
    ours, app_args = _split_app_args(argv)
    ours, overrides = _env_flags(ours)
    namespace, unknown = _parser().parse_known_args(ours)
    if unknown:
        if unknown[0].startswith("-"):
            raise _unknown_option(unknown[0])
        raise ConfigError(
            f"unexpected argument {unknown[0]!r}",
            hint="put the app's own arguments after --, e.g. pyair -- --port 8000",
        )
    for key, value in vars(namespace).items():
        if key.startswith("set:") and value is not None:
            overrides[key[4:]] = value
    if namespace.color:
        overrides["color.mode"] = namespace.color
    return namespace, overrides, app_args


def main(argv: Sequence[str] | None = None) -> int:
    """Run pyair; returns the exit code (0 ok, 1 runtime failure, 2 usage or config)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "init":
            from .init import main as init_main

            return init_main(argv[1:])
        if argv and argv[0] == "smoke":
            from .smoke import main as smoke_main

            return smoke_main(argv[1:])
        namespace, overrides, app_args = parse_args(argv)
        path = find_config(namespace.config, Path.cwd())
        config = load_config(path, overrides=overrides, extra_args=app_args)
    except (PyairError, BaseExceptionGroup) as exc:  # a group: from a subcommand's task group
        error = one_line_error(exc)
        if error is None:
            raise
        print(str(error), file=sys.stderr)
        return error.exit_code
    console = Console(config.log, config.color, config.screen, debug=namespace.debug)
    if path is None:
        console.main("no .air.toml found: using defaults (run `pyair init` to write one)")
    try:
        return anyio.run(Engine(config, console, debug=namespace.debug).run)
    except KeyboardInterrupt:
        return 130
    except PyairError as exc:
        console.error(str(exc))
        return exc.exit_code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
