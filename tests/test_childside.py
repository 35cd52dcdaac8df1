"""supervisor.childside with real pipes and processes: frames, /proc readers, the import helper,
and the guardian program speaking frames on its pipe.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from importlib.machinery import ModuleSpec
from types import ModuleType

import pytest
from support import REPO, wait_until

from supervisor import childside
from supervisor.childside import FrameChannel, FrameError, FrameTooLarge, encode_frame

PY = sys.executable
GUARDIAN_MAIN = REPO / "supervisor" / "guardian_main.py"
WAITER = "import sys; print('ready', flush=True); sys.stdin.read()"


def waiter(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A Python child that has started for sure (right after exec its /proc files are empty)
    and runs until its stdin closes."""
    child = subprocess.Popen([PY, "-c", WAITER], env=env, stdin=-1, stdout=-1)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    return child


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):  # closed by the test already
            os.close(fd)


# --------------------------------------------------------------------------- frames


def test_a_channel_reads_whole_frames_and_notices_the_end(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    writer, reader = FrameChannel(write_fd), FrameChannel(read_fd)
    assert writer.send({"op": "fork", "id": 1})
    second = encode_frame({"op": "retire"})
    os.write(write_fd, second[:3])  # half a header: nothing to hand out yet
    assert reader.read() == [{"op": "fork", "id": 1}]
    os.write(write_fd, second[3:])
    assert reader.receive() == {"op": "retire"}
    os.close(write_fd)
    assert reader.receive() is None and reader.closed
    assert reader.read() == []


def test_a_garbled_stream_still_shows_its_end(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    reader = FrameChannel(read_fd, max_frame=64)
    os.write(write_fd, (1000).to_bytes(4, "big") + b"x" * 10)
    with pytest.raises(FrameTooLarge):
        reader.read()
    os.close(write_fd)
    with pytest.raises(FrameTooLarge):  # out of step for good...
        reader.read()
    assert reader.closed  # ...but the end was seen first


def test_a_send_to_a_closed_pipe_says_so(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.close(read_fd)
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        assert FrameChannel(write_fd).send({"op": "bye"}) is False
    finally:
        signal.signal(signal.SIGPIPE, previous)


def test_undecodable_file_names_survive_a_frame() -> None:
    name = os.fsdecode(b"/srv/caf\xe9.py")  # a Latin-1 name on a UTF-8 system: a lone surrogate
    reader = childside.FrameReader()
    reader.feed(encode_frame({"files": [name, "ü"]}))
    assert list(reader) == [{"files": [name, "ü"]}]


def test_a_bad_payload_is_dropped_and_the_next_frame_read() -> None:
    reader = childside.FrameReader()
    reader.feed(len(b"{nope").to_bytes(4, "big") + b"{nope" + encode_frame([1]))
    with pytest.raises(FrameError, match="malformed frame"):
        list(reader)
    assert list(reader) == [[1]]


# --------------------------------------------------------------------------- /proc


def test_a_zombie_is_gone_and_so_is_a_reused_pid() -> None:
    child = waiter()
    try:
        ticks = childside.start_ticks(child.pid)
        assert ticks is not None
        assert not childside.is_gone(child.pid, ticks)
        assert childside.is_gone(child.pid, ticks + 1)  # the pid, but not that process
        assert child.stdin is not None
        child.stdin.close()
        wait_until(lambda: childside.stat_fields(child.pid)[0] == b"Z", message="a zombie")
        assert childside.is_gone(child.pid, ticks)  # exited, not reaped yet
    finally:
        child.kill()
        child.wait()
    assert childside.is_gone(child.pid, ticks)
    assert childside.start_ticks(child.pid) is None


def test_a_token_matches_itself_and_what_is_nested_under_it() -> None:
    token = f"t{secrets.token_hex(4)}"
    env = {**os.environ, childside.TREE_ENV: f"{token}/app-1"}
    child = waiter(env)
    try:
        assert childside.carries_token(child.pid, childside.token_needles(token))
        assert childside.carries_token(child.pid, childside.token_needles(f"{token}/app-1"))
        assert not childside.carries_token(child.pid, childside.token_needles(token[:-1]))
        assert not childside.carries_token(child.pid, childside.token_needles(f"{token}/app"))
    finally:
        child.kill()
        child.wait()
    assert not childside.carries_token(child.pid, childside.token_needles(token))


# --------------------------------------------------------------------------- modules


class _Watcher:
    def __init__(self) -> None:
        self.seen: list[ModuleSpec | None] = []

    def find_spec(
        self, fullname: str, path: list[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "colorsys":
            self.seen.append(childside.find_spec_past(self, fullname, path, target))
        return None


def test_a_finder_sees_the_spec_the_others_would_find() -> None:
    watcher = _Watcher()
    sys.modules.pop("colorsys", None)
    sys.meta_path.insert(0, watcher)
    try:
        import colorsys
    finally:
        sys.meta_path.remove(watcher)
    [spec] = watcher.seen
    assert spec is not None and spec.origin == colorsys.__file__
    assert childside.module_location(colorsys) == colorsys.__file__
    assert childside.module_location(childside) == childside.__file__


def test_the_app_holds_one_copy_of_the_child_side_module() -> None:
    """The bootstrap loads it by path for the variable's name; the agent reuses that copy."""
    code = (
        "import sys; m = sys.modules; "
        "p = next(n for n in ('supervisor', '_pyair_supervisor') if n + '.agent' in m); "
        "print(m['_pyair_childside'] is m[p + '.childside'] is m[p].childside, "
        "m[p + '.agent'].ENV_VAR)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO / "supervisor" / "agent" / "bootstrap")
    env[childside.CONTROL_ENV] = "/nonexistent/control.sock"
    out = subprocess.run(
        [PY, "-c", code], env=env, cwd="/", capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", childside.CONTROL_ENV], out.stderr


# --------------------------------------------------------------------------- the guardian's pipe


def _guarded_sleeper(token: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, childside.TREE_ENV: f"{token}/app-1"}
    return subprocess.Popen(["sleep", "1000"], env=env, start_new_session=True)


@pytest.mark.parametrize(
    ("said", "swept"),
    [
        (encode_frame({"op": "bye"}), False),
        (encode_frame({"op": "later"}) + encode_frame({"op": "bye"}), False),
        (b"", True),  # the pipe just ends: pyair died
        (b"bye\n", True),  # not a frame: garbage, then the end
        ((1 << 30).to_bytes(4, "big"), True),  # a header the guardian refuses
    ],
)
def test_the_guardian_sweeps_unless_pyair_says_bye_in_a_frame(said: bytes, swept: bool) -> None:
    token = f"g{secrets.token_hex(4)}"
    sleeper = _guarded_sleeper(token)
    needles = childside.token_needles(token)
    wait_until(lambda: childside.carries_token(sleeper.pid, needles), message="sleep to start")
    guardian = subprocess.Popen(
        [PY, "-I", "-S", str(GUARDIAN_MAIN), token], stdin=subprocess.PIPE, cwd="/"
    )
    try:
        assert guardian.stdin is not None
        guardian.stdin.write(said)
        guardian.stdin.close()
        assert guardian.wait(timeout=10) == 0
        if swept:
            assert sleeper.wait(timeout=5) == -signal.SIGKILL
        else:
            assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
        guardian.kill()
        guardian.wait()
