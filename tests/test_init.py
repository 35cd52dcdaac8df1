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
    port = free_port()
    init = run_pyair(project, "init", "--port", str(port))
    assert init.returncode == 0, init.stderr
    assert init.stderr.startswith(f"detected {FRAMEWORKS[app]}: wrote .air.toml\n"), init.stderr
    assert f"ready      when http://127.0.0.1:{port}/ answers 2xx/3xx" in init.stderr
    smoke = run_pyair(project, "smoke")
    assert smoke.returncode == 0, f"{smoke.stdout}\n{smoke.stderr}"
    assert "smoke passed" in smoke.stdout


SOURCES = [
    # file, source, (kind, command, port, reads $PORT)
    (
        "app.py",
        "from flask import Flask\napp = Flask(__name__)\n",
        ("Flask", "python -m flask --app app run --port 5000", 5000, False),
    ),
    (
        "app.py",
        "from flask import Flask\napp = Flask(__name__)\n"
        "if __name__ == '__main__':\n    app.run(port=5050, debug=True)\n",
        ("Flask", "python app.py", 5050, False),
    ),
    (
        "main.py",
        "from fastapi import FastAPI\napp: FastAPI = FastAPI()\n",
        ("FastAPI", "python -m uvicorn main:app --port 8000", 8000, False),
    ),
    (
        "asgi.py",
        "from starlette.applications import Starlette\napplication = Starlette(routes=[])\n",
        ("Starlette", "python -m uvicorn asgi:application --port 8000", 8000, False),
    ),
    (
        "server.py",
        "from aiohttp import web\napp = web.Application()\n"
        "if __name__ == '__main__':\n    web.run_app(app, port=9090)\n",
        ("aiohttp", "python server.py", 9090, False),
    ),
    (
        "app.py",
        "import os\nfrom http.server import HTTPServer\n"
        "if __name__ == '__main__':\n    HTTPServer(('', int(os.environ.get('PORT', 8123))), H)\n",
        ("Python script", "python app.py", 8123, True),
    ),
    (
        "app.py",
        "print('no server here')\nif __name__ == '__main__':\n    pass\n",
        ("Python script", "python app.py", None, False),
    ),
    (
        "index.js",
        "require('http').createServer(() => {}).listen(4000);\n",
        ("Node.js", "node index.js", 4000, False),
    ),
]


@pytest.mark.parametrize(("name", "source", "expected"), SOURCES)
def test_detect(tmp_path: Path, name: str, source: str, expected: tuple[object, ...]) -> None:
    (tmp_path / name).write_text(source)
    found = detect(tmp_path)
    assert found is not None
    assert (found.kind, found.command, found.port, found.port_env) == expected
    (tmp_path / ".air.toml").write_text(render(found))
    config = load_config(tmp_path / ".air.toml")
    assert config.app_command().shell == found.command
    assert config.build.ready_url == (f"http://127.0.0.1:{found.port}/" if found.port else "")
    if found.port_env:
        assert config.env["PORT"] == str(found.port)


def test_detect_notes_a_reloader_that_would_fight_pyair(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(SOURCES[1][1])
    found = detect(tmp_path)
    assert found is not None and any("use_reloader=False" in note for note in found.notes)


def test_port_flag_wins_and_node_main_comes_from_package_json(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"scripts": {"start": "node src/serve.js"}}')
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "serve.js").write_text("app.listen(process.env.PORT || 3300)\n")
    found = detect(tmp_path, port=4567)
    assert found is not None
    assert (found.kind, found.command, found.port, found.port_env) == (
        "Node.js",
        "node src/serve.js",
        4567,
        True,
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
