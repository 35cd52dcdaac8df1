"""h11 over an anyio stream: read the next event, send several events in one write.

    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    event = await next_event(conn, stream)          # h11.Request, h11.Data, ... or end of stream
    await send(conn, stream, head, body, end)       # one write: one packet, one syscall

Nothing here knows what is proxied: both sides (the browser's connection and the app's) read
and write through these two functions.
"""

from __future__ import annotations

from typing import Any

import anyio
import h11
from anyio.abc import SocketStream

__all__ = ["MAX_HEAD", "RECV_SIZE", "STREAM_ERRORS", "next_event", "send"]

RECV_SIZE = 65536
MAX_HEAD = 64 * 1024  # request/response head: big cookies fit
# what a stream raises when its peer is gone: the connection is over, nothing to report
STREAM_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


async def next_event(conn: h11.Connection, stream: SocketStream) -> Any:
    """The next h11 event of ``conn``, reading from ``stream`` as needed (EOF included)."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive(RECV_SIZE)
        except STREAM_ERRORS:
            data = b""
        conn.receive_data(data)


async def send(conn: h11.Connection, stream: SocketStream, *events: Any) -> None:
    """Send ``events`` in one write (a head and a small body: one packet, one syscall)."""
    data = b"".join(conn.send(event) or b"" for event in events)
    if data:
        await stream.send(data)
