"""A FastAPI app with a lifespan and a slow page, to see how it stops under pyair's agent.

Prints ``PORT <n>`` on stdout once started; /slow touches ``slow.started``, then answers after
0.3 s; the lifespan's shutdown writes ``stopped``. Templates make the agent load (Jinja2).
"""

import asyncio
import contextlib
import os
from pathlib import Path

import jinja2  # noqa: F401 - the agent arms itself when a template engine shows up
from fastapi import FastAPI

HERE = Path(__file__).parent


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    print(f"PORT {os.environ['PORT']}", flush=True)
    yield
    (HERE / "stopped").write_text("lifespan shutdown ran")


app = FastAPI(lifespan=lifespan)


@app.get("/slow")
async def slow() -> dict[str, str]:
    (HERE / "slow.started").touch()
    await asyncio.sleep(0.3)
    return {"done": "yes"}
