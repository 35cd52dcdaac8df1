"""supervisor.config: air's keys and units, errors with file:line, overrides, app command, env.

Pure tests: every config is a file under tmp_path; nothing is started.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from dataclasses import FrozenInstanceError, dataclass, fields
from pathlib import Path

import pytest

from supervisor import config as config_module
from supervisor.config import (
    AppCommand,
    BuildConfig,
    Config,
    KeyLines,
    child_environment,
    find_config,
    known_keys,
    load_config,
    loading,
    parse_dotenv,
    parse_duration_ms,
    python_executable,
    resolve_app_command,
)
from supervisor.config.keys import MINUTE, Key, choice, duration, extensions
from supervisor.config.reader import DocumentReader
from supervisor.config.schema import OS_OVERRIDE_KEYS, SECTIONS
from supervisor.errors import ConfigError

# --------------------------------------------------------------------------- helpers


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory with an app.py, and no ambient air_wd / venv to leak in."""
    monkeypatch.delenv("air_wd", raising=False)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.setattr(loading, "current_os", lambda: "linux")
    root = tmp_path / "proj"
    root.mkdir()
    (root / "app.py").write_text("print('hi')\n")
    return root


def write(project: Path, text: str, name: str = ".air.toml") -> Path:
    path = project / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(project: Path, text: str, **kwargs: object) -> Config:
    return load_config(write(project, text), cwd=project, **kwargs)  # type: ignore[arg-type]


