"""When a started app is up, found without configuration and without flooding its log.

    target = probe_target(config)          # None: no port or URL known, nothing to wait for
    result = await wait_ready(target, alive=lambda: app.returncode is None, timeout_s=10)
    if isinstance(result, Ready):
        print(f"up in {result.ms:.0f} ms: {result.answer}")   # "answered 404 at /"
    else:
        print(f"not ready: {result.reason}")                   # "port 8000 never accepted ..."

Where: ``[build] ready_url`` when set (that page must answer 2xx/3xx: for apps that need one
page); else the app's port (``[proxy] app_port``, ``PORT`` in ``[env]`` or ``env_files``, or the
command line's ``--port N`` / ``--bind host:N`` / ``runserver [host:]N``), where any HTTP
answer at all means up: a 404 at ``/`` is an app that is up.

How: first the cheap part, connecting until the port accepts (a refused connection never
reaches the app, nor its log); then one ``GET`` on the accepted connection, answered as soon as
the app reads it. Only when that is not an answer that counts is another request sent, after a
doubling pause (50 ms up to 1 s): a handful per start, so the app's log shows at most a few
probe lines.
"""

from __future__ import annotations

import re
import shlex
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import anyio
import anyio.abc

from .config import Config, child_environment
from .errors import PyairError

__all__ = [
    "NotReady",
    "Ready",
    "Target",
    "app_port",
    "command_host",
    "probe_target",
    "wait_ready",
]

CONNECT_POLL_S = 0.005  # between two connection attempts: refused ones cost the app nothing
CONNECT_TIMEOUT_S = 2.0
ALIVE_POLL_S = 0.02  # while a request waits for its answer: how often the app's exit is looked at
FIRST_PAUSE_S = 0.05  # before a second request; it doubles up to MAX_PAUSE_S
MAX_PAUSE_S = 1.0
STATUS_LINE = re.compile(rb"HTTP/\d(?:\.\d)?\s+(\d{3})")
_PORT_OPTIONS = ("--port", "-p", "--bind", "-b")


@dataclass(frozen=True)
class Target:
    """What is probed: ``host:port`` and the path asked for; ``any_status`` unless a URL."""

    host: str
    port: int
    path: str = "/"
    url: str = ""  # the ready_url, when it is one
    any_status: bool = True

    @property
    def where(self) -> str:
        return self.url or f"port {self.port}"


@dataclass(frozen=True)
class Ready:
    """The app is up: ``ms`` after the probe began; ``answer`` says what it answered."""

    ms: float
    answer: str  # "answered 404 at /"
    requests: int  # HTTP requests it took


@dataclass(frozen=True)
class NotReady:
    """The app did not count as up in time (or exited first): ``reason`` says what it did."""

    reason: str  # "port 8000 never accepted a connection", "answered 503 at /health"
    exited: bool = False


def app_port(config: Config) -> int | None:
    """The app's port: ``[proxy] app_port``, ``PORT`` of ``[env]``/env_files, else the
    command line's; None when none of them says."""
    if config.proxy.app_port:
        return config.proxy.app_port
    env = child_environment(config, {})
    port = _port(env.get("PORT", ""))
    if port is not None:
        return port
    try:
        command = config.app_command().display
    except PyairError:
        return None
    return command_port(command, env)


def command_port(command: str, env: Mapping[str, str]) -> int | None:
    """The port a command line gives its server: ``--port 8000``, ``--port=8000``,
    ``-p 8000``, ``--bind 127.0.0.1:8000``, ``runserver 0.0.0.0:8000`` (``$PORT`` expanded)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    words = [re.sub(r"\$\{?PORT\}?", env.get("PORT", "$PORT"), word) for word in words]
    for i, word in enumerate(words):
        name, eq, value = word.partition("=")
        if name in _PORT_OPTIONS:
            value = value if eq else (words[i + 1] if i + 1 < len(words) else "")
            port = _port(value.rpartition(":")[2])
            if port is not None:
                return port
        if word == "runserver":
            for arg in words[i + 1 :]:
                if not arg.startswith("-"):
                    return _port(arg.rpartition(":")[2])
    return None


def command_host(command: str) -> str | None:
    """The address a command line binds: ``--host H``, ``--bind H:P``/``-b H:P``,
    ``runserver H:P`` (None when it names none; IPv6 without brackets)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for i, word in enumerate(words):
        name, eq, value = word.partition("=")
        if not eq:
            value = next((later for later in words[i + 1 :] if not later.startswith("-")), "")
        if name == "--host":
            host = value
        elif (name in ("--bind", "-b") or word == "runserver") and ":" in value:
            host = "" if value.startswith("unix:") else value.rpartition(":")[0]
        else:
            continue
        if host.strip("[]"):
            return host.strip("[]")
    return None


