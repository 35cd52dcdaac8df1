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

    Adapter = Callable[[list[str], dict[str, str]], "Prepared | None"]

RECV_SIZE = 65536
_PKG = __name__.rpartition(".")[0]  # "supervisor.agent" (or "_pyair_supervisor.agent")

_swap_lock = threading.Lock()
_send_lock = threading.Lock()  # acks from the agent thread, notes from the app's threads
_thread: threading.Thread | None = None
_sock: socket.socket | None = None  # the connection, once hello is sent
_notes: list[str] = []  # said once each; sent once connected
_sent_notes = 0


class _State:
    connected = False  # hello sent, socket open: pyair decides when templates change


state = _State()


class Prepared:
    """One engine's validated swap, waiting to be committed.

    ``error``: a changed template that does not compile; then nothing is committed, and
    ``keep`` (if any) puts the last good text of such templates where they were not loaded yet.
    """

    __slots__ = ("claimed", "commit", "error", "keep", "names")

    def __init__(
        self,
        names: list[str],
        claimed: set[str],
        commit: Callable[[], None],
        *,
        error: TemplateFailure | None = None,
        keep: Callable[[], None] | None = None,
    ) -> None:
        self.names = names
        self.claimed = claimed
        self.commit = commit
        self.error = error
        self.keep = keep


def real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def note(text: str) -> None:
    """Queue ``text`` for pyair (each text once); sent now when connected."""
    if text in _notes:
        return
    _notes.append(text)
    _flush_notes()


def _flush_notes() -> None:
    global _sent_notes
    sock = _sock
    if sock is None:
        return
    from .. import protocol

    with _send_lock:
        while _sent_notes < len(_notes):
            text = _notes[_sent_notes]
            _sent_notes += 1
            try:
                sock.sendall(protocol.encode(protocol.note(text)))
            except (OSError, protocol.ProtocolError) as exc:
                debug(f"note not sent: {exc}")


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
    global _sock
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
        _sock = sock
        state.connected = True
        _flush_notes()
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
        state.connected = False  # templates are the framework's again
        _sock = None
        sock.close()


def _send(sock: socket.socket, msg: Message) -> None:
    from .. import protocol

    data = protocol.encode(msg)
    with _send_lock:
        sock.sendall(data)


def _handle(msg: Message) -> Message | None:
    from .. import protocol

    kind = msg["type"]
    if kind == "swap":
        return swap(msg["id"], msg["paths"], msg.get("sources") or {})
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
    if isinstance(filename, str) and not filename.startswith("<"):
        filename = os.path.abspath(filename)  # the app's cwd is known here only
    return {
        "file": filename if isinstance(filename, str) else None,
        "line": lineno if type(lineno) is int else None,
        "message": message,
    }


def _adapters() -> list[Adapter]:
    """The prepare() of every engine this process has shown (their modules are imported)."""
    found: list[Adapter] = []
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


def swap(msg_id: int, raw_paths: list[str], sources: dict[str, str] | None = None) -> Message:
    """Validate every changed template in every engine, then swap them all (or none).

    ``sources``: the last text of each file that compiled, kept serving when a new one fails.
    """
    from .. import protocol

    started = time.perf_counter()
    paths = [os.path.abspath(p) for p in raw_paths]
    last_good = {os.path.abspath(p): text for p, text in (sources or {}).items()}

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000

    with _swap_lock:
        prepared: list[Prepared] = []
        names: list[str] = []
        try:
            for prepare in _adapters():
                result = prepare(paths, last_good)
                if result is not None:
                    prepared.append(result)
            failed = next((result.error for result in prepared if result.error), None)
            if failed is not None:
                for result in prepared:
                    if result.keep is not None:
                        result.keep()
                raise failed
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