def error(project: Path, text: str, **kwargs: object) -> str:
    """The one-line message of the ConfigError that loading ``text`` raises."""
    with pytest.raises(ConfigError) as info:
        load(project, text, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def at(project: Path, line: int, col: int | None = None) -> str:
    where = f"{project / '.air.toml'}:{line}"
    return where + (f":{col}: " if col is not None else ":")


# --------------------------------------------------------------------------- defaults and every key


def test_defaults_without_a_file(project: Path) -> None:
    config = load_config(None, cwd=project)
    assert config.root == project.resolve()
    assert config.source is None
    assert config.tmp_dir == "tmp" and config.testdata_dir == "testdata"
    assert config.build == BuildConfig()
    assert config.build.exclude_dir == ("assets", "tmp", "vendor", "testdata")
    assert config.build.rerun_delay == 500 and config.build.log == "build-errors.log"
    assert config.proxy.app_start_timeout == 5000
    assert config.screen.keep_scroll is True
    assert config.color.main == "magenta" and config.color.runner == "green"
    assert config.misc.startup_banner is None
    assert config.templates.include_ext == ("html", "jinja", "jinja2", "j2")
    assert dict(config.env) == {} and config.unused_keys == ()
    assert config.tmp_path == project.resolve() / "tmp"
    assert config.build_log_path == project.resolve() / "tmp" / "build-errors.log"


EVERY_KEY = """
    # every key air documents, plus pyair's own
    root = "."
    tmp_dir = "build_tmp"
    testdata_dir = "fixtures"
    env_files = [".env", ".env.local"]

    [build]
    pre_cmd = ["echo pre1", "echo pre2"]
    cmd = "python -m compileall -q ."
    post_cmd = ["echo bye"]
    bin = "./tmp/main"
    entrypoint = ["python3", "app.py"]
    full_bin = "APP_ENV=dev python app.py"
    args_bin = ["--port", "8000"]
    log = "errors.log"
    include_ext = ["py", "html"]
    exclude_dir = ["node_modules", "dist"]
    include_dir = ["src", "templates"]
    include_file = ["settings.toml"]
    exclude_file = ["*_gen.py"]
    exclude_regex = ["_test\\\\.py$", "^/tmp/"]
    exclude_unchanged = true
    follow_symlink = true
    poll = true
    poll_interval = 750
    delay = "250ms"
    stop_on_error = true
    send_interrupt = true
    kill_delay = "2s"
    rerun = true
    rerun_delay = 1500
    ignore_dangerous_root_dir = true
    ready_url = "http://127.0.0.1:8000/health"
    ready_timeout = "30s"

    [log]
    time = true
    main_only = true
    silent = true

    [color]
    main = "red"
    watcher = "blue"
    build = "white"
    runner = "raw"
    mode = "never"

    [misc]
    clean_on_exit = true
    startup_banner = ""

    [screen]
    clear_on_rebuild = true
    keep_scroll = false

    [proxy]
    enabled = true
    proxy_port = 8090
    app_port = 8000
    app_start_timeout = 3000
    css_refresh = false
    bind = "0.0.0.0"

    [templates]
    include_ext = ["html", "txt"]
    include_dir = ["templates"]
    exclude_dir = ["templates/emails"]
    on_no_agent = "ignore"
    swap_timeout = "1.5s"

    [env]
    APP_ENV = "dev"
    WORKERS = 2
    DEBUG = true
"""


def test_every_documented_key_parses_with_airs_meaning(project: Path) -> None:
    config = load(project, EVERY_KEY)
    assert config.tmp_dir == "build_tmp" and config.testdata_dir == "fixtures"
    assert config.env_files == (".env", ".env.local")
    b = config.build
    assert b.pre_cmd == ("echo pre1", "echo pre2") and b.post_cmd == ("echo bye",)
    assert b.cmd == "python -m compileall -q ." and b.bin == "./tmp/main"
    assert b.entrypoint == ("python3", "app.py")
    assert b.full_bin == "APP_ENV=dev python app.py" and b.args_bin == ("--port", "8000")
    assert b.log == "errors.log" and config.build_log_path.name == "errors.log"
    assert b.include_ext == ("py", "html")
    assert b.exclude_dir == ("node_modules", "dist")
    assert b.include_dir == ("src", "templates") and b.include_file == ("settings.toml",)
    assert b.exclude_file == ("*_gen.py",) and b.exclude_regex == ("_test\\.py$", "^/tmp/")
    assert b.exclude_unchanged and b.follow_symlink and b.poll
    assert b.poll_interval == 750 and b.delay == 250 and b.kill_delay == 2000
    assert b.stop_on_error and b.send_interrupt and b.rerun and b.ignore_dangerous_root_dir
    assert b.rerun_delay == 1500 and b.ready_timeout == 30_000
    assert b.ready_url == "http://127.0.0.1:8000/health"
    assert (config.log.time, config.log.main_only, config.log.silent) == (True, True, True)
    assert config.color.main == "red" and config.color.watcher == "blue"
    assert config.color.build == "white" and config.color.runner == "raw"
    assert config.color.mode == "never"
    assert config.misc.clean_on_exit and config.misc.startup_banner == ""
    assert config.screen.clear_on_rebuild and not config.screen.keep_scroll
    p = config.proxy
    assert (p.enabled, p.proxy_port, p.app_port, p.app_start_timeout) == (True, 8090, 8000, 3000)
    assert not p.css_refresh and p.bind == "0.0.0.0"
    t = config.templates
    assert t.include_ext == ("html", "txt") and t.include_dir == ("templates",)
    assert t.exclude_dir == ("templates/emails",) and t.on_no_agent == "ignore"
    assert t.swap_timeout == 1500
    assert dict(config.env) == {"APP_ENV": "dev", "WORKERS": "2", "DEBUG": "true"}
    # full_bin wins over entrypoint and bin, args_bin follows
    assert config.app_command() == AppCommand(None, "APP_ENV=dev python app.py --port 8000")


def test_known_keys_cover_every_air_key() -> None:
    air = {
        "root", "tmp_dir", "testdata_dir", "env_files",
        *(f"build.{k}" for k in (
            "pre_cmd", "cmd", "post_cmd", "bin", "entrypoint", "full_bin", "args_bin", "log",
            "include_ext", "exclude_dir", "include_dir", "include_file", "exclude_file",
            "exclude_regex", "exclude_unchanged", "follow_symlink", "poll", "poll_interval",
            "delay", "stop_on_error", "send_interrupt", "kill_delay", "rerun", "rerun_delay",
            "ignore_dangerous_root_dir", "ready_url", "ready_timeout",
        )),
        "log.time", "log.main_only", "log.silent",
        "color.main", "color.watcher", "color.build", "color.runner", "color.mode",
        "misc.clean_on_exit", "misc.startup_banner",
        "screen.clear_on_rebuild", "screen.keep_scroll",
        "proxy.enabled", "proxy.proxy_port", "proxy.app_port", "proxy.app_start_timeout",
        "templates.include_ext", "templates.include_dir", "templates.exclude_dir",
        "templates.on_no_agent", "templates.swap_timeout",
    }  # fmt: skip
    assert air <= set(known_keys())


def test_config_is_frozen_and_env_read_only(project: Path) -> None:
    config = load(project, '[env]\nA = "1"\n')
    with pytest.raises(FrozenInstanceError):
        config.root = Path("/")  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.env["A"] = "2"  # type: ignore[index]


def test_go_only_and_legacy_keys_are_accepted_and_listed_once(project: Path) -> None:
    config = load(
        project,
        """
        watch_dir = "src"

        [color]
        app = "cyan"
        """,
    )
    assert sorted(config.unused_keys) == ["color.app", "watch_dir"]
    assert all(key in config_module.UNUSED_KEYS for key in config.unused_keys)


def test_bom_and_dotted_and_inline_forms(project: Path) -> None:
    path = project / ".air.toml"
    path.write_text("\ufeffbuild.delay = 5\nproxy = { enabled = true, app_port = 9000 }\n")
    config = load_config(path, cwd=project)
    assert config.build.delay == 5 and config.proxy.enabled and config.proxy.app_port == 9000


def test_values_are_normalised(project: Path) -> None:
    config = load(
        project,
        """
        [build]
        include_ext = [".py", " html ", ""]
        exclude_dir = ["./tmp/", "docs/", "a//b"]
        [templates]
        include_ext = [".HTML", "J2"]
        include_dir = ["templates/"]
        [color]
        main = "Red"
        """,
    )
    assert config.build.include_ext == ("py", "html")
    assert config.build.exclude_dir == ("tmp", "docs", "a/b")
    assert config.templates.include_ext == ("html", "j2")
    assert config.templates.include_dir == ("templates",)
    assert config.color.main == "red"


def test_tmp_dir_moves_the_default_exclude_dir(project: Path) -> None:
    moved = load(project, 'tmp_dir = ".cache"\n')
    assert moved.build.exclude_dir == ("assets", ".cache", "vendor", "testdata")
    explicit = load(project, 'tmp_dir = ".cache"\n[build]\nexclude_dir = ["tmp"]\n')
    assert explicit.build.exclude_dir == ("tmp",)
    assert load(project, 'tmp_dir = ""\ntestdata_dir = ""\n').tmp_dir == "tmp"


# --------------------------------------------------------------------------- the keys' metadata


def test_every_section_field_declares_its_key() -> None:
    # a plain field (``x: int = 5``) would be no key at all: not read, no flag, no hint
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            assert Key.of(f) is not None, f"{name}.{f.name} is declared without a key helper"
    assert OS_OVERRIDE_KEYS == (
        "pre_cmd", "cmd", "post_cmd", "bin", "entrypoint", "full_bin", "args_bin",
    )  # fmt: skip


def test_a_key_is_one_declaration(project: Path) -> None:
    @dataclass(frozen=True)
    class Section:
        settle: int = duration(250, at_least=100, at_most=MINUTE)
        mode: str = choice("fast", "slow")
        exts: tuple[str, ...] = extensions(("py",), lower=True)

    path = write(project, "[x]\nsettle = 'soon'\n")
    reader = DocumentReader(path, path.read_text())
    table = {"settle": "2s", "mode": "slow", "exts": [".PY", ""]}
    assert reader.section("x", Section, table) == {"settle": 2000, "mode": "slow", "exts": ("py",)}
    assert reader.section("x", Section, {"settle": 5}) == {"settle": 100}
    with pytest.raises(ConfigError) as info:
        reader.section("x", Section, {"settle": "soon"})
    assert str(info.value) == (
        f"{path}:2:1: x.settle: cannot read 'soon' as a duration; "
        'write milliseconds or a duration, e.g. settle = 500 or settle = "2s"'
    )
    with pytest.raises(ConfigError, match="did you mean 'slow'"):
        reader.section("x", Section, {"mode": "slwo"})


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (0, 0),
        (500, 500),
        ("500", 500),
        ("0", 0),
        ("500ms", 500),
        ("2s", 2000),
        ("1m30s", 90_000),
        ("1h", 3_600_000),
        ("1h2m3s4ms", 3_723_004),
        ("1.5s", 1500),
        (".5s", 500),
        ("1.005s", 1005),  # exact, no float drift
        (" 2 s ", 2000),
        ("+3s", 3000),
        ("1500us", 1),  # sub-ms remainders are dropped, as Go's Milliseconds()
        ("1500µs", 1),
        ("1500μs", 1),
        ("2000000ns", 2),
        (1.9, 1),
        ("-0", 0),
    ],
)
def test_parse_duration_ms(value: object, ms: int) -> None:
    assert parse_duration_ms(value) == ms


