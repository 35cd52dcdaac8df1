"""The events that reach the tabs: Server-Sent Events, fanned out to every connected tab.

    hub = Hub()
    tab = hub.join()                        # one per /__pyair/events connection
    hub.broadcast(sse("reload", {}))        # never waits: a stalled tab is dropped instead
    message = await tab.receive.receive()
    hub.leave(tab)

A tab's stream opens with ``greeting(hello)``: the reconnect delay and the state it compares
its page with, so a tab that missed events catches up when it reconnects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["HEARTBEAT_S", "PING", "Hub", "Tab", "greeting", "sse"]

TAB_QUEUE = 64  # events queued per tab; a tab this far behind is dropped and resyncs
HEARTBEAT_S = 15.0
PING = b": ping\n\n"  # a comment now and then finds dead peers
RETRY_MS = 300  # EventSource reconnect delay: quick, so a restarted pyair is found at once


def sse(name: str, data: object) -> bytes:
    """One Server-Sent Event frame."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def greeting(hello: dict[str, Any]) -> bytes:
    """The start of a tab's stream: how soon to reconnect, then the current state."""
    return f"retry: {RETRY_MS}\n\n".encode() + sse("hello", hello)


@dataclass(eq=False)
class Tab:
    """One connected tab: its queue, and the scope of the task writing to it."""

    send: MemoryObjectSendStream[bytes]
    receive: MemoryObjectReceiveStream[bytes]
    scope: anyio.CancelScope


class Hub:
    """Fan-out of events to tabs; broadcasting never waits for any of them.

    Each tab has a bounded queue. A tab whose queue is full is stalled (a paused debugger, a
    suspended laptop lid, a dead peer): it is dropped, and its browser reconnects and catches
    up from the ``hello`` instead of holding everybody else back.
    """

    def __init__(self, queue: int = TAB_QUEUE) -> None:
        self.queue = queue
        self.tabs: set[Tab] = set()
        self.dropped = 0

    def join(self) -> Tab:
        send, receive = anyio.create_memory_object_stream[bytes](self.queue)
        tab = Tab(send, receive, anyio.CancelScope())
        self.tabs.add(tab)
        return tab

    def leave(self, tab: Tab) -> None:
        self.tabs.discard(tab)
        tab.send.close()
        tab.receive.close()

    def broadcast(self, message: bytes) -> None:
        for tab in list(self.tabs):
            try:
                tab.send.send_nowait(message)
            except anyio.WouldBlock:
                self.dropped += 1
                tab.scope.cancel()
                self.leave(tab)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.leave(tab)

    def close_all(self) -> None:
        for tab in list(self.tabs):
            tab.scope.cancel()
            self.leave(tab)
