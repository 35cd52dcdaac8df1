"""`pyair init`: what it detects, what it writes, and that what it writes passes `pyair smoke`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support import APPS, free_port, pyair_command, pyair_env

from supervisor.config import load_config
from supervisor.init import detect, render
from supervisor.readiness import Target, probe_target


def run_pyair(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pyair_command(*args),
        cwd=cwd,
        env=pyair_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


# fixture app -> what init must say it found
FRAMEWORKS = {
    "smoke_jinja": "a Python script in app.py",
    "smoke_flask": "a Flask app in app.py",
    "smoke_fastapi": "a FastAPI app in main.py",
    "smoke_django": "a Django app in manage.py",
    "smoke_aiohttp": "an aiohttp app in app.py",
    "smoke_node": "a Node.js app in server.js",
}


@pytest.mark.parametrize("app", sorted(FRAMEWORKS))
def test_init_writes_a_config_that_passes_smoke(tmp_path: Path, app: str) -> None:
    if app == "smoke_node" and shutil.which("node") is None:
        pytest.skip("node is not installed")
    project = tmp_path / app
    shutil.copytree(APPS / app, project)
    browser, app_port = free_port(), free_port()
    init = run_pyair(project, "init", "--port", str(browser), "--app-port", str(app_port))
    assert init.returncode == 0, init.stderr
    assert init.stderr.startswith(f"detected {FRAMEWORKS[app]}: wrote .air.toml\n"), init.stderr
    opened = f"  open       http://127.0.0.1:{browser}/ (live reload; the app itself listens"
    assert f"{opened} on port {app_port})" in init.stderr
    assert f"  ready      when port {app_port} answers HTTP (any status)" in init.stderr
    smoke = run_pyair(project, "smoke")
    assert smoke.returncode == 0, f"{smoke.stdout}\n{smoke.stderr}"
    assert "smoke passed" in smoke.stdout


SOURCES = [
    # file, source, (kind, command, app port, reads $PORT, proxy port)
    (
        "app.py",
        "from flask import Flask\napp = Flask(__name__)\n",
        ("Flask", "python -m flask --app app run --debug --port 5001", 5001, False, 5000),
    ),
    (
        "app.py",
        "from flask import Flask\napp = Flask(__name__)\n"
        "if __name__ == '__main__':\n    app.run(port=5050, debug=True)\n",
        ("Flask", "python app.py", 5050, False, 5051),  # its port is in its source: kept
    ),
    (
        "main.py",
        "from fastapi import FastAPI\napp: FastAPI = FastAPI()\n",
        ("FastAPI", "python -m uvicorn main:app --port 8001", 8001, False, 8000),
    ),
    (
        "asgi.py",
        "from starlette.applications import Starlette\napplication = Starlette(routes=[])\n",
        ("Starlette", "python -m uvicorn asgi:application --port 8001", 8001, False, 8000),
    ),
    (
        "server.py",
        "from aiohttp import web\napp = web.Application()\n"
        "if __name__ == '__main__':\n    web.run_app(app, port=9090)\n",
        ("aiohttp", "python server.py", 9090, False, 9091),
    ),
    (
        "app.py",
        "import os\nfrom http.server import HTTPServer\n"
        "if __name__ == '__main__':\n    HTTPServer(('', int(os.environ.get('PORT', 8123))), H)\n",
        ("Python script", "python app.py", 8124, True, 8123),  # $PORT: pyair picks it
    ),
    (
        "app.py",
        "print('no server here')\nif __name__ == '__main__':\n    pass\n",
        ("Python script", "python app.py", None, False, None),
    ),
    (
        "index.js",
        "require('http').createServer(() => {}).listen(4000);\n",
        ("Node.js", "node index.js", 4000, False, 4001),
    ),
    # the tutorials' layouts
    (
        "flaskr/__init__.py",
        "from flask import Flask\n\ndef create_app(test_config=None):\n"
        "    app = Flask(__name__)\n    return app\n",
        ("Flask", "python -m flask --app flaskr run --debug --port 5001", 5001, False, 5000),
    ),
    (
        "app/main.py",
        "from fastapi import FastAPI\napp = FastAPI()\n",
        ("FastAPI", "python -m uvicorn app.main:app --port 8001", 8001, False, 8000),
    ),
    (
        "api/__init__.py",
        "from starlette.applications import Starlette\nweb = Starlette()\n",
        ("Starlette", "python -m uvicorn api:web --port 8001", 8001, False, 8000),
    ),
    (
        "mysite/manage.py",
        "import os, sys\n",
        (
            "Django",
            "python mysite/manage.py runserver 127.0.0.1:8001 --noreload",
            8001,
            False,
            8000,
        ),
    ),
    (
        ".flaskenv",
        "FLASK_APP=hello:make()\n",
        ("Flask", "python -m flask --app hello:make() run --debug --port 5001", 5001, False, 5000),
    ),
]


@pytest.mark.parametrize(("name", "source", "expected"), SOURCES)
def test_detect(tmp_path: Path, name: str, source: str, expected: tuple[object, ...]) -> None:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(source)
    if "/" in name:
        (tmp_path / name).with_name("__init__.py").touch()
    found = detect(tmp_path)
    assert found is not None
    assert (found.kind, found.command, found.port, found.port_env, found.proxy_port) == expected
    (tmp_path / ".air.toml").write_text(render(found))
    config = load_config(tmp_path / ".air.toml")
    assert config.app_command().shell == found.command
    assert config.build.ready_url == ""  # readiness needs no page: any answer on the port
    assert config.proxy.enabled == (found.port is not None)
    assert (config.proxy.app_port, config.proxy.proxy_port) == (
        found.port or 0,
        found.proxy_port or 0,
    )
    assert probe_target(config) == (Target("127.0.0.1", found.port) if found.port else None)
    if found.port_env:
        assert config.env["PORT"] == str(found.port)


def test_a_package_is_found_past_tests_and_venvs(tmp_path: Path) -> None:
    for skipped in ("tests", ".venv", "venv"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "__init__.py").write_text(
            "from flask import Flask\napp = Flask('x')\n"
        )
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "main.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n")
    found = detect(tmp_path, port=9000)
    assert found is not None
    assert (found.entry, found.command) == (
        "shop/main.py",
        "python -m uvicorn shop.main:app --port 9001",
    )


def test_detect_notes_a_reloader_pyair_switches_off(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(SOURCES[1][1])
    found = detect(tmp_path)
    assert found is not None and any("switches Werkzeug's reloader off" in n for n in found.notes)


def test_port_flags_win_and_node_main_comes_from_package_json(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"scripts": {"start": "node src/serve.js"}}')
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "serve.js").write_text("app.listen(process.env.PORT || 3300)\n")
    found = detect(tmp_path, port=4567, app_port=4999)
    assert found is not None
    assert (found.kind, found.command, found.port, found.port_env, found.proxy_port) == (
        "Node.js",
        "node src/serve.js",
        4999,
        True,
        4567,
    )


def test_init_rejects_a_bad_port(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)\n")
    result = run_pyair(tmp_path, "init", "--port", "70000")
    assert result.returncode == 2
    assert result.stderr.strip() == "--port: 70000 is not a TCP port; give 1 to 65535"
    assert not (tmp_path / ".air.toml").exists()


def test_the_commented_rules_and_processes_example_loads_uncommented(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print('hi')\n")
    found = detect(tmp_path)
    assert found is not None
    text = render(found)
    assert "# [[build.rules]]" in text and "# [[process]]" in text
    uncommented = re.sub(
        r"^# (\[\[|(name|cmd|include_\w+|restart) =)", r"\1", text, flags=re.MULTILINE
    )
    (tmp_path / ".air.toml").write_text(uncommented)
    config = load_config(tmp_path / ".air.toml")
    assert [rule.name for rule in config.build.rules] == ["css"]
    assert [(p.name, p.restart) for p in config.process] == [
        ("worker", "app"),
        ("tailwind", "never"),
    ]
