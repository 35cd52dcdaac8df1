"""The agent's connection thread and the all-or-nothing swap across engines."""

from __future__ import annotations

import os
import sys
import threading
import time

from ..childside import UntrustedListener, connect_control
from . import TemplateFailure, _callbacks, debug, engines, warn

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import Any

    from ..protocol import Message

RECV_SIZE = 65536
_PKG = __name__.rpartition(".")[0]  # "supervisor.agent" (or "_pyair_supervisor.agent")

_swap_lock = threading.Lock()
_thread: threading.Thread | None = None


class Prepared:
    """One engine's validated swap, waiting to be committed."""

    __slots__ = ("claimed", "commit", "names")

    def __init__(self, names: list[str], claimed: set[str], commit: Callable[[], None]) -> None:
        self.names = names
        self.claimed = claimed
        self.commit = commit


def real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def start(control_path: str) -> None:
    global _thread
    if _thread is not None:
        return
    _thread = threading.Thread(target=_run, args=(control_path,), name="pyair-agent", daemon=True)
    _thread.start()


def _run(control_path: str) -> None:
    try:
        _serve(control_path)
    except Exception as exc:  # the agent goes quiet; the app never notices
        warn(f"stopped: {type(exc).__name__}: {exc}")


def _serve(control_path: str) -> None:
    from .. import protocol

    try:
        sock = connect_control(control_path)
    except UntrustedListener as exc:
        warn(f"refused the control socket: {exc}")
        return
    except OSError as exc:
        debug(f"cannot connect to {control_path}: {exc}")
        return
    try:
        if hasattr(os, "register_at_fork"):
            # A forked child must not hold the connection open after this process is gone.
            os.register_at_fork(after_in_child=sock.close)
        _send(sock, protocol.hello(os.getpid(), engines()))
        debug(f"connected to {control_path}")
        decoder = protocol.FrameDecoder()
        while True:
            try:
                data = sock.recv(RECV_SIZE)
            except OSError:
                return
            if not data:
                debug("control socket closed")
                return
            decoder.feed(data)
            while True:
                try:
                    msg = decoder.next_message()
                except protocol.FrameTooLarge as exc:
                    warn(f"control socket: {exc}; closing")
                    return
                except protocol.ProtocolError as exc:
                    warn(f"control socket: dropped a bad frame: {exc}")
                    continue
                if msg is None:
                    break
                reply = _handle(msg)
                if reply is None:
                    continue
                try:
                    _send(sock, reply)
                except protocol.ProtocolError as exc:  # e.g. an ack too big to frame
                    error = {"file": None, "line": None, "message": str(exc), "internal": True}
                    _send(sock, protocol.ack(reply.get("id", 0), ok=False, error=error))
    finally:
        sock.close()


def _send(sock: socket.socket, msg: Message) -> None:
    from .. import protocol

    sock.sendall(protocol.encode(msg))


def _handle(msg: Message) -> Message | None:
    from .. import protocol

    kind = msg["type"]
    if kind == "swap":
        return swap(msg["id"], msg["paths"])
    if kind == "ping":
        return protocol.pong(msg["id"])
    if kind != "pong":
        debug(f"ignored a {kind!r} message")
    return None


def _describe(exc: BaseException) -> dict[str, Any]:
    filename = getattr(exc, "filename", None)
    lineno = getattr(exc, "lineno", None)
    message = getattr(exc, "message", None)
    if not isinstance(message, str) or not message:
        message = str(exc) or type(exc).__name__
    return {
        "file": filename if isinstance(filename, str) else None,
        "line": lineno if type(lineno) is int else None,
        "message": message,
    }


def _adapters() -> list[Callable[[list[str]], Prepared | None]]:
    """The prepare() of every engine this process has shown (their modules are imported)."""
    found: list[Callable[[list[str]], Prepared | None]] = []
    if f"{_PKG}._jinja" in sys.modules:
        from . import _jinja

        found.append(_jinja.prepare)
    if "django.template" in sys.modules:
        from . import _django

        found.append(_django.prepare)
    if f"{_PKG}._mako" in sys.modules:
        from . import _mako

        found.append(_mako.prepare)
    return found


def swap(msg_id: int, raw_paths: list[str]) -> Message:
    """Validate every changed template in every engine, then swap them all (or none)."""
    from .. import protocol

    started = time.perf_counter()
    paths = [os.path.abspath(p) for p in raw_paths]

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000

    with _swap_lock:
        prepared: list[Prepared] = []
        names: list[str] = []
        try:
            for prepare in _adapters():
                result = prepare(paths)
                if result is not None:
                    prepared.append(result)
        except TemplateFailure as exc:
            return protocol.ack(msg_id, ok=False, ms=elapsed(), error=_describe(exc))
        except Exception as exc:
            error = _describe(exc)
            error["message"] = f"pyair agent: {type(exc).__name__}: {error['message']}"
            error["internal"] = True
            return protocol.ack(msg_id, ok=False, ms=elapsed(), error=error)
        custom: list[str] = []
        for callback in list(_callbacks):
            try:
                got = callback(list(paths))
            except Exception as exc:
                return protocol.ack(msg_id, ok=False, ms=elapsed(), error=_describe(exc))
            if got:
                custom.extend(str(name) for name in got)
        claimed: set[str] = set()
        try:
            for result in prepared:
                result.commit()
                names.extend(result.names)
                claimed |= result.claimed
        except Exception as exc:
            error = _describe(exc)
            error["message"] = f"pyair agent: swap failed midway: {error['message']}"
            error["internal"] = True
            return protocol.ack(msg_id, ok=False, ms=elapsed(), error=error)
    names.extend(custom)
    unclaimed = [] if custom else [p for p in paths if p not in claimed]
    debug(f"swapped {names} in {elapsed():.1f} ms")
    return protocol.ack(msg_id, ok=True, names=names, ms=elapsed(), unclaimed=unclaimed)
