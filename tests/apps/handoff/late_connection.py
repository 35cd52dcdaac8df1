"""uvicorn, patched as pyair's agent patches it, with a connection that registers only after
the stop signal (accepted in the same loop turn): does stopping tell that one to finish too?

Prints one JSON line: the bytes the client got, and whether the server then closed it.
Run as ``python late_connection.py`` with pyair's package importable.
"""

import asyncio
import json
import signal
import socket

import uvicorn.server
from uvicorn.config import Config
from uvicorn.protocols.http import h11_impl

from supervisor.agent import _servers

_servers.stop_quickly(uvicorn.server)
_servers.answer_fresh_connections(h11_impl)


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late but answered"})


async def main() -> None:
    loop = asyncio.get_running_loop()
    config = Config(app, lifespan="off", http="h11", log_level="warning")
    config.load()
    server = uvicorn.server.Server(config)
    server.handle_exit(signal.SIGTERM, None)  # stopping: uvicorn told its connections already
    ours, client = socket.socketpair()
    await loop.connect_accepted_socket(
        lambda: h11_impl.H11Protocol(config, server.server_state, {}), ours
    )
    client.setblocking(False)
    await loop.sock_sendall(client, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    pause = asyncio.ensure_future(uvicorn.server.asyncio.sleep(0.1))  # shutdown's own pause
    answer, closed = b"", False
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(client, 4096), 1.0):
            answer += chunk
        closed = True
    except asyncio.TimeoutError:  # kept alive: a browser's idle connection would hold the exit
        pass
    await pause
    print(json.dumps({"answer": answer.decode(), "closed": closed}))


asyncio.run(main())
