"""The app's own ``bind()`` of the port pyair holds adopts pyair's socket.

pyair keeps the app's listening socket open across restarts (see ``supervisor/listeners.py``)
and the app inherits a copy, named by ``PYAIR_LISTEN`` (``FD:INODE:HOST:PORT``). The app knows
nothing of it: it makes a socket and binds its port as always. When a TCP ``bind()`` names the
held port, the held socket takes the place of the app's fresh one, under the same descriptor
number and the same Python object, so every server on the ``socket`` module serves it as its
own: http.server, Werkzeug, Django's runserver, uvicorn, hypercorn, aiohttp, gunicorn.

Around it:

- ``listen(n)`` on the adopted socket keeps the held backlog when ``n`` is smaller (http.server
  asks for 5; a restart's queue is longer).
- ``shutdown()`` on it is skipped: on a listening socket it would stop the socket pyair holds,
  for every app to come. ``close()`` closes only this process's copy, as it should.
- An app that leaves SIGTERM to its default (Werkzeug's and Django's development servers)
  would die with its requests in flight, and their clients would be reset. The agent stops
  such an app the way uvicorn stops: on SIGTERM the adopted listener's number is made to name
  an idle socket nobody connects to (the server stops accepting; its ``select``/``poll`` loop
  never sees it ready), the connections it accepted finish (for up to 250 ms: an idle
  kept-alive one waits for a request that is not coming), then it exits as SIGTERM would
  have made it (status 143).
- With ``PYAIR_BIND_RETRY_MS`` (the new app starts while the old one drains), a bind of another
  port that is busy is retried for that long before it fails: the old app may still hold it.

The inherited descriptor is closed once adopted, so pyair sees this process stop accepting
when the app closes its listener (or exits). Nothing here ever raises into the app beyond
what its own ``bind()`` would have raised.
"""

import errno
import os
import sys
import time

from ..childside import AGENT_DEBUG_ENV, BIND_RETRY_ENV, HELD_BACKLOG, LISTEN_ENV, parse_listen

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket as socket_module
    from types import ModuleType
    from typing import Any

RETRY_PAUSE_S = 0.005
# A development server answers what it accepted well within this; a kept-alive connection that
# waits for a next request (a browser's) would otherwise hold the exit until pyair's SIGKILL.
ANSWER_WITHIN_S = 0.25

_held_fd = -1  # the inherited copy, until the app adopts it
_held_host = ""
_held_port = 0
_adopted: "Any" = None  # WeakSet of the app's socket objects that are the held socket
_retry_until = 0.0
_socket_class: "Any" = None  # socket.socket (a subclass's __init__ may take other arguments)
_accepted: "Any" = None  # WeakSet of the connections accepted from an adopted socket
_graceful = False  # the agent's SIGTERM handler is installed
_warned: "set[str]" = set()


def install(socket: "ModuleType") -> bool:
    """Patch ``socket.socket`` for ``PYAIR_LISTEN``; False when it names nothing usable
    (a process that inherited the variable but not the descriptor: a spawned worker)."""
    global _held_fd, _held_host, _held_port, _adopted, _retry_until, _socket_class, _accepted
    if _adopted is not None:
        return True
    parsed = parse_listen(os.environ.get(LISTEN_ENV, ""))
    if parsed is None:
        return False
    fd, inode, host, port = parsed
    try:
        import stat

        info = os.fstat(fd)
        if info.st_ino != inode or not stat.S_ISSOCK(info.st_mode):
            return False
    except OSError:
        return False
    import weakref

    _held_fd, _held_host, _held_port = fd, host, port
    _adopted = weakref.WeakSet()
    _accepted = weakref.WeakSet()
    retry_ms = os.environ.get(BIND_RETRY_ENV, "")
    if retry_ms.isdigit():
        _retry_until = time.monotonic() + int(retry_ms) / 1000
    cls = _socket_class = socket.socket
    real_bind, real_listen, real_shutdown = cls.bind, cls.listen, cls.shutdown
    real_accept = cls.accept

    def bind(self: "socket_module.socket", address: "Any") -> None:
        if _wants_held(self, address, socket) and _adopt(self, address):
            return
        _bind_retrying(real_bind, self, address)

    def listen(self: "socket_module.socket", *backlog: int) -> None:
        if self in _adopted:
            wanted = backlog[0] if backlog else 128
            real_listen(self, max(wanted, HELD_BACKLOG))
        else:
            real_listen(self, *backlog)

    def shutdown(self: "socket_module.socket", how: int) -> None:
        if self not in _adopted:  # see the module docstring
            real_shutdown(self, how)

    def accept(self: "socket_module.socket") -> "Any":
        connection = real_accept(self)
        if self in _adopted:
            _accepted.add(connection[0])
        return connection

    cls.bind = bind
    cls.listen = listen
    cls.shutdown = shutdown
    cls.accept = accept
    return True


