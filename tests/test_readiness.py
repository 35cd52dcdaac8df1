"""Readiness: the app's port found without configuration; up at its first HTTP answer, any status.

Real sockets and small servers in threads: one that accepts and hangs up (a server still
starting), one that listens long before it reads (the answer waits in the kernel, one request
is enough), one that answers 404 to a ready_url (a few requests, doubling pauses, then a clear
reason). Every server counts the requests it got: the app's log would show each one.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from supervisor.config import BuildConfig, Config, ProxyConfig
from supervisor.readiness import (
    NotReady,
    Ready,
    Target,
    app_port,
    command_port,
    probe_target,
    wait_ready,
)


def unused_port() -> int:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        return int(placeholder.getsockname()[1])


class Server:
    """Answers each accepted connection with the next of ``replies`` (None: hang up at once).

    ``listen_after``: the port is refused until then; ``read_after``: it listens (the kernel
    accepts) but reads nothing until then, as a server that binds early and starts late.
    """

    def __init__(
        self, replies: list[bytes | None], *, listen_after: float = 0.0, read_after: float = 0.0
    ) -> None:
        self.port = unused_port()
        self.replies = replies
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listening = False
        if not listen_after:
            self._listen()
        # the server's own schedule: it starts listening, or reading, that much later
        self.timer = threading.Timer(max(listen_after, read_after), self._serve)
        self.timer.daemon = True
        self.timer.start()

    def _listen(self) -> None:
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.listening = True

    def _serve(self) -> None:
        if not self.listening:
            self._listen()
        index = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                reply = self.replies[min(index, len(self.replies) - 1)]
                index += 1
                if reply is None:
                    continue
                self.requests.append(conn.recv(4096))
                conn.sendall(reply)

    def close(self) -> None:
        self.timer.cancel()
        self.sock.close()


@contextmanager
def serving(replies: list[bytes | None], **timing: float) -> Iterator[Server]:
    server = Server(replies, **timing)
    try:
        yield server
    finally:
        server.close()


def status(code: int) -> bytes:
    return f"HTTP/1.1 {code} Whatever\r\nContent-Length: 0\r\n\r\n".encode()


def probe(target: Target, timeout_s: float = 5.0) -> Ready | NotReady:
    async def main() -> Ready | NotReady:
        return await wait_ready(target, alive=lambda: True, timeout_s=timeout_s)

    return anyio.run(main)


def test_any_status_is_an_answer_and_a_hang_up_is_not() -> None:
    with serving([None, status(404)]) as server:
        result = probe(Target("127.0.0.1", server.port))
    assert isinstance(result, Ready), result
    assert result.answer == "answered 404 at /"
    assert result.requests == 2 and len(server.requests) == 1  # the hang-up read nothing
    assert server.requests[0].startswith(b"GET / HTTP/1.1\r\n")


def test_a_server_that_listens_before_it_reads_takes_one_request() -> None:
    with serving([status(200)], read_after=0.3) as server:
        result = probe(Target("127.0.0.1", server.port))
    assert isinstance(result, Ready) and result.requests == 1, result
    assert result.ms >= 250  # it waited for the answer, it did not ask again
    assert len(server.requests) == 1


def test_connecting_until_the_port_accepts_sends_nothing_before() -> None:
    with serving([status(302)], listen_after=0.2) as server:
        result = probe(Target("127.0.0.1", server.port))
    assert isinstance(result, Ready) and result.requests == 1, result
    assert result.answer == "answered 302 at /"
    assert len(server.requests) == 1  # the refused attempts never reached it


def test_a_ready_url_needs_2xx_or_3xx_and_is_asked_a_handful_of_times() -> None:
    with serving([status(404)]) as server:
        url = f"http://127.0.0.1:{server.port}/health"
        target = Target("127.0.0.1", server.port, "/health", url, False)
        result = probe(target, timeout_s=1.6)
    assert isinstance(result, NotReady)
    assert result.reason == (
        f"answered 404 at /health (http://127.0.0.1:{server.port}/health must answer 2xx or 3xx)"
    )
    # 50, 100, 200, 400, 800 ms pauses: at most 6 requests in 1.6 s, not hundreds
    assert 3 <= len(server.requests) <= 6, len(server.requests)


def test_nothing_listening_says_so() -> None:
    port = unused_port()
    result = probe(Target("127.0.0.1", port), timeout_s=0.3)
    assert isinstance(result, NotReady) and not result.exited
    assert result.reason == f"port {port} never accepted a connection"


def test_an_app_that_exits_stops_the_wait() -> None:
    async def main() -> Ready | NotReady:
        return await wait_ready(Target("127.0.0.1", 9), alive=lambda: False, timeout_s=5)

    result = anyio.run(main)
    assert isinstance(result, NotReady) and result.exited


def make_config(tmp_path: Path, *, full_bin: str = "python app.py", **kw: object) -> Config:
    build = BuildConfig(full_bin=full_bin, ready_url=str(kw.pop("ready_url", "")))
    proxy = ProxyConfig(app_port=int(kw.pop("app_port", 0)))  # type: ignore[call-overload]
    env = dict(kw.pop("env", {}))  # type: ignore[call-overload]
    return Config(root=tmp_path, build=build, proxy=proxy, env=env)


@pytest.mark.parametrize(
    ("command", "port"),
    [
        ("python -m uvicorn main:app --port 8123", 8123),
        ("python -m flask --app flaskr run --debug --port=5123", 5123),
        ("flask run -p 5055", 5055),
        ("gunicorn -w 2 -b 127.0.0.1:9001 app:app", 9001),
        ("gunicorn --bind=0.0.0.0:9002 app:app", 9002),
        ("python mysite/manage.py runserver 127.0.0.1:8765", 8765),
        ("python manage.py runserver --noreload 8766", 8766),
        ("python manage.py runserver 127.0.0.1:$PORT", 7777),
        ("python app.py", None),
    ],
)
def test_the_command_line_names_the_port(command: str, port: int | None) -> None:
    assert command_port(command, {"PORT": "7777"}) == port


def test_where_the_port_comes_from(tmp_path: Path) -> None:
    uvicorn = "python -m uvicorn main:app --port 8123"
    assert app_port(make_config(tmp_path, full_bin=uvicorn, app_port=9000)) == 9000
    assert app_port(make_config(tmp_path, full_bin=uvicorn, env={"PORT": "8500"})) == 8500
    assert app_port(make_config(tmp_path, full_bin=uvicorn)) == 8123
    assert app_port(make_config(tmp_path)) is None
    assert probe_target(make_config(tmp_path)) is None
    url = probe_target(make_config(tmp_path, ready_url="http://localhost:8001/up?x=1"))
    assert url == Target("localhost", 8001, "/up?x=1", "http://localhost:8001/up?x=1", False)
    assert probe_target(make_config(tmp_path, full_bin=uvicorn)) == Target("127.0.0.1", 8123)
