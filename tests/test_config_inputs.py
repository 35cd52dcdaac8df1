"""Hostile and broken config files through the real command line: each is one line on stderr
and exit 2, never a traceback; and paths that are not there are said once, pyair starts anyway.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import PyairRun, free_port, http_get, run_pyair, wait_until

from supervisor.config import config_warnings, load_config
from supervisor.config.loading import MAX_BYTES
from supervisor.errors import ConfigError

BAD_CONFIGS = {
    "arrays-500-deep": "[build]\ninclude_ext = " + "[" * 500 + "]" * 500 + "\n",
    "arrays-50000-deep": "[build]\ninclude_ext = " + "[" * 50_000 + "]" * 50_000 + "\n",
    "inline-tables-500-deep": "[env]\nX = " + "{a=" * 500 + "1" + "}" * 500 + "\n",
    "mixed-deep-in-a-string-key": '[build]\n"a" = ' + "[{b=" * 300 + "1" + "}]" * 300 + "\n",
    "kill-delay-absurd": "[build]\nkill_delay = 99999999999999999999\n",
    "delay-1e308": "[build]\ndelay = 1e308\n",
    "nul-in-full-bin": '[build]\nfull_bin = "python\\u0000 app.py"\n',
    "nul-in-env-files": 'env_files = ["\\u0000"]\n',
    "bind-with-a-space": '[proxy]\nbind = "not a host"\n',
    "a-100k-character-key": "[build]\n" + "k" * 100_000 + " = 1\n",
    "allowed-hosts-url": '[proxy]\nallowed_hosts = ["http://dev.test:8000"]\n',
    "binary-garbage": "\x00\x01\x02 [[[ {{{ \ufffd",
}


@pytest.mark.parametrize("text", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_every_bad_config_is_one_line_and_exit_2(tmp_path: Path, text: str) -> None:
    (tmp_path / "app.py").write_text("print('never started')\n")
    (tmp_path / ".air.toml").write_text(text)
    result = run_pyair("-c", ".air.toml", cwd=tmp_path)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and len(lines[0]) < 400, result.stderr[-2000:]
    assert lines[0].startswith(str(tmp_path / ".air.toml")), lines[0]
    assert "never started" not in result.stdout


# Each duration's bound: past it, a value is a typo, not a wish (a minute of debounce or of
# grace before SIGKILL is already far more than a dev loop wants; an hour to come up).
BOUNDS = {
    "build.delay": 60_000,
    "build.kill_delay": 60_000,
    "build.poll_interval": 60_000,
    "build.rerun_delay": 3_600_000,
    "build.ready_timeout": 3_600_000,
    "proxy.app_start_timeout": 3_600_000,
    "templates.swap_timeout": 60_000,
}


@pytest.mark.parametrize(("dotted", "bound"), BOUNDS.items(), ids=BOUNDS.keys())
def test_each_duration_has_a_sane_bound(tmp_path: Path, dotted: str, bound: int) -> None:
    section, key = dotted.split(".")
    path = tmp_path / ".air.toml"
    path.write_text(f"[{section}]\n{key} = {bound}\n")
    loaded = load_config(path, cwd=tmp_path, check_app=False)
    assert getattr(getattr(loaded, section), key) == bound
    path.write_text(f'[{section}]\n{key} = "{bound + 1}ms"\n')
    with pytest.raises(ConfigError, match="more than the maximum"):
        load_config(path, cwd=tmp_path, check_app=False)
    with pytest.raises(ConfigError, match="more than the maximum"):
        load_config(None, cwd=tmp_path, overrides={dotted: "100h"}, check_app=False)


def test_deep_nesting_points_at_where_it_gets_too_deep(tmp_path: Path) -> None:
    path = tmp_path / ".air.toml"
    path.write_text("[build]\ndelay = 5\n[env]\nX = " + "{a=" * 500 + "1" + "}" * 500 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, cwd=tmp_path, check_app=False)
    assert info.value.line == 4 and "nested more than 64 deep" in str(info.value)


def test_a_10_mb_config_is_refused_by_its_size_without_being_parsed(tmp_path: Path) -> None:
    path = tmp_path / ".air.toml"
    # valid TOML for its first MiB, a syntax error after: only the size may be reported
    with path.open("w") as out:
        out.write("# a comment\n" * (1024 * 1024 // 12))
        out.write("this is = = not toml\n" * 450_000)
    with pytest.raises(ConfigError) as info:
        load_config(path, cwd=tmp_path, check_app=False)
    message = str(info.value)
    assert "config file is 10.5 MB" in message and f"{MAX_BYTES // 1024} KiB" in message
    assert "syntax" not in message
    assert info.value.exit_code == 2


def test_a_config_just_under_the_size_cap_still_loads(tmp_path: Path) -> None:
    path = tmp_path / ".air.toml"
    comment = "# padding\n"
    body = "[build]\ndelay = 7\n"
    path.write_text(comment * ((MAX_BYTES - len(body)) // len(comment)) + body)
    assert load_config(path, cwd=tmp_path, check_app=False).build.delay == 7


def test_missing_include_dirs_and_env_files_are_said_once_and_pyair_starts(
    tmp_path: Path,
) -> None:
    (tmp_path / "src").mkdir()
    app = tmp_path / "src" / "app.py"
    app.write_text(
        "import os\nfrom http.server import HTTPServer, BaseHTTPRequestHandler\n"
        "VERSION = '1'\n"
        "class H(BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers()\n"
        "        self.wfile.write(f'v{VERSION}'.encode())\n"
        "    def log_message(self, *a): pass\n"
        "HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
    )
    port = free_port()
    config = f"""
env_files = [".env", ".env.local"]
[build]
full_bin = "python src/app.py"
include_dir = ["src", "pkg"]
[templates]
include_dir = ["templates"]
[env]
PORT = "{port}"
"""
    (tmp_path / ".env").write_text("A=1\n")
    with PyairRun(tmp_path, config) as run:
        wait_until(lambda: http_get(port) == "v1", timeout=15, message="the app")
        app.write_text(app.read_text().replace("VERSION = '1'", "VERSION = '2'"))
        wait_until(lambda: http_get(port) == "v2", timeout=15, message="the restart")
        log = run.log()
    config_path = tmp_path / ".air.toml"
    lines = [
        line for line in log.splitlines() if "is not a directory" in line or "does not" in line
    ]
    assert len(lines) == 3, log
    assert any(f"{config_path}:5: build.include_dir: 'pkg'" in line for line in lines), lines
    assert any("templates.include_dir: 'templates'" in line for line in lines), lines
    assert any(f"{config_path}:2: env_files: '.env.local'" in line for line in lines), lines
    assert not any("'src'" in line or "'.env'" in line for line in lines)


def test_config_warnings_without_a_file_name_no_line(tmp_path: Path) -> None:
    config = load_config(None, cwd=tmp_path, overrides={"env_files": ".env"}, check_app=False)
    assert config_warnings(config) == [
        f"env_files: '.env' does not exist ({tmp_path / '.env'}); it is skipped"
    ]