@pytest.mark.parametrize(
    "value",
    [-1, "-2s", "-5", "", "soon", "2x", "s", "1s2", "1 2", True, [1], None,
     float("inf"), float("nan"), float("-inf")],
)  # fmt: skip
def test_parse_duration_ms_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(value)


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (500, 500),
        (999_999, 999_999),  # below a millisecond's worth of ns: milliseconds
        (1_000_000, 1),
        (1_999_999, 1),  # truncated, as air's killDelay()
        (500_000_000, 500),
        ("500000000", 500),  # a flag value is an integer too
        ("2s", 2000),
        ("2000000ns", 2),
    ],
)
def test_kill_delay_nanoseconds_rule(value: object, ms: int) -> None:
    assert parse_duration_ms(value, nanos_if_large=True) == ms


def test_duration_keys_in_the_file(project: Path) -> None:
    config = load(
        project,
        """
        [build]
        kill_delay = 500000000
        delay = 50000
        poll_interval = 0
        [proxy]
        app_start_timeout = 0
        """,
    )
    assert config.build.kill_delay == 500  # nanoseconds (air's rule) for kill_delay only
    assert config.build.delay == 50_000
    # a bare number that large is milliseconds for delay (nanoseconds only for kill_delay):
    # so 1000000 is 1000 s, over delay's bound
    assert "1000000 ms is more than the maximum of 1m" in error(
        project, "[build]\ndelay = 1000000\n"
    )
    assert config.build.poll_interval == 500  # air's minimum
    assert config.proxy.app_start_timeout == 5000  # air: 0 means the default
    assert load(project, "[build]\npoll_interval = 100\n").build.poll_interval == 500
    assert load(project, "[build]\npoll_interval = 900\n").build.poll_interval == 900


# --------------------------------------------------------------------------- errors, with lines


def test_syntax_error_has_line_and_column(project: Path) -> None:
    message = error(project, '[build]\ncmd = "ok"\ndelay = = 5\n')
    assert message.startswith(at(project, 3, 9)) and "TOML syntax error" in message
    assert "; " in message


@pytest.mark.parametrize(
    ("text", "line", "col", "needle"),
    [
        ('[build]\n\ncmd = """never closed\nmore\n\n', 3, 7, "unterminated string; close"),
        ("[build]\ncmd = 'oops\n", 2, 7, "unterminated string"),
        ('[build]\ncmd = "oops\n', 2, 12, 'use """ for multi-line text'),
        ("[build]\npre_cmd = [\n  'a',\n\n", 2, 11, "unclosed '['; close the list with ]"),
        ("[build]\ndelay = 1\n\n", None, None, ""),
    ],
)
def test_syntax_error_at_end_of_document_points_at_the_opening(
    project: Path, text: str, line: int | None, col: int | None, needle: str
) -> None:
    if line is None:  # not an error: the control case
        assert load(project, text).build.delay == 1
        return
    message = error(project, text)
    assert message.startswith(at(project, line, col)), message
    assert "TOML syntax error" in message and needle in message and "end of document" not in message


def test_syntax_error_names_tables_the_toml_way(project: Path) -> None:
    message = error(project, "[build.linux]\ncmd = 'a'\n[build.linux]\n")
    assert message.startswith(at(project, 3)) and "cannot declare [build.linux] twice" in message


def test_duplicate_key_hint(project: Path) -> None:
    message = error(project, "[build]\ndelay = 1\ndelay = 2\n")
    assert message.startswith(at(project, 3)) and "defined twice" in message


TRICKY_BUILD = '''
    # a comment with [fake] and delay = 1
    [build] # trailing comment
    # delay = "commented out"
    cmd = """
    [not_a_table]
    delay = "inside a string"
    """
    full_bin = \'\'\'
    dealy = 'still a string'
    \'\'\'
    pre_cmd = [
      """
    [also_not_a_table]
    """,
      "echo # not a comment",
      \'say "hi" = 1\',
    ]
    post_cmd = ["a = [1]", "b"]  # inline comment = x
    dealy = 5
'''


def test_unknown_key_line_after_comments_and_multiline_strings(project: Path) -> None:
    message = error(project, TRICKY_BUILD)
    assert message.startswith(at(project, 19, 1))
    assert "unknown key 'dealy' in [build]; did you mean 'delay'?" in message


def test_wrong_type_line_after_multiline_strings(project: Path) -> None:
    text = TRICKY_BUILD.replace("dealy = 5", 'rerun = "yes"')
    message = error(project, text)
    assert message.startswith(at(project, 19, 1)) and "build.rerun" in message
    assert "expected true or false" in message and "rerun = true" in message


def test_dotted_key_at_top_level(project: Path) -> None:
    message = error(project, 'root = "."\n\nbuild.delay = -5\n')
    assert message.startswith(at(project, 3, 7))  # at the leaf of the dotted key
    assert "build.delay: a duration cannot be negative" in message
    message = error(project, 'root = "."\nbuild.dealy = 5\n')
    assert message.startswith(at(project, 2, 7)) and "did you mean 'delay'?" in message