def _wants_held(sock: "socket_module.socket", address: "Any", socket: "ModuleType") -> bool:
    try:
        return (
            sock.type == socket.SOCK_STREAM
            and sock.family in (socket.AF_INET, socket.AF_INET6)
            and isinstance(address, tuple)
            and len(address) >= 2
            and int(address[1]) == _held_port
        )
    except Exception:
        return False


def _adopt(sock: "socket_module.socket", address: "Any") -> bool:
    """Put the held socket under ``sock``; False: none to adopt (then bind as asked)."""
    global _held_fd
    source = _held_fd
    if source < 0:  # adopted before and closed since: another copy still open will do
        source = next((other.fileno() for other in list(_adopted) if other.fileno() >= 0), -1)
        if source < 0:
            return False
    try:
        timeout = sock.gettimeout()
        target = sock.fileno()
        os.dup2(source, target, inheritable=False)  # the app's fresh socket is closed by it
        _socket_class.__init__(sock, fileno=target)  # family/type of the held one (v4 or v6)
        sock.settimeout(timeout)  # blocking or not, as the app set it up
    except Exception as exc:
        _warn(f"cannot adopt pyair's socket for port {_held_port}: {exc!r}")
        return False
    if source == _held_fd:
        try:  # noqa: SIM105 - nothing more imported into the app than needed
            os.close(_held_fd)
        except OSError:
            pass
        _held_fd = -1
    _adopted.add(sock)
    _stop_gracefully_on_sigterm()
    host = str(address[0])
    if host not in (_held_host, "localhost") and not (
        host in ("127.0.0.1", "::1") and _held_host in ("127.0.0.1", "::1")
    ):
        _warn(
            f"{host or '*'}:{_held_port} is served on {_held_host}:{_held_port}, the socket "
            "pyair holds across restarts; name the host on the command line (--host) to hold "
            "that one"
        )
    if os.environ.get(AGENT_DEBUG_ENV):
        _warn(f"port {_held_port}: adopted the socket pyair holds")
    return True


def _stop_gracefully_on_sigterm() -> None:
    """Install :func:`_on_sigterm` where SIGTERM would kill the app outright."""
    global _graceful
    if _graceful:
        return
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # the app stops itself (uvicorn, gunicorn, the draining servers)
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (OSError, ValueError):
        return
    _graceful = True


def _on_sigterm(signum: int, frame: "Any") -> None:
    import signal
    import threading

    try:
        for sock in list(_adopted):
            _stop_accepting(sock)
        threading.Thread(target=_exit_when_answered, name="pyair-stop", daemon=True).start()
    except Exception:  # whatever failed, SIGTERM still ends the app, as it would have
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _stop_accepting(sock: "socket_module.socket") -> None:
    """Make ``sock``'s number name a listening socket nobody knows (bound to port 0 on
    loopback): ``poll``/``select`` never report it, ``accept`` would wait forever."""
    fd = sock.fileno()
    if fd < 0:
        return
    import socket

    idle = socket.socket(sock.family, socket.SOCK_STREAM)
    try:
        idle.bind(("::1" if sock.family == socket.AF_INET6 else "127.0.0.1", 0))
        idle.listen(1)
        os.dup2(idle.fileno(), fd, inheritable=False)
    finally:
        idle.close()


def _exit_when_answered() -> None:
    """Once the connections accepted from the held socket are closed (or ANSWER_WITHIN_S
    passed): exit as SIGTERM's default would (no clean-up runs)."""
    import signal

    deadline = time.monotonic() + ANSWER_WITHIN_S
    while time.monotonic() < deadline and any(
        connection.fileno() >= 0 for connection in list(_accepted)
    ):
        time.sleep(RETRY_PAUSE_S)
    os._exit(128 + signal.SIGTERM)


def _bind_retrying(real_bind: "Any", sock: "socket_module.socket", address: "Any") -> None:
    while True:
        try:
            real_bind(sock, address)
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() >= _retry_until:
                raise
        time.sleep(RETRY_PAUSE_S)


def _warn(message: str) -> None:
    if message in _warned:
        return
    _warned.add(message)
    try:
        sys.stderr.write(f"pyair agent ({os.getpid()}): {message}\n")
        sys.stderr.flush()
    except Exception:
        pass
