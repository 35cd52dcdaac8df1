"""Warm restarts through the preloading zygote: real apps under a real ``pyair -d``.

The fixture apps (tests/apps/zygote_*) write one line per start to starts.jsonl saying which
modules were already imported before their own import statements ran: a warm child has flask
(django, the fake site-packages library) already, and never the app's own modules. Libraries
"installed" outside the project live in tests/apps/zygote_libs/site-packages, put on the app's
PYTHONPATH. Unit tests cover the command parsing, the config key and the module filter.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from support import APPS, REPO, PyairRun, free_port, http_get, pid_alive, wait_until

from supervisor import protocol
from supervisor.config import AppCommand, load_config
from supervisor.errors import ConfigError
from supervisor.zygote import (
    MEMORY_FILE,
    Invocation,
    PreloadMemory,
    first_change,
    parse_invocation,
    project_files,
    select_modules,
)

PY = sys.executable
COLD = r"pid (\d+) ready in \d+ ms \(cold"
WARM = r"pid (\d+) ready in \d+ ms \(warm"
ZYGOTE_READY = r"preload: zygote \d+ \(pid (\d+)\) is warm"
LIBS = "zygote_libs"


# --------------------------------------------------------------------------- helpers


def project(tmp_path: Path, app: str) -> Path:
    """A copy of tests/apps/<app> (and the fake site-packages next to it)."""
    shutil.copytree(APPS / LIBS, tmp_path / "libs")
    target = tmp_path / "project"
    shutil.copytree(APPS / app, target)
    return target


def site_packages(project: Path) -> Path:
    return project.parent / "libs" / "site-packages"


def air_toml(port: int, full_bin: str, *, preload: str = "", env: str = "") -> str:
    return f"""
