"""ControlServer: private socket, peer checks, bad frames, swap with a deadline.

The "agents" here are sockets driven by the test (or a real subprocess for the outsider);
the real agent inside real apps is in test_agent.py.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from supervisor import control, protocol
from supervisor.control import ControlServer, SwapResult
from supervisor.protocol import FrameDecoder

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parent.parent


class Log(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)

    def has(self, *words: str) -> bool:
        return any(all(w in line for w in words) for line in self)

    async def wait_for(self, *words: str, timeout: float = 5.0) -> None:
        with anyio.fail_after(timeout):
            while not self.has(*words):
                await anyio.sleep(0.005)  # poll


def only_me(pid: int) -> bool:
    return pid == os.getpid()


class FakeAgent:
    """The test process speaking the protocol over a real connection."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.decoder = FrameDecoder()

    @classmethod
    async def connect(cls, path: str) -> FakeAgent:
        return cls(await anyio.connect_unix(path))

    async def send(self, msg: protocol.Message) -> None:
        await self.stream.send(protocol.encode(msg))

    async def hello(self, engines: list[str] | None = None) -> None:
        await self.send(protocol.hello(os.getpid(), engines or ["jinja2"]))

    async def receive(self, timeout: float = 5.0) -> protocol.Message:
        with anyio.fail_after(timeout):
            while (msg := self.decoder.next_message()) is None:
                self.decoder.feed(await self.stream.receive())
        return msg

    async def closed_by_peer(self, timeout: float = 5.0) -> bool:
        with anyio.fail_after(timeout):
            try:
                while True:
                    await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return True

    async def aclose(self) -> None:
        await self.stream.aclose()


@pytest.fixture
async def server() -> AsyncIterator[tuple[ControlServer, Log]]:
    log = Log()
    async with ControlServer(is_member=only_me, log=log) as srv:
        yield srv, log


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)  # poll


async def test_private_dir_and_socket_modes_and_cleanup() -> None:
    log = Log()
    srv = ControlServer(is_member=only_me, log=log)
    with pytest.raises(RuntimeError):
        _ = srv.path
    async with srv:
        path, directory = srv.path, srv.directory
        assert os.path.dirname(path) == directory
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert len(path.encode()) < 104  # sun_path limit
    assert not os.path.exists(path)
    assert not os.path.exists(directory)
    await srv.aclose()  # idempotent
    with anyio.fail_after(1):
        assert await srv.wait_for_agent(10) is False  # closed: answers at once


async def test_context_exit_on_error_or_cancel_cleans_up() -> None:
    srv = ControlServer(is_member=only_me, log=Log())
    with pytest.raises(ValueError, match="boom"):  # as is, not in an exception group
        async with srv:
            directory = srv.directory
            raise ValueError("boom")
    assert not os.path.exists(directory)

    with anyio.move_on_after(0.05) as scope:
        async with ControlServer(is_member=only_me, log=Log()) as srv:
            directory = srv.directory
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert not os.path.exists(directory)


async def test_aclose_inside_the_context_and_serve_in_a_task_group() -> None:
    srv = ControlServer(is_member=only_me, log=Log())
    async with anyio.create_task_group() as tg:
        await tg.start(srv.serve)
        path = srv.path
        agent = await FakeAgent.connect(path)
        await agent.hello()
        assert await srv.wait_for_agent(5)
        await srv.aclose()
        assert await agent.closed_by_peer()
        await agent.aclose()
    assert not os.path.exists(path)
    assert not srv.agent_connected


