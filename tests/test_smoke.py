"""`pyair smoke` end to end: every config in configs/ on a tiny app of its framework, and the
failures it must catch (never ready, an orphan, a broken build, a template change that
restarts), an interrupted run, plus the pieces it is built from."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from support import APPS, REPO, free_port, pid_alive, pyair_command, pyair_env, wait_until

from supervisor.config import load_config
from supervisor.smoke import TouchedFiles, pick_files, touch_text

CONFIGS = REPO / "configs"

# config in configs/ -> (fixture app, the port the config names, whether it has templates)
CONFIG_APPS = {
    "jinja": ("smoke_jinja", 8000, True),
    "flask": ("smoke_flask", 5000, True),
    "fastapi": ("smoke_fastapi", 8000, True),
    "django": ("smoke_django", 8000, True),
    "aiohttp": ("smoke_aiohttp", 8080, True),
    "node": ("smoke_node", 3000, False),
}


def run_smoke(project: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pyair_command("smoke", *args),
        cwd=project,
        env=pyair_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def copy_app(name: str, tmp_path: Path) -> Path:
    project = tmp_path / name
    shutil.copytree(APPS / name, project)
    return project


def snapshot(project: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mtime (ns), read in that order: stat first."""
    files: dict[str, tuple[bytes, int]] = {}
    for path in sorted(project.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            mtime = path.stat().st_mtime_ns
            files[str(path.relative_to(project))] = (path.read_bytes(), mtime)
    return files


def assert_unchanged(project: Path, before: dict[str, tuple[bytes, int]]) -> None:
    after = snapshot(project)
    changed = [name for name in before if after.get(name) != before[name]]
    assert not changed, f"smoke left these files changed: {changed}"


def steps(report_path: Path) -> dict[str, dict[str, object]]:
    report = json.loads(report_path.read_text())
    return {step["name"]: step for step in report["steps"]}


def config_for(name: str, port: int) -> str:
    """configs/<name>.toml with its port replaced by ``port`` (tests run side by side)."""
    text = (CONFIGS / f"{name}.toml").read_text()
    default = CONFIG_APPS[name][1]
    assert str(default) in text
    return text.replace(str(default), str(port))


def failures(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("FAIL ")]


# --------------------------------------------------------------------------- configs/


def test_every_config_has_an_end_to_end_test_and_loads() -> None:
    assert sorted(p.stem for p in CONFIGS.glob("*.toml")) == sorted(CONFIG_APPS)
    for path in CONFIGS.glob("*.toml"):
        config = load_config(path, check_app=False)
        assert config.build.ready_url, path.name
        assert all(line.startswith("#") for line in path.read_text().splitlines()[:3])
    readme = (REPO / "README.md").read_text()
    for name in CONFIG_APPS:
        assert f"(configs/{name}.toml)" in readme, f"the README's table misses {name}"


@pytest.mark.parametrize("name", sorted(CONFIG_APPS))
def test_smoke_passes_on_config(tmp_path: Path, name: str) -> None:
    app, _port, has_templates = CONFIG_APPS[name]
    if name == "node" and shutil.which("node") is None:
        pytest.skip("node is not installed")
    project = copy_app(app, tmp_path)
    (project / ".air.toml").write_text(config_for(name, free_port()))
    before = snapshot(project)
    result = run_smoke(project, "--json", str(tmp_path / "report.json"))
    assert result.returncode == 0, explain(result)
    found = steps(tmp_path / "report.json")
    assert [found[s]["status"] for s in ("ready", "restart", "stop")] == ["ok"] * 3
    assert found["swap"]["status"] == ("ok" if has_templates else "skip")
    if has_templates:
        assert "no restart" in str(found["swap"]["detail"])
    assert all(isinstance(found[s]["ms"], float) for s in ("ready", "restart", "stop"))
    assert re.search(r"^restart +\d+ ms +ok ", result.stdout, re.MULTILINE), result.stdout
    assert_unchanged(project, before)


# --------------------------------------------------------------------------- failures


def plain_config(port: int, extra: str = "") -> str:
    return (
        f'[build]\nfull_bin = "python app.py"\nready_url = "http://127.0.0.1:{port}/"\n'
        f'{extra}\n[env]\nPORT = "{port}"\n'
    )


def test_app_that_never_becomes_ready(tmp_path: Path) -> None:
    # an app that never listens: it records its pid, then blocks
    (tmp_path / "app.py").write_text(
        "import os, signal\nopen('app.pid', 'w').write(str(os.getpid()))\nsignal.pause()\n"
    )
    port = free_port()
    (tmp_path / ".air.toml").write_text(plain_config(port))
    result = run_smoke(tmp_path, "--timeout", "1.5")
    assert result.returncode == 1, explain(result)
    pid = int((tmp_path / "app.pid").read_text())
    expected = (
        f"FAIL ready: pid {pid} was not ready within 1.5 s: port {port} never accepted a connection"
    )
    assert failures(result) == [expected], explain(result)
    assert re.search(r"^stop .* ok +no process of the app tree left", result.stdout, re.M)
    assert not pid_alive(pid)


def test_app_that_leaves_an_orphan(tmp_path: Path) -> None:
    project = copy_app("smoke_orphan", tmp_path)
    (project / ".air.toml").write_text(plain_config(free_port()))
    result = run_smoke(project)
    assert result.returncode == 1, explain(result)
    orphans = [int(pid) for pid in (project / "orphans.pids").read_text().split()]
    assert len(orphans) == 2  # one per start: the first app and the restarted one
    [line] = failures(result)
    assert line.startswith("FAIL stop: 2 process(es) of the app tree outlived the stop"), line
    assert sorted(int(pid) for pid in re.findall(r"pid (\d+) \(", line)) == sorted(orphans)
    assert "python -c" in line
    wait_until(lambda: not any(pid_alive(p) for p in orphans), timeout=3, message="orphans gone")


def test_broken_build(tmp_path: Path) -> None:
    project = copy_app("smoke_jinja", tmp_path)
    app = project / "app.py"
    app.write_text(app.read_text() + "\ndef broken(:\n")
    config = config_for("jinja", free_port()).replace(
        'cmd = ""', 'cmd = "python -m py_compile app.py"'
    )
    (project / ".air.toml").write_text(config)
    before = snapshot(project)
    result = run_smoke(project)
    assert result.returncode == 1, explain(result)
    [line] = failures(result)
    assert line.startswith("FAIL build: build failed (exit 1): python -m py_compile app.py: "), line
    assert "SyntaxError" in line or "invalid syntax" in line, line
    for step in ("ready", "swap", "restart"):
        assert re.search(rf"^{step} .* skip +not run: an earlier step failed", result.stdout, re.M)
    assert_unchanged(project, before)


def test_template_change_that_restarts_instead_of_swapping(tmp_path: Path) -> None:
    project = copy_app("smoke_plain", tmp_path)
    (project / ".air.toml").write_text(plain_config(free_port()))
    before = snapshot(project)
    result = run_smoke(project, "--timeout", "2")
    assert result.returncode == 1, explain(result)
    assert failures(result) == [
        "FAIL swap: templates/index.html: the app restarted instead of swapping it (no pyair "
        "template agent in the app: does it render with Jinja2, Django or Mako, or register() "
        "its engine?)"
    ], explain(result)
    assert re.search(r"^restart .* ok ", result.stdout, re.M), result.stdout
    assert_unchanged(project, before)


def test_no_readiness_probe_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("open('STARTED', 'w').close()\n")
    (tmp_path / ".air.toml").write_text('[build]\nfull_bin = "python app.py"\n')
    result = run_smoke(tmp_path)
    assert result.returncode == 2, explain(result)
    [line] = result.stderr.strip().splitlines()
    assert line.endswith(
        ".air.toml: pyair smoke needs to know when the app is ready; pass --url "
        "http://127.0.0.1:8000/, set [proxy] app_port or PORT in [env], or give the command "
        "a --port"
    ), line
    assert not (tmp_path / "STARTED").exists()


def test_url_flag_is_the_readiness_probe(tmp_path: Path) -> None:
    project = copy_app("smoke_jinja", tmp_path)
    port = free_port()
    (project / ".air.toml").write_text(
        f'[build]\nfull_bin = "python app.py"\n[env]\nPORT = "{port}"\n'
    )
    result = run_smoke(project, "--url", f"http://127.0.0.1:{port}/", "--no-swap")
    assert result.returncode == 0, explain(result)
    assert re.search(r"^swap .* skip ", result.stdout, re.M)


def test_template_and_source_flags_are_checked(tmp_path: Path) -> None:
    project = copy_app("smoke_jinja", tmp_path)
    (project / ".air.toml").write_text(config_for("jinja", free_port()))
    (project / "notes.md").write_text("not watched\n")
    for args, message in [
        (("--template", "app.py"), "--template: app.py is not a template by this config"),
        (("--source", "templates/index.html"), "is not a source file by this config"),
        (("--source", "notes.md"), "--source: notes.md is not watched"),
        (("--source", "missing.py"), "--source: missing.py is not a file"),
        (("--timeout", "0"), "--timeout: 0 is not a positive number of seconds"),
    ]:
        result = run_smoke(project, *args)
        assert result.returncode == 2, explain(result)
        assert message in result.stderr, explain(result)
        assert "ready" not in result.stdout  # nothing ran


# --------------------------------------------------------------------------- interrupted


def _cwd_in(project: Path) -> list[int]:
    """Live processes whose working directory is ``project`` (the app's are)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/cwd") == str(project) and pid_alive(int(name)):
                    found.append(int(name))
            except OSError:
                continue
    return found


def test_sigint_mid_run_leaves_no_process_and_no_modified_file(tmp_path: Path) -> None:
    project = copy_app("smoke_slow", tmp_path)
    (project / ".air.toml").write_text(plain_config(free_port()))
    before = snapshot(project)
    app = project / "app.py"
    smoke = subprocess.Popen(
        pyair_command("smoke", "--json", "report.json"),
        cwd=project,
        env=pyair_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        tree = project / "tree.pids"
        # mid-run: the template was swapped, app.py carries the comment, the restart is stuck
        wait_until(
            lambda: tree.exists() and len(tree.read_text().splitlines()) == 2,
            timeout=20,
            message="the restarted app",
        )
        assert app.read_bytes().endswith(b"# pyair smoke\n")
        assert (project / "templates" / "index.html").read_bytes() != before[
            "templates/index.html"
        ][0]
        smoke.send_signal(signal.SIGINT)
        output, _ = smoke.communicate(timeout=20)
    finally:
        if smoke.poll() is None:
            smoke.kill()
            smoke.wait()
    assert smoke.returncode == 130, output
    assert_unchanged(project, before)
    pids = [int(pid) for pid in tree.read_text().split()]
    assert len(pids) == 4
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=3, message="the app trees")
    assert _cwd_in(project) == []
    report = json.loads((project / "report.json").read_text())
    assert report["interrupted"] is True and report["ok"] is False
    found = {step["name"]: step for step in report["steps"]}
    assert found["swap"]["status"] == "ok"
    assert found["restart"]["detail"] == "interrupted"
    assert found["stop"]["status"] == "ok"


# --------------------------------------------------------------------------- extra processes


def _with_processes(tmp_path: Path, processes: str) -> tuple[Path, int]:
    project = copy_app("smoke_plain", tmp_path)
    for name in ("worker.py", "tasks.py", "watch_assets.py", "crash.py"):
        shutil.copy(APPS / "companions" / name, project / name)
    port = free_port()
    (project / ".air.toml").write_text(plain_config(port) + processes)
    return project, port


def test_smoke_checks_the_processes_and_their_restart_policies(tmp_path: Path) -> None:
    processes = (
        '[[process]]\nname = "worker"\ncmd = "python worker.py"\n'
        '[[process]]\nname = "assets"\ncmd = "python watch_assets.py"\nrestart = "never"\n'
    )
    project, _port = _with_processes(tmp_path, processes)
    report = str(tmp_path / "report.json")
    result = run_smoke(project, "--json", report, "--source", "app.py", "--no-swap")
    assert result.returncode == 0, explain(result)
    found = steps(tmp_path / "report.json")
    assert found["procs"]["status"] == "ok"
    assert re.fullmatch(r"worker pid \d+, assets pid \d+ running", str(found["procs"]["detail"]))
    assert re.search(r"; worker pid (\d+) -> (?!\1)\d+$", str(found["restart"]["detail"]))
    assert found["stop"]["status"] == "ok"  # the processes' trees are gone too


def test_smoke_fails_a_process_that_dies_after_its_start(tmp_path: Path) -> None:
    processes = '[[process]]\nname = "flaky"\ncmd = "python crash.py"\nrestart = "never"\n'
    project, _port = _with_processes(tmp_path, processes)
    result = run_smoke(project)
    assert result.returncode == 1, explain(result)
    assert failures(result) == ["FAIL procs: flaky exited with code 3 right after it started"]


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    ("name", "data", "added"),
    [
        ("app.py", b"x = 1\n", b"# pyair smoke\n"),
        ("app.py", b"x = 1", b"\n# pyair smoke\n"),
        ("page.html", b"<p>\n", b"<!-- pyair smoke -->\n"),
        ("page.j2", b"{{ x }}\n", b"{# pyair smoke #}\n"),
        ("server.js", b"", b"// pyair smoke\n"),
        ("style.css", b"a {}\n", b"/* pyair smoke */\n"),
        ("data.json", b"{}\n", b"\n"),
    ],
)
def test_touch_appends_a_comment_in_the_files_syntax(name: str, data: bytes, added: bytes) -> None:
    assert touch_text(Path(name), data) == added


def test_touched_files_get_bytes_and_times_back(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_bytes(b"x = 1\n")
    os.utime(path, ns=(1_000_000_123, 2_000_000_456))
    files = TouchedFiles()
    files.touch(path)
    files.touch(path)  # twice: still one comment
    assert path.read_bytes() == b"x = 1\n# pyair smoke\n"
    assert files.restore() == []
    stat = path.stat()  # before reading it, which may move atime
    assert (stat.st_atime_ns, stat.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
    assert path.read_bytes() == b"x = 1\n"
    assert files.restore() == []  # idempotent

    other = tmp_path / "other.py"
    other.write_bytes(b"y = 2\n")
    files.touch(other)
    other.write_bytes(b"y = 3  # the user's own edit\n")
    [problem] = files.restore()
    assert "was changed by someone else during the run: left as it is" in problem
    assert other.read_bytes() == b"y = 3  # the user's own edit\n"


def test_pick_files_prefers_the_command_and_templates_dirs(tmp_path: Path) -> None:
    for name in (
        "aaa.py",
        "pkg/__init__.py",
        "pkg/web.py",
        "static/index.html",
        "node_modules/x/index.html",
        "pkg/templates/z.html",
        "templates/page.html",
        "tmp/main.py",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    (tmp_path / ".air.toml").write_text(
        '[build]\nfull_bin = "python -m uvicorn pkg.web:app --port 1"\n'
    )
    config = load_config(tmp_path / ".air.toml")
    template, source = pick_files(config)
    assert template == tmp_path / "templates" / "page.html"
    assert source == tmp_path / "pkg" / "web.py"
    (tmp_path / ".air.toml").write_text('[build]\nfull_bin = "python -m somewhere_else"\n')
    assert pick_files(load_config(tmp_path / ".air.toml"))[1] == tmp_path / "aaa.py"