[build]
full_bin = "{full_bin}"
ready_url = "http://127.0.0.1:{port}/"
{preload}
[env]
PORT = "{port}"
{env}
"""


def starts(project: Path) -> list[dict[str, Any]]:
    path = project / "starts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new))


def serving(port: int, needle: str, timeout: float = 15.0) -> str:
    def body() -> str | None:
        try:
            text = http_get(port)
        except http.client.HTTPException:  # the old app was stopped mid-response
            return None
        return text if text is not None and needle in text else None

    return wait_until(body, timeout=timeout, message=f"{needle!r} served")


def served_pid(body: str) -> int:
    found = re.search(r"pid=(\d+)", body)
    assert found is not None, body
    return int(found[1])


def environ_of(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode()


# --------------------------------------------------------------------------- end to end


def test_flask_restarts_warm_with_new_code_and_fresh_random(tmp_path: Path) -> None:
    app = project(tmp_path, "zygote_flask")
    port = free_port()
    with PyairRun(app, air_toml(port, "python app.py"), "-d") as run:
        cold_pid = int(run.wait_for_log(COLD, timeout=20))
        run.wait_for_log(ZYGOTE_READY, timeout=20)  # auto: after the app reported its modules
        for version in ("2", "3"):
            edit(app / "app.py", f'VERSION = "{int(version) - 1}"', f'VERSION = "{version}"')
            body = serving(port, f"version={version}")
            assert f"helper=loaded-by-{served_pid(body)}" in body  # the app's module, re-run
        warm = run.wait_for_log(WARM, count=2)
        assert run.count(WARM) == 2, run.log()
    first, *later = starts(app)
    assert first["pid"] == cold_pid and first["before"] == {"flask": False, "helper": False}
    assert first["agent"] == "supervisor"
    assert len(later) == 2
    for record in later:
        assert record["before"] == {"flask": True, "helper": False}  # flask not re-imported
        assert record["agent"] == "_pyair_supervisor"  # the zygote loaded it: not compiled again
        assert record["main"] == "__main__" and record["argv0"] == "app.py"
        assert record["modules"] > first["modules"] + 100  # the libraries came preloaded
    pids = {first["pid"], *(record["pid"] for record in later)}
    assert len(pids) == 3 and int(warm) == later[1]["pid"]
    assert later[0]["random"] != later[1]["random"]  # each warm child reseeded


def test_django_restarts_warm(tmp_path: Path) -> None:
    app = project(tmp_path, "zygote_django")
    port = free_port()
    cmd = f"python manage.py runserver --noreload 127.0.0.1:{port}"
    with PyairRun(app, air_toml(port, cmd), "-d") as run:
        run.wait_for_log(COLD, timeout=20)
        run.wait_for_log(ZYGOTE_READY, timeout=20)
        edit(app / "zsite" / "urls.py", 'VERSION = "1"', 'VERSION = "2"')
        body = serving(port, "version=2")
        warm_pid = int(run.wait_for_log(WARM))
        assert served_pid(body) == warm_pid
    first, second = starts(app)
    assert first["before"] == {"django": False, "zsite": False}
    assert second["before"] == {"django": True, "zsite": False}  # settings, urls: fresh
    assert second["pid"] == warm_pid != first["pid"]


@pytest.mark.parametrize("how", ["-m", "console script"])
def test_uvicorn_restarts_warm(tmp_path: Path, how: str) -> None:
    app = project(tmp_path, "zygote_asgi")
    port = free_port()
    head = "python -m uvicorn" if how == "-m" else "uvicorn"
    cmd = f"{head} main:app --port {port} --log-level warning"
    with PyairRun(app, air_toml(port, cmd, preload='preload = ["uvicorn.main"]'), "-d") as run:
        run.wait_for_log(ZYGOTE_READY, timeout=20)
        run.wait_for_log(COLD, timeout=20)
        serving(port, "version=1")
        edit(app / "main.py", 'VERSION = "1"', 'VERSION = "2"')
        body = serving(port, "version=2")
        assert served_pid(body) == int(run.wait_for_log(WARM))


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        ("threadmod", r"importing threadmod started a thread"),
        ("sockmod", r"a preloaded module left fd \d+ open \(socket:"),
        ("loopmod", r"a preloaded module created an asyncio event loop"),
    ],
)
def test_unsafe_preload_falls_back_to_cold_with_a_notice(
    tmp_path: Path, module: str, reason: str
) -> None:
    app = project(tmp_path, "zygote_plain")
    port = free_port()
    env = f'IMPORTS = "{module}"\nPYTHONPATH = "{site_packages(app)}"'
    cfg = air_toml(port, "python app.py", preload=f'preload = ["{module}"]', env=env)
    with PyairRun(app, cfg, "-d") as run:
        run.wait_for_log(rf"preload: restarts stay cold: {reason}", timeout=20)
        run.wait_for_log(COLD)
        edit(app / "app.py", 'VERSION = "1"', 'VERSION = "2"')
        serving(port, "version=2")
        run.wait_for_log(COLD, count=2)
        assert run.count(WARM) == 0
        assert run.count(r"preload: restarts stay cold") == 1  # one line, not one per restart
    assert [record["before"][module] for record in starts(app)] == [False, False]


def test_editing_a_library_file_rebuilds_the_zygote(tmp_path: Path) -> None:
    app = project(tmp_path, "zygote_plain")
    port = free_port()
    env = f'IMPORTS = "fakepkg"\nPYTHONPATH = "{site_packages(app)}"'
    with PyairRun(app, air_toml(port, "python app.py", env=env), "-d") as run:
        serving(port, "values=a")
        run.wait_for_log(ZYGOTE_READY, timeout=20)  # auto: fakepkg is a library, preloaded
        library = site_packages(app) / "fakepkg" / "__init__.py"
        edit(library, 'VALUE = "a"', 'VALUE = "bb"')
        changed = r"preload: .*fakepkg/__init__\.py changed; rebuilding the zygote"
        run.wait_for_log(changed)
        wait_until(  # a zygote that is warm after the rebuild began (not an earlier one)
            lambda: re.search(changed + r"[\s\S]*" + ZYGOTE_READY, run.log()),
            timeout=20,
            message="the rebuilt zygote",
        )
        edit(app / "app.py", 'VERSION = "1"', 'VERSION = "2"')
        body = serving(port, "version=2")
        assert "values=bb" in body  # the rebuilt zygote loaded the edited library
        assert served_pid(body) == int(run.wait_for_log(WARM))
    assert [record["before"]["fakepkg"] for record in starts(app)] == [False, True]


def test_the_projects_own_modules_are_never_preloaded(tmp_path: Path) -> None:
    """Even when asked for by name and importable (the project is on PYTHONPATH)."""
    app = project(tmp_path, "zygote_plain")
    (app / "projmod.py").write_text('VALUE = "mine"\n')
    port = free_port()
    env = f'IMPORTS = "fakepkg,projmod"\nPYTHONPATH = "{site_packages(app)}:{app}"'
    preload = 'preload = ["fakepkg", "projmod"]'
    with PyairRun(app, air_toml(port, "python app.py", preload=preload, env=env), "-d") as run:
        run.wait_for_log(ZYGOTE_READY, timeout=20)
        run.wait_for_log(r"preload:   refused \(project modules\): projmod")
        serving(port, "values=a,mine")
        edit(app / "projmod.py", "mine", "edited")
        serving(port, "values=a,edited")
        run.wait_for_log(WARM)
    assert [record["before"] for record in starts(app)][-1] == {"fakepkg": True, "projmod": False}


def _tree_lines(project: Path) -> list[list[int]]:
    path = project / "tree.pids"
    if not path.exists():
        return []
    return [[int(p) for p in line.split()] for line in path.read_text().splitlines() if line]


def test_warm_tree_is_stopped_whole_and_dies_with_pyair(tmp_path: Path) -> None:
    """tree_app: a child, a setsid'd grandchild, a grandchild's child; all of a warm tree go
    on restart, and on SIGKILL of pyair the warm tree and the zygote die within 2 s."""
    app = tmp_path / "project"
    app.mkdir()
    shutil.copy(APPS / "tree_app.py", app / "app.py")
    port = free_port()
    cfg = air_toml(port, "python app.py", preload='preload = ["http.server", "subprocess"]')
    cfg = cfg.replace("[build]", '[build]\nkill_delay = "2s"')
    run = PyairRun(app, cfg, "-d")
    with run:
        zygote = int(run.wait_for_log(ZYGOTE_READY, timeout=20))
        wait_until(lambda: len(_tree_lines(app)) == 1, message="the first tree")
        source = app / "app.py"
        source.write_text(source.read_text() + "# edit 1\n")
        wait_until(lambda: len(_tree_lines(app)) == 2, message="the warm tree")
        warm = _tree_lines(app)[1]
        assert int(run.wait_for_log(WARM)) == warm[0]
        token = re.search(r"PYAIR_TREE=(\S+)", environ_of(warm[0]))
        assert token is not None and re.fullmatch(r"\w+/app-2/warm_*", token[1]), token
        stat = Path(f"/proc/{warm[0]}/stat").read_text()
        assert int(stat[stat.rfind(")") + 2 :].split()[1]) == zygote  # the zygote's child
        cmdline = Path(f"/proc/{warm[0]}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        assert cmdline[-1] == b"app.py" and b"zygote" not in b" ".join(cmdline)  # ps shows it
        edit(source, "# edit 1", "# edit 2")
        wait_until(lambda: len(_tree_lines(app)) == 3, message="the next tree")
        assert not any(pid_alive(pid) for pid in warm), "the warm tree outlived its stop"
        newest = _tree_lines(app)[2]
        assert int(run.wait_for_log(WARM, count=2)) == newest[0]
        assert all(pid_alive(pid) for pid in [*newest, zygote])
        run.signal(signal.SIGKILL)
        run.wait()
        wait_until(
            lambda: not any(pid_alive(pid) for pid in [*newest, zygote]),
            timeout=2.0,
            message="the warm tree and the zygote gone after SIGKILL of pyair",
        )


def test_preload_false_starts_cold_without_a_zygote(tmp_path: Path) -> None:
    app = project(tmp_path, "zygote_plain")
    port = free_port()
    with PyairRun(app, air_toml(port, "python app.py", preload="preload = false"), "-d") as run:
        run.wait_for_log(r"ready in \d+ ms \(no build")
        edit(app / "app.py", 'VERSION = "1"', 'VERSION = "2"')
        serving(port, "version=2")
        run.wait_for_log(r"ready in \d+ ms \(no build", count=2)
        assert "preload:" not in run.log() and "(cold" not in run.log()


# --------------------------------------------------------------------------- units


def _cmd(*argv: str) -> AppCommand:
    return AppCommand(argv=argv, shell=None)


def test_python_commands_are_parsed_as_the_interpreter_reads_them(tmp_path: Path) -> None:
    env = dict(os.environ)
    got = parse_invocation(_cmd(PY, "-u", "-X", "dev", "-Wignore", "app.py", "--port", "1"), env)
    assert got == Invocation(
        (PY, "-u", "-X", "dev", "-Wignore", "app.py", "--port", "1"),
        PY,
        ("-u", "-X", "dev", "-W", "ignore"),
        "script",
        "app.py",
        ("--port", "1"),
    )
    assert got.sys_argv == ["app.py", "--port", "1"]
    module = parse_invocation(_cmd(PY, "-Bm", "uvicorn", "app:app"), env)
    assert isinstance(module, Invocation)
    assert (module.kind, module.target, module.args, module.options) == (
        "module",
        "uvicorn",
        ("app:app",),
        ("-B",),
    )
    assert module.sys_argv == ["-m", "app:app"] and module.path0(tmp_path) == str(tmp_path)
    assert parse_invocation(_cmd(PY, "-c", "print(1)"), env) == "python -c"
    assert parse_invocation(_cmd(PY, "-i", "app.py"), env) == "interpreter option -i"
    assert parse_invocation(_cmd(PY), env) == "no script"
    assert parse_invocation(AppCommand(argv=None, shell="a | b"), env) == (
        "the command runs through a shell"
    )
    assert parse_invocation(_cmd("/usr/bin/node", "server.js"), env) == (
        "node is not a Python program"
    )


def test_console_scripts_are_python_through_their_shebang(tmp_path: Path) -> None:
    script = tmp_path / "serve"
    script.write_text(f"#!{PY} -u\nprint('hi')\n")
    got = parse_invocation(_cmd(str(script), "--port", "1"), os.environ)
    assert isinstance(got, Invocation)
    assert (got.interpreter, got.options, got.kind, got.target, got.args) == (
        PY,
        ("-u",),
        "script",
        str(script),
        ("--port", "1"),
    )
    assert got.orig_argv == [PY, "-u", str(script), "--port", "1"]
    script.write_text("#!/usr/bin/env python3\n")
    env = {"PATH": str(Path(PY).parent)}
    via_env = parse_invocation(_cmd(str(script)), env)
    assert isinstance(via_env, Invocation) and via_env.interpreter == str(
        Path(PY).parent / "python3"
    )
    script.write_text("#!/bin/sh\n")
    assert parse_invocation(_cmd(str(script)), env) == "serve is not a Python program"


def test_preload_config_values(tmp_path: Path) -> None:
    def build(text: str = "", **flags: str) -> object:
        (tmp_path / "app.py").write_text("")
        path = tmp_path / ".air.toml"
        path.write_text(f"[build]\n{text}\n")
        return load_config(path, overrides=flags, cwd=tmp_path).build.preload

    assert build() == "auto"  # the default
    assert build("preload = false") == ()
    assert build("preload = true") == "auto"
    assert build('preload = ["flask", "jinja2.ext"]') == ("flask", "jinja2.ext")
    assert build(**{"build.preload": "false"}) == ()
    assert build(**{"build.preload": "flask,django"}) == ("flask", "django")
    with pytest.raises(ConfigError) as bad:
        build('preload = "yes"')
    assert str(bad.value).count("\n") == 0
    assert "preload" in str(bad.value) and 'preload = "auto"' in str(bad.value)
    with pytest.raises(ConfigError, match="'my-lib' is not a module name"):
        build('preload = ["my-lib"]')


def test_only_libraries_and_the_stdlib_are_chosen(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    venv_lib = root / ".venv" / "lib" / "python3.11" / "site-packages"
    names = ["sys", "flask", "app", "mysite.settings", "__main__", "vendored", "venvlib", "agent"]
    files = [
        "",
        "/usr/lib/python3/dist-packages/flask/__init__.py",
        str(root / "app.py"),
        str(root / "mysite" / "settings.py"),
        str(root / "app.py"),
        str(root / "vendor" / "site-packages" / "vendored.py"),
        str(venv_lib / "venvlib.py"),
        str(REPO / "supervisor" / "agent" / "__init__.py"),
    ]
    msg = protocol.validate(protocol.modules(1, names, files, [str(root / ".venv"), "/usr"]))
    assert select_modules(msg, root) == ["sys", "flask", "vendored", "venvlib"]
    # a project under the interpreter's prefix is still the project
    assert (
        select_modules(protocol.modules(1, ["app"], [str(root / "app.py")], [str(tmp_path)]), root)
        == []
    )
    with pytest.raises(protocol.ProtocolError):
        protocol.validate({"type": "modules", "pid": 1, "names": ["a"], "files": []})


@pytest.mark.parametrize("program", ["zygote_main", "guardian_main"])
def test_a_program_run_by_path_keeps_its_directory_off_sys_path(
    tmp_path: Path, program: str
) -> None:
    """Loading the child-side module by path leaves the app's own ``childside`` importable."""
    (tmp_path / "childside.py").write_text("MINE = True\n")
    code = (
        "import runpy, sys; "
        f"g = runpy.run_path({str(REPO / 'supervisor' / f'{program}.py')!r}); "
        "import childside; print(childside.MINE, g['childside'].__name__, "
        f"any(p.rstrip('/') == {str(REPO / 'supervisor')!r} for p in sys.path))"
    )
    out = subprocess.run(
        [PY, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["True", "_pyair_childside", "False"]


def test_requirement_files_are_watched_even_before_they_exist(tmp_path: Path) -> None:
    (tmp_path / "requirements-dev.txt").write_text("flask\n")
    files = project_files(tmp_path)
    assert str(tmp_path / "requirements-dev.txt") in files
    assert first_change(files) is None
    (tmp_path / "uv.lock").write_text("")  # appeared
    assert first_change(files) == str(tmp_path / "uv.lock")
    files = project_files(tmp_path)
    (tmp_path / "requirements-dev.txt").write_text("flask\ndjango\n")
    assert first_change(files) == str(tmp_path / "requirements-dev.txt")


# --------------------------------------------------------------------------- between runs


def test_the_first_save_after_a_second_start_is_warm(tmp_path: Path) -> None:
    """The second pyair builds its zygote from the first one's modules, at start."""
    app = project(tmp_path, "zygote_flask")
    port = free_port()
    config = air_toml(port, "python app.py")
    with PyairRun(app, config, "-d") as run:
        run.wait_for_log(ZYGOTE_READY, timeout=30)  # the modules are remembered with it
    assert (app / "tmp" / MEMORY_FILE).is_file()
    with PyairRun(app, config, "-d") as run:
        run.wait_for_log(r"preload: building the zygote from the last run's \d+ modules")
        cold = int(run.wait_for_log(COLD, timeout=20))
        # the developer's first save, 0.3 s after the app is up: a timer, as a person would
        saved = threading.Timer(0.3, edit, (app / "app.py", 'VERSION = "1"', 'VERSION = "2"'))
        saved.start()
        body = serving(port, "version=2")
        saved.join()
        warm = int(run.wait_for_log(WARM))
        assert served_pid(body) == warm != cold
        second_run = run.log().split("pyair 0.1.0")[-1]
        assert len(re.findall(COLD, second_run)) == 1, second_run


def test_the_remembered_modules_are_dropped_when_the_interpreter_or_locks_change(
    tmp_path: Path,
) -> None:
    interpreter = tmp_path / "python3"
    shutil.copy(sys.executable, interpreter)
    invocation = Invocation(
        (str(interpreter), "app.py"), str(interpreter), (), "script", "app.py", ()
    )
    memory = PreloadMemory(tmp_path / "tmp" / MEMORY_FILE, invocation, tmp_path)
    assert memory.recall() == ([], "nothing remembered yet")
    memory.remember(["flask", "jinja2"])
    assert memory.recall() == (["flask", "jinja2"], "")
    (tmp_path / "uv.lock").write_text("")  # a package installed or removed
    assert memory.recall() == ([], "the requirement files changed since")
    memory.remember(["flask"])
    os.utime(interpreter, ns=(0, 0))  # a new interpreter
    assert memory.recall() == ([], "the interpreter changed since")
    other = Invocation(
        (str(interpreter), "serve.py"), str(interpreter), (), "script", "serve.py", ()
    )
    memory.remember(["flask"])
    assert PreloadMemory(memory.path, other, tmp_path).recall() == ([], "the command changed since")
    memory.path.write_text("{not json")
    assert memory.recall()[0] == []
