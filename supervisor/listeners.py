"""The app's listening socket, held by pyair across restarts: no refused connection, ever.

    held = HeldSocket.open("127.0.0.1", 8001)      # OSError when another program has the port
    env = held.agent_env()                          # PYAIR_LISTEN: the agent in the app adopts it
    app = await AppProcess.start(cmd, ..., pass_fds=(held.fd,))
    ...                                             # SIGTERM to the old app
    while held.holders(old_pids):                   # the old app still accepts on it
        await anyio.sleep(HOLDERS_POLL_S)
    held.close()                                    # pyair exits (or the app crashed)

Why: a restart closes the app's port for as long as the old app drains and the new one starts.
A client talking to the port directly (an API client, a front-end dev server proxying ``/api``,
``curl`` in a loop, a test suite) gets ``ECONNREFUSED`` in that window. pyair binds the port
itself, once, and keeps it listening; connections that arrive while no app accepts wait in the
kernel's backlog and the next app serves them.

How the app gets it, without a code change:

- A Python app (the agent is in it): the socket is inherited under the number in
  ``PYAIR_LISTEN`` (``FD:INODE:HOST:PORT``); when the app's own ``bind()`` names that port, the
  agent (``agent/_sockets.py``) puts the held socket under the app's socket object instead.
  Any server built on the ``socket`` module works: http.server, Werkzeug (Flask), Django's
  runserver, uvicorn, hypercorn, aiohttp, gunicorn.
- Any other program that accepts a socket the systemd way (``[build] listen_fds = true``):
  descriptor 3, ``LISTEN_FDS=1``, ``LISTEN_PID`` its own pid, ``LISTEN_FDNAMES=http``
  (:func:`with_listen_fds` puts a tiny exec in front that sets them up).

``holders()`` reads ``/proc/PID/fd``: the old app stopped accepting once none of its tree
refers to the socket any more (it closed its listener, or exited). Only then does the new app
start, so two apps never accept at once.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable

from .childside import BIND_RETRY_ENV, HELD_BACKLOG, LISTEN_ENV, format_listen
from .config import AppCommand

__all__ = ["BACKLOG", "HOLDERS_POLL_S", "HeldSocket", "with_listen_fds"]

BACKLOG = HELD_BACKLOG  # a restart's worth of connections waits in it
HOLDERS_POLL_S = 0.002  # while an old app stops: how often its descriptors are looked at


class HeldSocket:
    """One listening TCP socket pyair owns; the apps it starts get copies of it."""

    def __init__(self, sock: socket.socket, host: str, port: int) -> None:
        self._sock = sock
        self.host = host
        self.port = port
        self.fd = sock.fileno()
        self.inode = os.fstat(self.fd).st_ino

    @classmethod
    def open(cls, host: str, port: int, *, backlog: int = BACKLOG) -> HeldSocket:
        """Bind and listen on ``host:port`` as the app would (``SO_REUSEADDR``, so a
        connection of the last run in TIME_WAIT does not keep it). Raises OSError."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # as http.server
            sock.bind((host, port))
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
        return cls(sock, host, port)

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def agent_env(self, *, bind_retry_ms: int = 0) -> dict[str, str]:
        """What tells the agent in a Python app which inherited descriptor to adopt; with
        ``bind_retry_ms``, the app's binds of other, busy ports wait that long for the old
        app (which may still drain on them) before they fail."""
        env = {LISTEN_ENV: format_listen(self.fd, self.inode, self.host, self.port)}
        if bind_retry_ms:
            env[BIND_RETRY_ENV] = str(bind_retry_ms)
        return env

    def holders(self, pids: Iterable[int]) -> list[int]:
        """Which of ``pids`` hold a descriptor of this socket (pyair's own never counts)."""
        link = f"socket:[{self.inode}]"
        found = []
        own = os.getpid()
        for pid in pids:
            if pid == own:
                continue
            directory = f"/proc/{pid}/fd"
            try:
                names = os.listdir(directory)
            except OSError:  # gone, or not ours to read
                continue
            for name in names:
                try:
                    if os.readlink(f"{directory}/{name}") == link:
                        found.append(pid)
                        break
                except OSError:
                    continue
        return found

    @staticmethod
    def family(pid: int) -> set[int]:
        """``pid`` and its descendants, from ``/proc/PID/task/*/children`` (a few reads, not
        a scan of every process: this is on the way to the next app's start)."""
        found: set[int] = set()
        todo = [pid]
        while todo:
            current = todo.pop()
            if current in found:
                continue
            found.add(current)
            try:
                tasks = os.listdir(f"/proc/{current}/task")
            except OSError:
                continue
            for task in tasks:
                try:
                    with open(f"/proc/{current}/task/{task}/children") as children:
                        todo.extend(int(child) for child in children.read().split())
                except (OSError, ValueError):
                    continue
        return found

    @staticmethod
    def can_see_holders() -> bool:
        """Whether :meth:`holders` works here (``/proc``); else the old app must exit first."""
        return os.path.isdir(f"/proc/{os.getpid()}/fd")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


_SYSTEMD_EXEC = (
    "import os,sys;fd=int(sys.argv[1]);os.dup2(fd,3);fd!=3 and os.close(fd);"
    "os.environ.update(LISTEN_FDS='1',LISTEN_FDNAMES='http',LISTEN_PID=str(os.getpid()));"
    "os.execvp(sys.argv[2],sys.argv[2:])"
)


def with_listen_fds(command: AppCommand, fd: int, python: str) -> AppCommand:
    """``command`` started the way systemd starts a socket-activated service: the socket as
    descriptor 3, ``LISTEN_FDS=1``, ``LISTEN_PID`` its pid, ``LISTEN_FDNAMES=http``.

    ``python`` (pyair's own interpreter, ``-I -S``: a few ms) moves the descriptor and execs
    the command, keeping its pid; POSIX shells cannot name descriptors above 9. A shell line
    gets ``LISTEN_PID`` of its shell (the shell's last command keeps it when exec'd).
    """
    argv = command.argv if command.argv is not None else ("/bin/sh", "-c", command.shell or "")
    return AppCommand(argv=(python, "-I", "-S", "-c", _SYSTEMD_EXEC, str(fd), *argv), shell=None)
