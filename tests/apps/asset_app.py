"""An app that serves its static files the way many do in production: cached for an hour.

    PORT=8001 python asset_app.py

GET /                 a page with a <script> (type=module for .mjs), <link> or <img> for every
                      file under static/ (sorted)
GET /static/<path>    the file, ``Cache-Control: public, max-age=3600`` and a Last-Modified;
                      gzip'd (Vary: Accept-Encoding) when GZIP=1 and the request accepts it;
                      a byte range for ``Range: bytes=a-b``; its own strong mtime ETag with
                      APP_ETAG=1 (and a 304 for If-None-Match with it)
GET /render/<path>    the file with a comment appended: not the file's bytes
GET /api/now          JSON, max-age=60: no file at all

Every request (method and target) is appended to hits.log, so a test can tell what reached
the app, and how.
"""

import email.utils
import gzip
import html
import mimetypes
import os
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path.cwd()
STATIC = HERE / "static"
MAX_AGE = "public, max-age=3600"


def page() -> bytes:
    tags = []
    for path in sorted(p for p in STATIC.rglob("*") if p.is_file()):
        url = "/static/" + path.relative_to(STATIC).as_posix()
        if path.suffix == ".js":
            tags.append(f'<script src="{url}"></script>')
        elif path.suffix == ".mjs":
            tags.append(f'<script type="module" src="{url}"></script>')
        elif path.suffix == ".css":
            tags.append(f'<link rel="stylesheet" href="{url}">')
        elif path.suffix in (".svg", ".png"):
            tags.append(f'<img src="{url}" alt="">')
    body = "\n".join(tags)
    return (
        "<!doctype html><html><head><title>assets</title></head>"
        f"<body><h1>{html.escape(os.environ.get('TITLE', 'assets'))}</h1>\n{body}\n</body></html>"
    ).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall

    def do_GET(self) -> None:
        self.answer(body=True)

    def do_HEAD(self) -> None:
        self.answer(body=False)

    def answer(self, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        with open(HERE / "hits.log", "a") as hits:
            hits.write(f"{self.command} {self.path}\n")
        if path == "/":
            self.send(200, page(), "text/html; charset=utf-8", [("Cache-Control", MAX_AGE)], body)
        elif path.startswith("/static/"):
            self.static(STATIC / path[len("/static/") :], body)
        elif path.startswith("/render/"):
            data = (STATIC / path[len("/render/") :]).read_bytes() + b"\n/* rendered */\n"
            self.send(200, data, "text/javascript", [("Cache-Control", MAX_AGE)], body)
        elif path == "/api/now":
            data = f'{{"now": {time.time()}}}'.encode()
            self.send(200, data, "application/json", [("Cache-Control", "max-age=60")], body)
        else:
            self.send(404, b"not found", "text/plain", [], body)

    def static(self, file: Path, body: bool) -> None:
        if not file.is_file():
            self.send(404, b"not found", "text/plain", [], body)
            return
        stat = file.stat()
        data = file.read_bytes()
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix in (".js", ".mjs"):
            kind = "text/javascript"
        extra = [
            ("Cache-Control", MAX_AGE),
            ("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True)),
        ]
        if os.environ.get("APP_ETAG"):
            tag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
            extra.append(("ETag", tag))
            if self.headers.get("If-None-Match") == tag:
                self.send(304, b"", kind, extra, False)
                return
        ranged = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if ranged:
            first, last = int(ranged[1]), min(int(ranged[2]), len(data) - 1)
            extra.append(("Content-Range", f"bytes {first}-{last}/{len(data)}"))
            self.send(206, data[first : last + 1], kind, extra, body)
            return
        if os.environ.get("GZIP"):
            extra.append(("Vary", "Accept-Encoding"))
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                data = gzip.compress(data)
                extra.append(("Content-Encoding", "gzip"))
        self.send(200, data, kind, extra, body)

    def send(self, status: int, data: bytes, kind: str, extra: list, body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        if status != 304:
            self.send_header("Content-Length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if body and status != 304:
            self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
