"""A bare ASGI app for ``uvicorn main:app`` / ``python -m uvicorn main:app``."""

import os

VERSION = "1"


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = f"version={VERSION} pid={os.getpid()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
