"""pyair's demo: a small Jinja2 site on the standard library's http.server.

    $ python app.py            # http://127.0.0.1:8000 (PORT to change it)

Edit templates/page.html, static/style.css or this file while `make dev` runs.
"""

from __future__ import annotations

import os
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).parent
PORT = int(os.environ.get("PORT", "8000"))
STARTED = time.strftime("%H:%M:%S")

# auto_reload is off on purpose: pyair swaps changed templates in place, no stat per request.
env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(),
    auto_reload=False,
)
GREETING = "Hello from pyair's demo"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/static/"):
            self.send_static(self.path[len("/static/") :].split("?", 1)[0])
            return
        if self.path.split("?", 1)[0] != "/":
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        html = env.get_template("page.html").render(
            greeting=GREETING, pid=os.getpid(), started=STARTED
        )
        self.send_body(html.encode(), "text/html; charset=utf-8")

    def send_static(self, name: str) -> None:
        path = (HERE / "static" / name).resolve()
        if not path.is_file() or (HERE / "static").resolve() not in path.parents:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        self.send_body(path.read_bytes(), "text/css" if name.endswith(".css") else "text/plain")

    def send_body(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the console for pyair's lines


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", PORT), Handler)
    print(f"demo serving on http://127.0.0.1:{PORT} (pid {os.getpid()})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
