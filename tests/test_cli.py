"""The command line, `pyair init`, the console, and what the agent imports at start-up."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import pytest
from support import REPO, run_pyair

from supervisor.cli import parse_args
from supervisor.config import ColorConfig, LogConfig
from supervisor.console import Console
from supervisor.errors import ConfigError


def test_version(tmp_path: Path) -> None:
    result = run_pyair("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert re.fullmatch(r"pyair \d+\.\d+\.\d+\n", result.stdout)


def test_dotted_overrides_and_app_args_are_split() -> None:
    _, overrides, app_args = parse_args(
        ["-d", "--build.delay", "50", "--build.exclude_dir=a,b", "--env.FOO", "1", "--", "-x"]
    )
    assert overrides == {"build.delay": "50", "build.exclude_dir": "a,b", "env.FOO": "1"}
    assert app_args == ["-x"]


def test_stray_positional_argument_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="put the app's own arguments after --"):
        parse_args(["app.py"])


def test_init_detects_flask_and_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    first = run_pyair("init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "detected a Flask app in app.py" in first.stderr
    written = (tmp_path / ".air.toml").read_text()
    assert 'full_bin = "python -m flask --app app run --debug --port 5001"' in written
    assert "\nproxy_port = 5000\n" in written and "\napp_port = 5001\n" in written
    second = run_pyair("init", cwd=tmp_path)
    assert second.returncode == 2
    assert second.stderr.strip().endswith("already exists; remove it first to write a new one")
    assert (tmp_path / ".air.toml").read_text() == written


def test_init_config_loads_cleanly(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n")
    assert run_pyair("init", cwd=tmp_path).returncode == 0
    from supervisor.config import load_config

    config = load_config(tmp_path / ".air.toml")
    assert config.app_command().shell == "python -m uvicorn main:app --port 8001"
    assert (config.proxy.enabled, config.proxy.proxy_port, config.proxy.app_port) == (
        True,
        8000,
        8001,
    )


def test_init_without_an_app_says_what_it_looked_for(tmp_path: Path) -> None:
    result = run_pyair("init", cwd=tmp_path)
    assert result.returncode == 2
    assert "no app found" in result.stderr
    assert not (tmp_path / ".air.toml").exists()


def _console(**log: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(LogConfig(**log), ColorConfig(), stream=out), out


def test_console_is_plain_text_when_not_a_tty() -> None:
    console, out = _console()
    console.watcher("app.py changed")
    console.runner("pid 1 ready in 40 ms")
    assert out.getvalue() == "watch  app.py changed\nrun    pid 1 ready in 40 ms\n"


def test_console_colours_when_forced() -> None:
    out = io.StringIO()
    console = Console(LogConfig(), ColorConfig(mode="always"), stream=out)
    console.watcher("x")
    assert "\x1b[36m" in out.getvalue()  # cyan, air's watcher colour


def test_console_main_only_silent_and_time() -> None:
    console, out = _console(main_only=True)
    console.watcher("hidden")
    console.main("shown")
    console.error("errors always show")
    assert "hidden" not in out.getvalue()
    assert "shown" in out.getvalue() and "errors always show" in out.getvalue()
    silent, quiet = _console(silent=True)
    silent.main("nothing")
    silent.error("nothing")
    assert quiet.getvalue() == ""
    timed, stamped = _console(time=True)
    timed.main("tick")
    assert re.match(r"\[\d\d:\d\d:\d\d\] pyair  tick\n", stamped.getvalue())


def test_agent_start_up_imports_only_stdlib_and_protocol() -> None:
    """What runs when the app starts; engine adapters load lazily, when the app imports one."""
    agent = REPO / "supervisor" / "agent"
    if not agent.exists():
        pytest.skip("no agent package")
    allowed_local = {"protocol", "childside", "agent", "supervisor", "bootstrap"}
    start_up = [agent / "__init__.py", *(agent / "bootstrap").glob("*.py")]
    for path in start_up:
        top_level = [
            node
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.Import | ast.ImportFrom)
        ]
        for node in top_level:
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
            )
            for name in names:
                root = name.split(".")[0]
                assert root in allowed_local or root in _stdlib(), f"{path.name} imports {name}"


def _stdlib() -> frozenset[str]:
    import sys

    return frozenset(sys.stdlib_module_names) | {"__future__", ""}
