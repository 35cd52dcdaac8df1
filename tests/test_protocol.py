"""Control-socket framing: round trips, partial reads, malformed and oversized frames."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from supervisor import protocol
from supervisor.protocol import FrameDecoder, FrameTooLarge, ProtocolError

MESSAGES = [
    protocol.hello(1234, ["jinja2", "django"]),
    protocol.swap(7, ["/srv/app/templates/page.html", "/srv/app/templates/ü.html"]),
    protocol.ack(7, ok=True, names=["page.html"], ms=1.23456, unclaimed=["/x/static.html"]),
    protocol.ack(8, ok=False, ms=0.5, error={"file": "/a.html", "line": 3, "message": "boom"}),
    protocol.ack(9, ok=False, error={"file": None, "line": None, "message": "x", "internal": True}),
    protocol.ping(1),
    protocol.pong(1),
]


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def drain(decoder: FrameDecoder) -> list[protocol.Message]:
    return list(decoder)


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: str(m["type"]))
def test_round_trip(msg: protocol.Message) -> None:
    decoder = FrameDecoder()
    decoder.feed(protocol.encode(msg))
    assert drain(decoder) == [json.loads(json.dumps(msg))]
    assert decoder.buffered == 0


def test_hello_is_versioned() -> None:
    assert protocol.hello(1, [])["v"] == protocol.PROTOCOL_VERSION == 1


def test_many_frames_fed_one_byte_at_a_time() -> None:
    data = b"".join(protocol.encode(m) for m in MESSAGES)
    decoder = FrameDecoder()
    got: list[protocol.Message] = []
    for i in range(len(data)):
        decoder.feed(data[i : i + 1])
        got.extend(decoder)
    assert got == MESSAGES
    assert decoder.buffered == 0


def test_many_frames_in_one_chunk() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"".join(protocol.encode(m) for m in MESSAGES))
    assert drain(decoder) == MESSAGES


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"hello"',
        b"{}",
        b'{"type": "launch"}',
        b'{"type": "hello", "v": 1, "pid": "12", "engines": []}',
        b'{"type": "hello", "v": true, "pid": 12, "engines": []}',
        b'{"type": "swap", "id": 1, "paths": "/a.html"}',
        b'{"type": "swap", "id": 1, "paths": [1]}',
        b'{"type": "ack", "id": 1, "ok": false, "names": []}',
        b'{"type": "ack", "id": 1, "ok": true, "ms": "1"}',
        b'{"type": "ack", "id": 1, "ok": false, "error": {"line": 1}}',
        b'{"type": "ping"}',
        b"[" * 100_000,
    ],
)
def test_malformed_frame_is_dropped_and_the_stream_goes_on(payload: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed(frame(payload) + protocol.encode(protocol.ping(5)))
    with pytest.raises(ProtocolError) as info:
        decoder.next_message()
    assert not isinstance(info.value, FrameTooLarge)
    assert decoder.next_message() == protocol.ping(5)
    assert decoder.next_message() is None


def test_oversized_header_raises_before_buffering_the_payload() -> None:
    decoder = FrameDecoder(max_frame=1024)
    decoder.feed((100 * 1024 * 1024).to_bytes(4, "big") + b"x" * 4096)
    with pytest.raises(FrameTooLarge) as info:
        decoder.next_message()
    assert info.value.size == 100 * 1024 * 1024
    assert decoder.buffered == 0
    decoder.feed(b"y" * 1_000_000)  # ignored: the stream is out of step now
    assert decoder.buffered == 0
    with pytest.raises(FrameTooLarge):
        decoder.next_message()


def test_garbage_reads_as_an_oversized_header() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(FrameTooLarge):
        decoder.next_message()


def test_frame_at_the_limit_is_fine_and_one_over_is_not() -> None:
    msg = protocol.swap(1, ["x" * 100])
    size = len(protocol.encode(msg)) - protocol.HEADER_SIZE
    decoder = FrameDecoder(max_frame=size)
    decoder.feed(protocol.encode(msg, max_frame=size))
    assert decoder.next_message() == msg
    with pytest.raises(FrameTooLarge):
        protocol.encode(msg, max_frame=size - 1)


def test_partial_frame_waits() -> None:
    data = protocol.encode(protocol.ping(3))
    decoder = FrameDecoder()
    decoder.feed(data[:2])
    assert decoder.next_message() is None
    decoder.feed(data[2:-1])
    assert decoder.next_message() is None
    decoder.feed(data[-1:])
    assert decoder.next_message() == protocol.ping(3)


def test_protocol_imports_only_the_stdlib_and_stays_cheap() -> None:
    code = (
        "import sys; before = set(sys.modules); import supervisor.protocol; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    third_party = [m for m in out if m.split(".")[0] not in sys.stdlib_module_names]
    assert third_party == ["supervisor", "supervisor.childside", "supervisor.protocol"]
    assert "typing" not in out