def test_inline_table_points_at_the_inner_key(project: Path) -> None:
    message = error(project, "# ports\nproxy = { enabled = true, app_prot = 8000 }\n")
    assert message.startswith(at(project, 2, 27))
    assert "unknown key 'app_prot' in [proxy]; did you mean 'app_port'?" in message
    message = error(project, 'build = { cmd = "x", delay = "soon" }\n')
    assert message.startswith(at(project, 1, 22)) and "build.delay" in message


@pytest.mark.parametrize("linux_first", [True, False])
def test_os_block_errors_point_into_the_os_block(project: Path, linux_first: bool) -> None:
    build, linux = '[build]\ncmd = "make"\n', "[build.linux]\ncmd = 5\n"
    text = linux + build if linux_first else build + linux
    message = error(project, text)
    assert message.startswith(at(project, 2 if linux_first else 4, 1))
    assert "build.cmd: expected a string" in message


def test_os_block_only_takes_command_keys(project: Path) -> None:
    message = error(project, "[build]\n[build.linux]\ndelay = 5\n")
    assert message.startswith(at(project, 3, 1))
    assert "cannot be set per OS" in message and "set delay in [build]" in message


def test_every_os_block_is_validated(project: Path) -> None:
    message = error(project, "[build.darwin]\nfull_bn = 'x'\n")
    assert message.startswith(at(project, 2, 1))
    assert "[build.darwin]" in message and "did you mean 'full_bin'?" in message


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("[build]\nrerun = 'yes'\n", 2, "write rerun = true or rerun = false"),
        ("[proxy]\napp_port = '8000'\n", 2, "expected a whole number"),
        ("[proxy]\napp_port = 70000\n", 2, "a port is 0..65535"),
        ("[proxy]\napp_port = 80.5\n", 2, "expected a whole number"),
        ("env_files = '.env'\n", 1, 'write a list: env_files = [".env"]'),
        ("[build]\ninclude_ext = ['py', 3]\n", 2, "a list containing an integer"),
        ("[build]\nentrypoint = 5\n", 2, "build.entrypoint"),
        ("[build]\ncmd = ['a']\n", 2, "build.cmd: expected a string, got a list"),
        ("[build]\ndelay = true\n", 2, "expected a duration, got a boolean"),
        ("[build]\nkill_delay = '2 fortnights'\n", 2, 'kill_delay = "2s"'),
        ("[build]\nrerun_delay = -1\n", 2, "cannot be negative"),
        ("build = 5\n", 1, "'build' must be a table"),
        ("[color]\nmain = 'magneta'\n", 2, "did you mean 'magenta'?"),
        ("[color]\nmode = 'sometimes'\n", 2, "expected one of 'auto', 'always', 'never'"),
        ("[templates]\non_no_agent = 'restrt'\n", 2, "did you mean 'restart'?"),
        ("[env]\nNESTED = { a = 1 }\n", 2, "env.NESTED: expected a string, got a table"),
        ("env = 3\n", 1, "'env' must be a table"),
        ("[build]\nexclude_regex = ['(unclosed']\n", 2, "bad regular expression"),
        ("[build]\nready_url = 'localhost:8000'\n", 2, "ready_url must be an http(s)://"),
        ("[build]\nready_url = '/healthz'\n", 2, "app_port is not set"),
        ("# p\n[proxy]\nenabled = true\n", 2, "app_port is not set"),
        ("[proxy]\nenabled = true\napp_port = 80\nproxy_port = 80\n", 4, "both 80"),
        ("[misc]\nstartup_banner = false\n", 2, "expected a string"),
    ],
)
def test_bad_values_are_one_line_errors_at_the_key(
    project: Path, text: str, line: int, needle: str
) -> None:
    message = error(project, text)
    assert message.startswith(at(project, line)), message
    assert needle in message, message


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("tmpdir = 'x'\n", 1, "unknown key 'tmpdir' at the top level; did you mean 'tmp_dir'?"),
        ("delay = 5\n", 1, "'delay' belongs in [build]"),
        ("[build]\nproxy_port = 1\n", 2, "'proxy_port' belongs in [proxy]"),
        ("[proxy]\nroot = '.'\n", 2, "'root' is a top-level key"),
        ("# b\n[biuld]\ncmd = 'x'\n", 2, "unknown table [biuld]; did you mean 'build'?"),
        ("[build]\nxyzzy = 1\n", 2, "unknown key 'xyzzy' in [build]; remove it"),
        ("[log]\nsilnet = true\n", 2, "did you mean 'silent'?"),
        ("[build]\nstartup_baner = ''\n", 2, "did you mean 'startup_banner' in [misc]?"),
    ],
)
def test_unknown_keys_suggest_a_fix(project: Path, text: str, line: int, needle: str) -> None:
    message = error(project, text)
    assert message.startswith(at(project, line)), message
    assert needle in message, message


def test_missing_root_directory(project: Path) -> None:
    message = error(project, '# where\nroot = "nowhere"\n')
    assert message.startswith(at(project, 2, 1))
    assert "root directory 'nowhere' does not exist" in message
    (project / "afile").write_text("")
    assert "is not a directory" in error(project, 'root = "afile"\n')


def test_dangerous_root_is_refused_unless_allowed(project: Path) -> None:
    message = error(project, 'root = "/"\n', check_app=False)
    assert message.startswith(at(project, 1)) and "dangerous root" in message
    allowed = load(
        project, 'root = "/"\n[build]\nignore_dangerous_root_dir = true\n', check_app=False
    )
    assert allowed.root == Path("/")


def test_unreadable_file(project: Path) -> None:
    (project / ".air.toml").write_bytes(b"\xff\xfe bad")
    with pytest.raises(ConfigError) as info:
        load_config(project / ".air.toml", cwd=project)
    assert str(info.value).startswith(str(project / ".air.toml"))


