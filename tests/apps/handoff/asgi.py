"""A FastAPI app run by uvicorn: `uvicorn asgi:app --port $PORT`."""

import os

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

VERSION = 0

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
def index() -> str:
    return f"{VERSION} {os.getpid()}\n"