async def test_outsider_process_is_refused_and_logged() -> None:
    log = Log()
    allowed: set[int] = set()  # nobody: the connecting child is not in "the app tree"
    async with ControlServer(is_member=allowed.__contains__, log=log) as srv:
        code = (
            "import socket, sys\n"
            "from supervisor import protocol\n"
            "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "try:\n"
            "    s.sendall(protocol.encode(protocol.hello(0, ['jinja2'])))\n"
            "    data = s.recv(100)\n"
            "except OSError:\n"
            "    data = b''\n"
            "print('CLOSED' if data == b'' else 'DATA', flush=True)\n"
        )
        async with await anyio.open_process(
            [sys.executable, "-c", code, srv.path],
            env={**os.environ, "PYTHONPATH": str(REPO)},
        ) as proc:
            assert proc.stdout is not None
            reader = BufferedByteReceiveStream(proc.stdout)
            with anyio.fail_after(10):
                line = await reader.receive_until(b"\n", 100)
                await proc.wait()
        assert line == b"CLOSED"
        assert log.has("refused", f"pid {proc.pid}", "not in the app's process tree")
        assert not srv.agent_connected
        assert await srv.wait_for_agent(0.05) is False


async def test_membership_check_that_raises_refuses() -> None:
    def broken(pid: int) -> bool:
        raise RuntimeError("psutil went away")

    log = Log()
    async with ControlServer(is_member=broken, log=log) as srv:
        agent = await FakeAgent.connect(srv.path)
        assert await agent.closed_by_peer()
        await agent.aclose()
    assert log.has("refused", "psutil went away")


async def test_garbage_closes_that_connection_only(server: tuple[ControlServer, Log]) -> None:
    srv, log = server
    good = await FakeAgent.connect(srv.path)
    await good.hello()
    assert await srv.wait_for_agent(5)

    bad = await FakeAgent.connect(srv.path)
    await bad.stream.send(b"GET / HTTP/1.1\r\nHost: pyair\r\n\r\n")
    assert await bad.closed_by_peer()
    await log.wait_for("exceeds", "closing")

    # the server and the good agent are fine
    await good.send(protocol.ping(99))
    assert await good.receive() == protocol.pong(99)
    assert srv.agent_connected
    await bad.aclose()
    await good.aclose()


