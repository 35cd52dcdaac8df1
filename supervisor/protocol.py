"""Control-socket message types on pyair's frames (stdlib only: the agent imports this in apps).

A frame (:mod:`supervisor.childside`) is a 4-byte big-endian payload length followed by that many
bytes of UTF-8 JSON; on the control socket it holds one object with a ``"type"`` key::

    data = encode(swap(7, ["/app/templates/page.html"]))  # b"\\x00\\x00\\x00\\x3e{...}"
    decoder = FrameDecoder()
    decoder.feed(chunk)                  # bytes from a blocking socket or an anyio stream
    for msg in decoder: ...              # complete messages only; partial frames wait for more

Messages (``PROTOCOL_VERSION`` = 1)::

    hello  agent -> pyair  {"type": "hello", "v": 1, "pid": 123, "engines": ["jinja2"]}
    swap   pyair -> agent  {"type": "swap", "id": 7, "paths": ["/abs/page.html"],
                            "sources": {"/abs/page.html": "<p>{{ last good text }}</p>"}}
                           # sources (optional): the last text of each file that compiled,
                           # what keeps serving where the new text does not
    ack    agent -> pyair  {"type": "ack", "id": 7, "ok": true, "names": ["page.html"], "ms": 1.2,
                            "error": null, "unclaimed": []}
                           error: {"file": "/abs/page.html", "line": 3, "message": "...",
                                   "internal": false}   # internal: the agent failed, not the
                                                        # template (optional, default false)
    note   agent -> pyair  {"type": "note", "text": "Werkzeug's reloader is off: ..."}
                           # something pyair -d shows (once per text)
    ping   either way      {"type": "ping", "id": 1}
    pong   either way      {"type": "pong", "id": 1}
    modules agent -> pyair {"type": "modules", "pid": 123, "names": ["flask", ...],
                            "files": ["/venv/.../flask/__init__.py", ...], "prefixes": [...]}
                           # the app's sys.modules (files[i]: names[i]'s file or package
                           # directory, "" if none) and its interpreter prefixes, for
                           # [build] preload = "auto"; sent on a short connection of its own

Errors: a frame whose payload is not a valid message raises ``ProtocolError`` after the frame is
consumed, so the caller logs it, drops it and carries on. A header announcing more than
``max_frame`` bytes raises ``FrameTooLarge`` (a ``ProtocolError``) without buffering the payload;
the stream is out of step after that (it may just be garbage), so the caller closes it, and any
later use of the decoder raises again.
"""

from __future__ import annotations

from .childside import (
    HEADER_SIZE,
    MAX_FRAME,
    FrameReader,
    FrameTooLarge,
    decode_frame,
    encode_frame,
)
from .childside import FrameError as ProtocolError  # a bad frame and a bad message: drop both

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, TypeAlias

    Message: TypeAlias = dict[str, Any]

PROTOCOL_VERSION = 1

__all__ = [
    "HEADER_SIZE",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "FrameDecoder",
    "FrameTooLarge",
    "ProtocolError",
    "ack",
    "decode_payload",
    "encode",
    "hello",
    "modules",
    "note",
    "ping",
    "pong",
    "swap",
    "validate",
]

# --- message constructors -------------------------------------------------------------------


def hello(pid: int, engines: list[str]) -> Message:
    return {"type": "hello", "v": PROTOCOL_VERSION, "pid": pid, "engines": list(engines)}


def swap(msg_id: int, paths: list[str], sources: dict[str, str] | None = None) -> Message:
    msg: Message = {"type": "swap", "id": msg_id, "paths": list(paths)}
    if sources:
        msg["sources"] = dict(sources)
    return msg


def note(text: str) -> Message:
    return {"type": "note", "text": text}


def ack(
    msg_id: int,
    *,
    ok: bool,
    names: list[str] | None = None,
    ms: float = 0.0,
    error: dict[str, Any] | None = None,
    unclaimed: list[str] | None = None,
) -> Message:
    """``error``: ``{"file": str | None, "line": int | None, "message": str}`` when not ok,
    plus ``"internal": True`` when the agent itself failed rather than a template."""
    return {
        "type": "ack",
        "id": msg_id,
        "ok": ok,
        "names": list(names or ()),
        "ms": round(float(ms), 3),
        "error": error,
        "unclaimed": list(unclaimed or ()),
    }