def test_errors_have_exit_code_2(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(project, "[build]\ndealy = 1\n")
    assert info.value.exit_code == 2 and info.value.line == 2 and info.value.col == 1


# --------------------------------------------------------------------------- KeyLines


def test_keylines_positions() -> None:
    text = textwrap.dedent(
        """\
        root = "."
        [ build . linux ]
        "quoted.key" = 1
        'lit' = 2
        a.b . c = 3
        [[build.rules]]
        name = "x # = y"
        [[build.rules]]
        name = "second"
        [proxy]
        t = { x = 1, y = { z = [ {w = 1} ] } }
        s = "a\\" = b"
        """
    )
    lines = KeyLines(text)
    assert lines.find("root") == (1, 1)
    assert lines.find("build.linux") == (2, 3)
    assert lines.find("build.linux.quoted.key") == (3, 1)
    assert lines.find("build.linux.lit") == (4, 1)
    assert lines.find("build.linux.a.b.c") == (5, 7)  # the leaf of a dotted key
    assert lines.find("build.linux.a") == (5, 1)
    assert lines.find("build.rules.name") == (7, 1)  # the first occurrence
    assert lines.find("proxy.t.x") == (11, 7)
    assert lines.find("proxy.t.y.z") == (11, 20)
    assert lines.find("proxy.t.y.z.w") == (11, 27)
    assert lines.find("proxy.s") == (12, 1)
    assert lines.find("proxy.nothing") == (10, 2)  # falls back to the parent
    assert lines.find("nothing") == (None, None)


@pytest.mark.parametrize(
    "garbage",
    ["[", "[[", "a = ", 'a = "', "a = '''", "{", "a = [", "= = =", "]]]", "a.\n.b", "\\", ""],
)
def test_keylines_never_raises(garbage: str) -> None:
    KeyLines(garbage).find("a.b")


# --------------------------------------------------------------------------- per-OS blocks


def test_current_os_block_overrides_build(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = """
        [build]
        cmd = "make"
        full_bin = "python app.py"
        delay = 5
        [build.linux]
        full_bin = "python app.py --linux"
        args_bin = ["-v"]
        [build.darwin]
        full_bin = "python app.py --mac"
        [build.windows]
        full_bin = "py app.py"
    """
    linux = load(project, text)
    assert linux.build.full_bin == "python app.py --linux" and linux.build.args_bin == ("-v",)
    assert linux.build.cmd == "make" and linux.build.delay == 5
    monkeypatch.setattr(loading, "current_os", lambda: "darwin")
    assert load(project, text).build.full_bin == "python app.py --mac"
    # a flag still wins over the OS block
    flagged = load(project, text, overrides={"build.full_bin": "python app.py --flag"})
    assert flagged.build.full_bin == "python app.py --flag"


def test_current_os_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for platform, name in [("linux", "linux"), ("darwin", "darwin"), ("win32", "windows"),
                           ("freebsd14", "freebsd")]:  # fmt: skip
        monkeypatch.setattr(sys, "platform", platform)
        assert config_module.current_os() == name


# --------------------------------------------------------------------------- CLI overrides


def test_overrides_win_over_the_file(project: Path) -> None:
    config = load(
        project,
        """
        [build]
        delay = 0
        exclude_dir = ["x"]
        poll = true
        [env]
        FOO = "file"
        """,
        overrides={
            "build.delay": "50",
            "build.exclude_dir": "a,b",
            "build.poll": "false",
            "proxy.enabled": "true",
            "proxy.app_port": "8000",
            "env.FOO": "1",
            "env.NEW": "x=y",
        },
    )
    assert config.build.delay == 50
    assert config.build.exclude_dir == ("a", "b")
    assert config.build.poll is False
    assert config.proxy.enabled and config.proxy.app_port == 8000
    assert dict(config.env) == {"FOO": "1", "NEW": "x=y"}


def test_an_override_equal_to_the_default_still_wins(project: Path) -> None:
    # air ignores `--build.delay 20` when 20 is the default; pyair does not
    default = BuildConfig().delay
    config = load(project, "[build]\ndelay = 0\n", overrides={"build.delay": str(default)})
    assert config.build.delay == default
    keep = load(
        project, "[screen]\nkeep_scroll = false\n", overrides={"screen.keep_scroll": "true"}
    )
    assert keep.screen.keep_scroll is True


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("build.exclude_dir", " a , b ,, ", ("a", "b")),
        ("build.exclude_dir", "", ()),
        ("build.include_ext", ".py,html", ("py", "html")),
        ("build.pre_cmd", "echo a", ("echo a",)),
        ("build.entrypoint", "python3 app.py --debug", ("python3", "app.py", "--debug")),
        ("build.entrypoint", "python3,app.py", ("python3", "app.py")),
        ("build.kill_delay", "500000000", 500),
        ("build.kill_delay", "3s", 3000),
        ("build.delay", "1m", 60_000),
        ("build.rerun", "yes", True),
        ("build.rerun", "0", False),
        ("build.rerun", "T", True),
        ("proxy.proxy_port", " 8080 ", 8080),
        ("misc.startup_banner", "", ""),
        ("color.mode", "always", "always"),
        ("env_files", ".env,.env.dev", (".env", ".env.dev")),
        ("tmp_dir", "out", "out"),
    ],
)
def test_override_values(project: Path, key: str, raw: str, expected: object) -> None:
    config = load(project, "", overrides={key: raw})
    section, _, name = key.rpartition(".")
    target = getattr(config, section) if section else config
    assert getattr(target, name) == expected