async def test_100_mb_frame_is_refused_without_reading_it(
    server: tuple[ControlServer, Log],
) -> None:
    srv, log = server
    bad = await FakeAgent.connect(srv.path)
    size = 100 * 1024 * 1024
    chunk = b"\0" * (1 << 20)
    sent = 0
    try:
        await bad.stream.send(size.to_bytes(4, "big"))
        with anyio.fail_after(10):
            while sent < size:
                await bad.stream.send(chunk)
                sent += len(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the server hung up on us: expected
    await log.wait_for(f"frame of {size} bytes exceeds", "closing")
    assert sent < size  # it closed long before the whole frame went through
    await bad.aclose()
    agent = await FakeAgent.connect(srv.path)
    await agent.hello()
    assert await srv.wait_for_agent(5)
    await agent.aclose()


async def test_malformed_frame_is_dropped_and_the_connection_lives(
    server: tuple[ControlServer, Log],
) -> None:
    srv, log = server
    agent = await FakeAgent.connect(srv.path)
    await agent.stream.send(len(b"{oops").to_bytes(4, "big") + b"{oops")
    await agent.stream.send(len(b'{"type":"x"}').to_bytes(4, "big") + b'{"type":"x"}')
    await agent.hello()
    assert await srv.wait_for_agent(5)
    assert log.has("dropped a bad frame", "malformed")
    assert log.has("dropped a bad frame", "unknown message type")
    await agent.aclose()


async def test_wrong_protocol_version_is_closed(server: tuple[ControlServer, Log]) -> None:
    srv, log = server
    agent = await FakeAgent.connect(srv.path)
    await agent.send({"type": "hello", "v": 99, "pid": os.getpid(), "engines": []})
    assert await agent.closed_by_peer()
    assert log.has("protocol v99")
    assert not srv.agent_connected
    await agent.aclose()


async def test_silent_peer_is_closed_after_the_hello_timeout() -> None:
    log = Log()
    async with ControlServer(is_member=only_me, log=log, hello_timeout=0.2) as srv:
        agent = await FakeAgent.connect(srv.path)
        assert await agent.closed_by_peer()
        await agent.aclose()
    assert log.has("sent no hello")


async def test_swap_round_trip(server: tuple[ControlServer, Log]) -> None:
    srv, log = server
    agent = await FakeAgent.connect(srv.path)
    await agent.hello(["jinja2", "custom"])
    assert await srv.wait_for_agent(5)
    info = srv.agent
    assert info is not None
    assert (info.pid, info.uid, info.engines) == (os.getpid(), os.getuid(), ("jinja2", "custom"))
    assert log.has("agent connected", f"pid {os.getpid()}", "jinja2, custom")

    async def answer(ok: bool) -> None:
        msg = await agent.receive()
        assert msg["type"] == "swap"
        assert msg["paths"] == ["/t/page.html", "/t/static.html"]
        if ok:
            reply = protocol.ack(
                msg["id"], ok=True, names=["page.html"], ms=0.7, unclaimed=["/t/static.html"]
            )
        else:
            error = {"file": "/t/page.html", "line": 4, "message": "unexpected '}'"}
            reply = protocol.ack(msg["id"], ok=False, ms=0.3, error=error)
        await agent.send(reply)

    async with anyio.create_task_group() as tg:
        tg.start_soon(answer, True)
        result = await srv.swap(["/t/page.html", "/t/static.html"], timeout_ms=2000)
    assert result.ok and result.reason == control.SWAPPED and not result.fallback
    assert result.names == ("page.html",)
    assert result.unclaimed == ("/t/static.html",)
    assert result.ms == 0.7 and result.rtt_ms > 0
    assert result.error is None

    async with anyio.create_task_group() as tg:
        tg.start_soon(answer, False)
        result = await srv.swap(["/t/page.html", "/t/static.html"], timeout_ms=2000)
    assert not result.ok and result.reason == control.TEMPLATE_ERROR and not result.fallback
    assert result.error == control.TemplateError("/t/page.html", 4, "unexpected '}'")
    assert str(result.error) == "/t/page.html:4: unexpected '}'"

    async with anyio.create_task_group() as tg:
        tg.start_soon(agent.send, protocol.ping(5))
        assert await agent.receive() == protocol.pong(5)  # pyair answers pings too
    await agent.aclose()


async def test_internal_agent_failure_falls_back(server: tuple[ControlServer, Log]) -> None:
    srv, _log = server
    agent = await FakeAgent.connect(srv.path)
    await agent.hello()
    assert await srv.wait_for_agent(5)

    async def answer() -> None:
        msg = await agent.receive()
        error = {"file": None, "line": None, "message": "AttributeError", "internal": True}
        await agent.send(protocol.ack(msg["id"], ok=False, error=error))

    async with anyio.create_task_group() as tg:
        tg.start_soon(answer)
        result = await srv.swap(["/t/a.html"], timeout_ms=2000)
    assert result.reason == control.AGENT_ERROR and result.fallback
    await agent.aclose()


async def test_swap_without_agent_timeout_and_disconnect(
    server: tuple[ControlServer, Log],
) -> None:
    srv, log = server
    result = await srv.swap(["/t/a.html"], timeout_ms=100)
    assert (result.ok, result.reason, result.fallback) == (False, control.NO_AGENT, True)
    assert await srv.ping() is None

    agent = await FakeAgent.connect(srv.path)
    await agent.hello()
    assert await srv.wait_for_agent(5)
    with anyio.fail_after(5):
        result = await srv.swap(["/t/a.html"], timeout_ms=50)  # the fake never answers
    assert (result.ok, result.reason, result.fallback) == (False, control.TIMEOUT, True)
    assert log.has("no ack within 50 ms")

    # a late ack is ignored, not an error
    msg = await agent.receive()
    await agent.send(protocol.ack(msg["id"], ok=True))
    await log.wait_for("late or unknown ack")

    async def hang_up() -> None:
        await agent.receive()
        await agent.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hang_up)
        result = await srv.swap(["/t/a.html"], timeout_ms=5000)
    assert result.reason == control.DISCONNECTED and result.fallback
    await wait_until(lambda: not srv.agent_connected)
    assert log.has("agent disconnected")
    assert (await srv.swap(["/t/a.html"], timeout_ms=100)).reason == control.NO_AGENT