def modules(pid: int, names: list[str], files: list[str], prefixes: list[str]) -> Message:
    return {
        "type": "modules",
        "pid": pid,
        "names": list(names),
        "files": list(files),
        "prefixes": list(prefixes),
    }


def ping(msg_id: int) -> Message:
    return {"type": "ping", "id": msg_id}


def pong(msg_id: int) -> Message:
    return {"type": "pong", "id": msg_id}


# --- validation -----------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is not an int here


def _is_str_list(value: object) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def _need(msg: Message, key: str, ok: bool) -> None:
    if not ok:
        raise ProtocolError(f"{msg.get('type')} message: missing or bad {key!r}")


def validate(msg: object) -> Message:
    """Check one decoded JSON value is a known, well-formed message; return it."""
    if type(msg) is not dict:
        raise ProtocolError(f"a message must be a JSON object, not {type(msg).__name__}")
    kind = msg.get("type")
    if kind == "hello":
        _need(msg, "v", _is_int(msg.get("v")))
        _need(msg, "pid", _is_int(msg.get("pid")))
        _need(msg, "engines", _is_str_list(msg.get("engines")))
    elif kind == "swap":
        _need(msg, "id", _is_int(msg.get("id")))
        _need(msg, "paths", _is_str_list(msg.get("paths")))
        sources = msg.get("sources", {})
        _need(msg, "sources", type(sources) is dict)
        _need(msg, "sources", all(type(v) is str for v in sources.values()))
    elif kind == "note":
        _need(msg, "text", type(msg.get("text")) is str)
    elif kind == "ack":
        _need(msg, "id", _is_int(msg.get("id")))
        _need(msg, "ok", type(msg.get("ok")) is bool)
        _need(msg, "names", _is_str_list(msg.get("names", [])))
        ms = msg.get("ms", 0.0)
        _need(msg, "ms", type(ms) in (int, float))
        _need(msg, "unclaimed", _is_str_list(msg.get("unclaimed", [])))
        error = msg.get("error")
        if error is not None:
            _need(msg, "error", type(error) is dict)
            _need(msg, "error.message", type(error.get("message")) is str)
            _need(msg, "error.file", type(error.get("file")) in (str, type(None)))
            _need(msg, "error.line", _is_int(error.get("line")) or error.get("line") is None)
            _need(msg, "error.internal", type(error.get("internal", False)) is bool)
        _need(msg, "error", msg["ok"] or error is not None)
    elif kind in ("ping", "pong"):
        _need(msg, "id", _is_int(msg.get("id")))
    elif kind == "modules":
        _need(msg, "pid", _is_int(msg.get("pid")))
        _need(msg, "names", _is_str_list(msg.get("names")))
        _need(msg, "files", _is_str_list(msg.get("files")))
        _need(msg, "files", len(msg["files"]) == len(msg["names"]))
        _need(msg, "prefixes", _is_str_list(msg.get("prefixes", [])))
    else:
        raise ProtocolError(f"unknown message type {kind!r}")
    return msg


# --- framing --------------------------------------------------------------------------------


def encode(msg: Message, max_frame: int = MAX_FRAME) -> bytes:
    """One frame: length header + compact JSON. Raises ``ProtocolError`` if it would be too big."""
    return encode_frame(msg, max_frame)


def decode_payload(payload: bytes) -> Message:
    """One frame's payload → a validated message, or ``ProtocolError``."""
    return validate(decode_frame(payload))


class FrameDecoder(FrameReader):
    """Sans-IO message reader for both sides: ``feed(bytes)``, then iterate complete messages.

    Holds at most one header plus ``max_frame`` bytes of payload plus one unread chunk.
    """

    __slots__ = ()

    def next_message(self) -> Message | None:
        """The next complete message, ``None`` if more bytes are needed, or ``ProtocolError``."""
        payload = self.next_payload()
        return None if payload is None else decode_payload(payload)

    def __iter__(self) -> Iterator[Message]:
        while (msg := self.next_message()) is not None:
            yield msg