def test_root_override_is_relative_to_cwd(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "main.py").write_text("")
    config_dir = project / "conf"
    path = write(config_dir, 'root = ".."\n')
    assert load_config(path, cwd=project).root == project.resolve()
    config = load_config(path, cwd=tmp_path, overrides={"root": "other"})
    assert config.root == other.resolve()
    argv = config.app_command().argv
    assert argv is not None and argv[1:] == ("main.py",)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"build.delay": "soon"}, "--build.delay: cannot read 'soon' as a duration"),
        ({"build.delay": "-5"}, "--build.delay: a duration cannot be negative"),
        ({"build.dealy": "5"}, "unknown option --build.dealy; did you mean --build.delay?"),
        ({"nonsense": "5"}, "unknown option --nonsense; see `pyair --help`"),
        ({"env": "5"}, "unknown option --env"),
        ({"env.A=B": "5"}, "--env.A=B: "),
        ({"proxy.app_port": "eighty"}, "--proxy.app_port: expected a whole number"),
        ({"proxy.app_port": "99999"}, "--proxy.app_port: a port is 0..65535"),
        ({"proxy.enabled": "maybe"}, "--proxy.enabled: expected true or false"),
        ({"color.main": "pinkk"}, "--color.main: unknown colour 'pinkk'; use one of red,"),
        ({"color.main": "yelow"}, "--color.main: unknown colour 'yelow'; did you mean 'yellow'?"),
        ({"color.mode": "loud"}, "--color.mode: expected one of"),
        ({"root": "nowhere"}, "--root: root directory 'nowhere' does not exist"),
        ({"proxy.enabled": "true"}, "--proxy.enabled: the proxy is enabled but"),
        ({"build.exclude_regex": "("}, "--build.exclude_regex: bad regular expression"),
        ({"build.entrypoint": "./missing"}, "--build.entrypoint: './missing' does not exist"),
        ({"build.entrypoint": "'unbalanced"}, "--build.entrypoint: cannot split"),
    ],
)
def test_bad_overrides_name_the_flag(project: Path, overrides: dict[str, str], needle: str) -> None:
    message = error(project, "[build]\ndelay = 5\n", overrides=overrides)
    assert message.startswith(("--", "unknown option --")), message
    assert needle in message, message
    assert str(project / ".air.toml") not in message  # the flag, not the file, is at fault
    assert "; " in message


def test_bad_override_hint_uses_flag_syntax(project: Path) -> None:
    message = error(project, "", overrides={"build.kill_delay": "x"})
    assert "pass --build.kill_delay milliseconds or a duration" in message


def test_overrides_mapping_is_not_mutated(project: Path) -> None:
    overrides = {"build.delay": "7"}
    load(project, "", overrides=overrides)
    assert overrides == {"build.delay": "7"}


# --------------------------------------------------------------------------- the app command


def test_full_bin_beats_entrypoint_beats_bin(project: Path) -> None:
    both = """
        [build]
        full_bin = "python app.py"
        entrypoint = ["python3", "app.py"]
        bin = "./run.sh"
        args_bin = ["--port", "80 80"]
    """
    config = load(project, both, extra_args=["-v", "it's"])
    assert config.app_command() == AppCommand(None, "python app.py --port '80 80' -v 'it'\"'\"'s'")
    no_full = load(project, both.replace('full_bin = "python app.py"', ""), extra_args=["-v"])
    command = no_full.app_command()
    assert command.shell is None and command.argv is not None
    assert command.argv == (shutil.which("python3"), "app.py", "--port", "80 80", "-v")
    only_bin = load(project, '[build]\nbin = "./run.sh"\nargs_bin = ["a"]\n', extra_args=["b"])
    assert only_bin.app_command() == AppCommand(None, "./run.sh a b")
    assert only_bin.app_command().display == "./run.sh a b"


def test_entrypoint_paths_resolve_against_root_without_following_symlinks(
    project: Path, tmp_path: Path
) -> None:
    real = tmp_path / "real-python"
    real.write_text("")
    (project / "bin").mkdir()
    (project / "bin" / "py").symlink_to(real)
    config = load(project, '[build]\nentrypoint = ["./bin/py", "app.py"]\n')
    assert config.app_command().argv == (str(project / "bin" / "py"), "app.py")
    absolute = load(project, f'[build]\nentrypoint = ["{real}", "-x"]\n')
    assert absolute.app_command().argv == (str(real), "-x")


def test_entrypoint_string_form_is_split(project: Path) -> None:
    config = load(project, '[build]\nentrypoint = "python3 -m http.server 8000"\n')
    assert config.build.entrypoint == ("python3", "-m", "http.server", "8000")
    assert config.app_command().argv == (shutil.which("python3"), "-m", "http.server", "8000")
    assert AppCommand(("a b", "c"), None).display == "'a b' c"


def test_entrypoint_that_cannot_be_found(project: Path) -> None:
    message = error(project, '[build]\n\nentrypoint = ["no-such-exe-pyair", "x"]\n')
    assert message.startswith(at(project, 3, 1))
    assert "'no-such-exe-pyair' is not on PATH" in message
    message = error(project, '[build]\nentrypoint = ["./tmp/app"]\n')
    assert message.startswith(at(project, 2, 1)) and "does not exist" in message
    # a build command may create it: no error, resolved against root as air does
    built = load(project, '[build]\ncmd = "make"\nentrypoint = ["./tmp/app"]\n')
    assert built.app_command().argv == (str(project.resolve() / "tmp" / "app"),)
    bare = load(project, '[build]\ncmd = "make"\nentrypoint = ["server-bin"]\n')
    assert bare.app_command().argv == (str(project.resolve() / "server-bin"),)


@pytest.mark.parametrize(
    ("files", "entry"),
    [
        (["app.py", "main.py", "manage.py"], ("app.py",)),
        (["main.py", "manage.py"], ("main.py",)),
        (["manage.py"], ("manage.py", "runserver", "--noreload")),
    ],
)
def test_detects_the_app(tmp_path: Path, files: list[str], entry: tuple[str, ...]) -> None:
    for name in files:
        (tmp_path / name).write_text("")
    config = load_config(None, cwd=tmp_path, extra_args=["--", "x"])
    command = config.app_command()
    assert command.shell is None and command.argv is not None
    assert command.argv[1:] == (*entry, "--", "x")
    assert os.path.isabs(command.argv[0])