async def test_every_agent_is_asked_and_the_swap_is_acked_when_all_acked(
    server: tuple[ControlServer, Log],
) -> None:
    """Each worker of a pre-fork server has an agent: all of them swap, or the swap failed."""
    srv, log = server
    first = await FakeAgent.connect(srv.path)
    await first.hello(["first"])
    second = await FakeAgent.connect(srv.path)
    await second.hello(["second"])
    assert await srv.wait_for_agent(5, count=2)
    assert [info.engines for info in srv.agents] == [("first",), ("second",)]
    assert srv.agent is not None and srv.agent.engines == ("second",)  # the newest

    async def answer(agent: FakeAgent, reply: str, names: list[str]) -> None:
        msg = await agent.receive()
        assert msg["sources"] == {"/a": "last good"}  # every agent gets the last good text
        if reply == "ok":
            await agent.send(protocol.ack(msg["id"], ok=True, names=names, unclaimed=["/a"]))
        elif reply == "refuse":
            error = {"file": "/a", "line": 2, "message": "unexpected end"}
            await agent.send(protocol.ack(msg["id"], ok=False, error=error))
        elif reply == "leave":
            await agent.aclose()

    async def swap(first_reply: str, second_reply: str, timeout_ms: int = 2000) -> SwapResult:
        async with anyio.create_task_group() as tg:
            tg.start_soon(answer, first, first_reply, ["a.html"])
            tg.start_soon(answer, second, second_reply, ["a.html", "b.html"])
            return await srv.swap(["/a"], timeout_ms, sources={"/a": "last good"})

    both = await swap("ok", "ok")
    assert (both.ok, both.names, both.unclaimed) == (True, ("a.html", "b.html"), ("/a",))
    assert both.pids == (os.getpid(), os.getpid())  # both answered (both are this process)

    refused = await swap("ok", "refuse")
    assert (refused.ok, refused.reason) == (False, control.TEMPLATE_ERROR)
    assert refused.error == control.TemplateError("/a", 2, "unexpected end")

    silent = await swap("ok", "silent", timeout_ms=100)
    assert (silent.ok, silent.reason, silent.fallback) == (False, control.TIMEOUT, True)

    gone = await swap("ok", "leave")  # a worker that went away is not waited for
    assert (gone.ok, gone.names) == (True, ("a.html",))
    await wait_until(lambda: len(srv.agents) == 1)
    assert log.has("agent disconnected")
    await first.aclose()
    await wait_until(lambda: not srv.agent_connected)
    assert await srv.wait_for_agent(0.05) is False


async def test_a_note_is_logged_with_the_agents_pid(server: tuple[ControlServer, Log]) -> None:
    srv, log = server
    agent = await FakeAgent.connect(srv.path)
    await agent.hello()
    await agent.send(protocol.note("Werkzeug's reloader is off"))
    await wait_until(lambda: log.has(f"agent (pid {os.getpid()}): Werkzeug's reloader is off"))


async def test_ping_round_trip(server: tuple[ControlServer, Log]) -> None:
    srv, _log = server
    agent = await FakeAgent.connect(srv.path)
    await agent.hello()
    assert await srv.wait_for_agent(5)

    async def answer() -> None:
        msg = await agent.receive()
        await agent.send(protocol.pong(msg["id"]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(answer)
        rtt = await srv.ping(2000)
    assert rtt is not None and rtt >= 0
    await agent.aclose()


async def test_wait_for_agent_wakes_on_hello(server: tuple[ControlServer, Log]) -> None:
    srv, _log = server

    async def connect_later() -> None:
        await anyio.wait_all_tasks_blocked()
        agent = await FakeAgent.connect(srv.path)
        await agent.hello()
        await srv.wait_for_agent(5)
        await agent.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(connect_later)
        assert await srv.wait_for_agent(5)