def _port(text: str) -> int | None:
    text = text.strip()
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    return None


def probe_target(config: Config) -> Target | None:
    """What readiness waits for (see the module docstring), None when nothing is known."""
    url = config.build.ready_url
    if url:
        parts = urllib.parse.urlsplit(url)
        default = 443 if parts.scheme == "https" else 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return Target(parts.hostname or "127.0.0.1", parts.port or default, path, url, False)
    port = app_port(config)
    return Target("127.0.0.1", port) if port is not None else None


async def wait_ready(
    target: Target, *, alive: Callable[[], bool], timeout_s: float
) -> Ready | NotReady:
    """Probe ``target`` until it counts as up, ``alive()`` turns False, or ``timeout_s``."""
    started = time.perf_counter()
    requests = 0
    pause = FIRST_PAUSE_S
    reason = f"port {target.port} never accepted a connection"
    with anyio.move_on_after(timeout_s):
        while alive():
            if target.url.startswith("https:"):
                answered: int | str | None = await anyio.to_thread.run_sync(_https, target)
            else:
                try:
                    with anyio.fail_after(CONNECT_TIMEOUT_S):
                        stream = await anyio.connect_tcp(target.host, target.port)
                except OSError:  # refused (TimeoutError is one too)
                    await anyio.sleep(CONNECT_POLL_S)
                    continue
                async with stream:  # a held socket accepts before the app does: watch it
                    answered = await _while_alive(alive, _ask, stream, target)
            requests += 1
            if answered == "":
                reason = (
                    f"{target.url} did not answer"
                    if target.url.startswith("https:")
                    else f"port {target.port} accepted connections but never answered"
                )
            else:
                said = f"answered {answered} at {target.path}" if answered else "answered"
                if target.any_status or (isinstance(answered, int) and 200 <= answered < 400):
                    return Ready((time.perf_counter() - started) * 1000, said, requests)
                reason = f"{said} ({target.url} must answer 2xx or 3xx)"
            await anyio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_S)
    return NotReady(reason, exited=not alive())


async def _while_alive(
    alive: Callable[[], bool],
    ask: Callable[[anyio.abc.ByteStream, Target], Awaitable[int | str | None]],
    stream: anyio.abc.ByteStream,
    target: Target,
) -> int | str | None:
    """``ask(stream, target)``, given up ("" : no answer) as soon as the app exits."""
    answer: list[int | str | None] = []
    async with anyio.create_task_group() as tg:

        async def asking() -> None:
            answer.append(await ask(stream, target))
            tg.cancel_scope.cancel()

        tg.start_soon(asking)
        while alive():
            await anyio.sleep(ALIVE_POLL_S)
        tg.cancel_scope.cancel()
    return answer[0] if answer else ""


async def _ask(stream: anyio.abc.ByteStream, target: Target) -> int | str | None:
    """One GET on an open connection: its status, None for an answer that is not HTTP, ""
    when the app closed the connection without a word."""
    host = target.host if ":" not in target.host else f"[{target.host}]"
    request = (
        f"GET {target.path} HTTP/1.1\r\nHost: {host}:{target.port}\r\n"
        "User-Agent: pyair-ready-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    head = b""
    try:
        await stream.send(request.encode("latin-1"))
        while b"\n" not in head and len(head) < 4096:
            head += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        if not head:
            return ""
    found = STATUS_LINE.match(head)
    return int(found.group(1)) if found else None


def _https(target: Target) -> int | str:
    import urllib.error  # only for an https ready_url: not at pyair's start
    import urllib.request

    try:
        with urllib.request.urlopen(target.url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return ""