def test_no_app_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, cwd=tmp_path)
    message = str(info.value)
    assert "no app to run: no app.py, main.py or manage.py" in message
    assert 'full_bin = "python server.py"' in message and "\n" not in message
    assert load_config(None, cwd=tmp_path, check_app=False).root == tmp_path.resolve()
    with pytest.raises(ConfigError):
        resolve_app_command(Config(root=tmp_path))


def test_python_executable_prefers_the_projects_venv(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_python = project / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    assert python_executable(project) == str(venv_python)
    assert load_config(None, cwd=project).app_command().argv == (str(venv_python), "app.py")
    active = tmp_path / "active"
    (active / "bin").mkdir(parents=True)
    (active / "bin" / "python").write_text("")
    monkeypatch.setenv("VIRTUAL_ENV", str(active))
    assert python_executable(project) == str(active / "bin" / "python")


# --------------------------------------------------------------------------- discovery


def test_find_config_order(project: Path) -> None:
    assert find_config(None, project) is None
    write(project, "", ".config/air.toml")
    assert find_config(None, project) == project / ".config" / "air.toml"
    write(project, "")
    assert find_config(None, project) == project / ".air.toml"


def test_find_config_explicit(project: Path) -> None:
    write(project, "", "conf/dev.toml")
    assert find_config(Path("conf/dev.toml"), project) == project / "conf" / "dev.toml"
    assert find_config(project / "conf" / "dev.toml", Path("/")) == project / "conf/dev.toml"
    with pytest.raises(ConfigError, match=r"config file nope\.toml not found; check the -c path"):
        find_config(Path("nope.toml"), project)
    with pytest.raises(ConfigError, match="is a directory"):
        find_config(Path("conf"), project)


def test_find_config_and_root_follow_air_wd(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(project, "[build]\ndelay = 3\n")
    monkeypatch.setenv("air_wd", str(project))
    assert find_config(None, tmp_path) == path
    config = load_config(path, cwd=tmp_path)
    assert config.root == project.resolve() and config.build.delay == 3
    monkeypatch.setenv("air_wd", str(tmp_path / "gone"))
    with pytest.raises(ConfigError, match="air_wd: root directory"):
        load_config(None, cwd=tmp_path)


def test_dot_config_root_is_the_project(project: Path) -> None:
    path = write(project, 'root = "."\n', ".config/air.toml")
    assert load_config(path, cwd=project / ".config").root == project.resolve()
    message = error(project, "[build]\ndealy = 1\n")  # sanity: .air.toml still reports itself
    assert message.startswith(at(project, 2))
    write(project, "[build]\ndealy = 1\n", ".config/air.toml")
    with pytest.raises(ConfigError) as info:
        load_config(project / ".config" / "air.toml", cwd=project)
    assert str(info.value).startswith(f"{project / '.config' / 'air.toml'}:2:1: ")


# --------------------------------------------------------------------------- environment


DOTENV = r"""
# a comment
FOO=bar
export EXPORTED=yes
   SPACY   =    value with spaces
INLINE=value # a comment
HASH=a#b
QUOTED="hello world"  # comment after quotes
SINGLE='literal $FOO \n'
ESCAPES="line1\nline2\t\"q\" \\ \$FOO"
UNICODE="héllo ✓"
MULTI="first
second"
EQUALS=host=localhost;port=5432
YAML: style
EMPTY=
BASED=${BASE}_1
BRACED=${FOO}-$FOO
FORWARD=${LATER}/x
LATER=later
SELF=${SELF}_again
UNKNOWN=[$NOPE]
justgarbage
=nokey
CRLF=windows
"""


def test_parse_dotenv() -> None:
    values = parse_dotenv(DOTENV.replace("CRLF=windows", "CRLF=windows\r"), {"BASE": "b"})
    assert values == {
        "FOO": "bar",
        "EXPORTED": "yes",
        "SPACY": "value with spaces",
        "INLINE": "value",
        "HASH": "a#b",
        "QUOTED": "hello world",
        "SINGLE": "literal $FOO \\n",
        "ESCAPES": 'line1\nline2\t"q" \\ $FOO',
        "UNICODE": "héllo ✓",
        "MULTI": "first\nsecond",
        "EQUALS": "host=localhost;port=5432",
        "YAML": "style",
        "EMPTY": "",
        "BASED": "b_1",
        "BRACED": "bar-bar",
        "FORWARD": "later/x",
        "LATER": "later",
        "SELF": "_again",
        "UNKNOWN": "[]",
        "CRLF": "windows",
    }


def test_parse_dotenv_environment_wins_in_expansion() -> None:
    # the child will see FOO=env (base wins), so references to FOO must agree
    assert parse_dotenv("FOO=file\nBAR=$FOO\n", {"FOO": "env"})["BAR"] == "env"
    assert parse_dotenv("A=1\nA=2\n") == {"A": "2"}


def test_child_environment(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / ".env").write_text("SHARED=file1\nONLY1=one\nKEEP=file\nREF=$KEEP\n")
    (project / ".env.local").write_text("SHARED=file2\nFROM1=${ONLY1}!\n")
    config = load(
        project,
        """
        env_files = [".env", ".env.local", "missing.env"]
        [env]
        TABLE = "t"
        PATH_OVERRIDE = "yes"
        """,
    )
    before = dict(os.environ)
    base = {"KEEP": "base", "PATH_OVERRIDE": "no", "OTHER": "o"}
    env = child_environment(config, base)
    assert env == {
        "KEEP": "base",  # env_files never override what is already set
        "PATH_OVERRIDE": "yes",  # [env] does
        "OTHER": "o",
        "SHARED": "file2",  # a later file wins over an earlier one
        "ONLY1": "one",
        "REF": "base",
        "FROM1": "one!",
        "TABLE": "t",
    }
    assert base == {"KEEP": "base", "PATH_OVERRIDE": "no", "OTHER": "o"}
    assert dict(os.environ) == before  # pyair's own environment is never touched
    # re-read every time: an edit shows up, a removed key disappears
    (project / ".env").write_text("ONLY1=changed\n")
    again = child_environment(config, {})
    assert again["ONLY1"] == "changed" and "KEEP" not in again


def test_child_environment_read_hook_and_overrides(project: Path) -> None:
    config = load(
        project, 'env_files = ["a.env"]\n', overrides={"env.FLAG": "f", "env_files": "b.env"}
    )
    seen: list[Path] = []

    def read(path: Path) -> str:
        seen.append(path)
        return "FROM_HOOK=1\nFLAG=file\n"

    env = child_environment(config, {}, read=read)
    assert seen == [project.resolve() / "b.env"]
    assert env == {"FROM_HOOK": "1", "FLAG": "f"}


def test_env_table_names_must_be_usable(project: Path) -> None:
    message = error(project, '[env]\n"A=B" = "1"\n')
    assert message.startswith(at(project, 2)) and "cannot be an environment variable" in message


# ------------------------------------------------------------------ [[build.rules]], [[process]]


def test_build_rules_as_air_defines_them(project: Path) -> None:
    config = load(
        project,
        """
        [build]
        exclude_dir = ["assets"]

        [[build.rules]]
        name = "css"
        cmd = "sass assets/scss:static/css"
        include_dir = ["./assets/scss/"]
        include_ext = [".scss"]
        exclude_regex = ["_draft"]

        [[build.rules]]
        cmd = "make client"
        include_file = ["openapi.yaml"]
        delay = "250ms"
        """,
    )
    css, client = config.build.rules
    assert (css.name, css.cmd, css.include_dir, css.include_ext) == (
        "css", "sass assets/scss:static/css", ("assets/scss",), ("scss",),
    )  # fmt: skip
    assert css.exclude_regex == ("_draft",) and css.delay == 1000  # air's default delay
    assert (client.name, client.include_file, client.delay) == ("rule-1", ("openapi.yaml",), 250)
    assert config.unused_keys == ()


def test_processes_and_their_restart_policies(project: Path) -> None:
    config = load(
        project,
        """
        [[process]]
        name = "worker"
        cmd = "python -m celery -A proj worker"

        [process.env]
        CELERY_LOG = "info"

        [[process]]
        name = "tailwind"
        cmd = "npx tailwindcss --watch"
        cwd = "frontend"
        restart = "never"

        [[process]]
        name = "scheduler"
        cmd = "python beat.py"
        include_dir = ["schedules"]
        """,
    )
    worker, tailwind, scheduler = config.process
    assert (worker.restart, dict(worker.env)) == ("app", {"CELERY_LOG": "info"})
    assert (tailwind.restart, tailwind.cwd) == ("never", "frontend")
    assert scheduler.restart == "files" and scheduler.include_dir == ("schedules",)
    with pytest.raises(TypeError):
        worker.env["X"] = "1"  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ('[[build.rules]]\ninclude_ext = ["scss"]\n', 1, "build.rules[0]: a rule needs a cmd"),
        (
            '[[build.rules]]\ncmd = "a"\ninclude_ext = ["x"]\n[[build.rules]]\ncmd = "b"\n',
            4,
            "build.rules[1]: a rule needs include_dir, include_ext or include_file",
        ),
        (
            '[[build.rules]]\ncmd = "a"\ninclude_ext = ["x"]\nexclude_regex = ["("]\n',
            4,
            "build.rules[0]: bad regular expression '('",
        ),
        ('[[build.rules]]\ncmd = "a"\nincluded_ext = ["x"]\n', 3, "did you mean 'include_ext'?"),
        ("[build]\nrules = 3\n", 2, "write each entry as a [[build.rules]] table"),
        ('[[process]]\ncmd = "a"\n', 1, "process[0]: a process needs a name"),
        ('[[process]]\nname = "a b"\ncmd = "a"\n', 2, "name 'a b' is not a plain name"),
        ('[[process]]\nname = "w"\n', 1, "process[0]: a process needs a cmd"),
        (
            '[[process]]\nname = "w"\ncmd = "a"\n[[process]]\nname = "w"\ncmd = "b"\n',
            5,
            "process[1]: name 'w' is taken by an earlier entry",
        ),
        (
            '[[process]]\nname = "w"\ncmd = "a"\nrestart = "files"\n',
            4,
            'restart = "files" needs include_dir, include_ext or include_file',
        ),
        (
            '[[process]]\nname = "w"\ncmd = "a"\nrestart = "never"\ninclude_ext = ["py"]\n',
            4,
            'restart = "never", but include_* files are given',
        ),
        ('[[process]]\nname = "w"\ncmd = "a"\nrestart = "always"\n', 4, "use one of 'app'"),
        ('[[process]]\nname = "w"\ncmd = "a"\nenv = 3\n', 4, "'process[0].env' must be a table"),
        ('[[process]]\nname = "w"\ncmd = "a"\n[process.env]\n"A=B" = "1"\n', 5, "process[0].env: "),
    ],
)
def test_rule_and_process_errors_point_at_the_entry(
    project: Path, text: str, line: int, needle: str
) -> None:
    message = error(project, text)
    assert message.startswith(at(project, line)), message
    assert needle in message, message


def test_rules_and_processes_cannot_be_flags(project: Path) -> None:
    assert "build.rules" not in known_keys() and "process" not in known_keys()
    assert config_module.table_keys() == ["process", "build.rules"]
    with pytest.raises(ConfigError) as info:
        load(project, "", overrides={"build.rules": "x"})
    assert str(info.value) == (
        "--build.rules cannot be set by a flag (as in air); write [[build.rules]] tables in "
        "the config file"
    )


def test_keylines_index_the_entries_of_arrays_of_tables() -> None:
    lines = KeyLines("[[p]]\nname = 1\n[[p]]\nname = 2\n[p.env]\nX = 1\n[[p]]\nenv = { Y = 1 }\n")
    assert lines.find("p[0].name") == (2, 1)
    assert lines.find("p[1].name") == (4, 1)
    assert lines.find("p[1].env.X") == (6, 1)
    assert lines.find("p[2].env.Y") == (8, 1)  # an inline table's key: at its parent
    assert lines.find("p.name") == (2, 1)  # unindexed: the first occurrence, as before
