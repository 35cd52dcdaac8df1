"""An aiohttp app (configs/aiohttp.toml) on ``web.run_app``: GET / renders a Jinja2 template.

The port comes from $PORT (8080 by default), as the config's [env] sets it.
"""

import os
from pathlib import Path

import jinja2
from aiohttp import web

env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"))


async def index(request: web.Request) -> web.Response:
    body = env.get_template("index.html").render(pid=os.getpid())
    return web.Response(text=body, content_type="text/html")


app = web.Application()
app.router.add_get("/", index)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8080")), print=None)
