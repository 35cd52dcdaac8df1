"""A FastAPI app in the shape of FastAPI's "Templates" tutorial: Jinja2Templates + StaticFiles.

    uvicorn main:app --reload        (or: fastapi dev main.py)

There is no page at ``/``: the app answers 404 there, as the tutorial's does.
"""

import os

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

VERSION = "1"

app = FastAPI()

app.mount("/static", StaticFiles(directory="static"), name="static")

templates = Jinja2Templates(directory="templates")


@app.get("/items/{id}", response_class=HTMLResponse)
async def read_item(request: Request, id: str):
    return templates.TemplateResponse(
        request=request,
        name="item.html",
        context={"id": id, "pid": os.getpid(), "version": VERSION},
    )


@app.get("/about", response_class=HTMLResponse)
async def about(request: Request):
    return templates.TemplateResponse(
        request=request, name="about.html", context={"pid": os.getpid()}
    )


@app.get("/boom")
async def boom():
    raise RuntimeError("boom: a bug in a view")
