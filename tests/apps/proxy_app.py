"""An app for the proxy's tests, on the standard library's http.server (HTTP/1.1, keep-alive).

    PORT=8001 python proxy_app.py

GET /            a page: "version=<V> pid=<pid>" (counts hits in hits.log)
GET /gzip        a gzip'd page, whatever the request's Accept-Encoding says
GET /fragment    text/html without <html> or </body> (an htmx-style fragment)
GET /cookies     two Set-Cookie headers; the body echoes the request's headers as JSON
POST /echo       the body's length and sha256, read chunked or by Content-Length
                 (?stall=S: read nothing for S seconds first, an app busy elsewhere)
POST /slow?ms=N  the same, reading 64 KiB every N ms (default 1): an app slower than its upload
GET /sse         an event stream: "one", then "two" only after GET /release
GET /big?mb=N    N MiB of zeros, chunked, generated as it is sent
GET /ws          a WebSocket echo (text frames), handshake and framing by hand
START_DELAY=<s>  sleep before listening (an app that is slow to come up)
"""

import base64
import gzip
import hashlib
import json
import os
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "1"
RELEASE = threading.Event()
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def page(body: str) -> bytes:
    return f"<!doctype html><html><head><title>t</title></head><body>{body}</body></html>".encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            with open("hits.log", "a") as hits:
                hits.write("x\n")
            self.send_body(page(f"<p>version={VERSION} pid={os.getpid()}</p>"), "text/html")
        elif path == "/gzip":
            body = gzip.compress(page("<p>compressed</p>"))
            self.send_body(body, "text/html; charset=utf-8", [("Content-Encoding", "gzip")])
        elif path == "/fragment":
            self.send_body(b"<li>item</li>", "text/html")
        elif path == "/cookies":
            body = json.dumps(dict(self.headers.items())).encode()
            cookies = [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")]
            self.send_body(body, "application/json", cookies)
        elif path == "/sse":
            self.stream_events()
        elif path == "/release":
            RELEASE.set()
            self.send_body(b"released", "text/plain")
        elif path == "/big":
            self.send_big(int(self.path.split("mb=", 1)[1]) if "mb=" in self.path else 50)
        elif path == "/ws":
            self.websocket_echo()
        else:
            self.send_error(404)

    def do_POST(self):
        pause = 0.0
        if self.path.startswith("/slow"):
            pause = float(self.path.split("ms=", 1)[1]) / 1000 if "ms=" in self.path else 0.001
        digest = hashlib.sha256()
        size = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                length = int(self.rfile.readline().split(b";")[0], 16)
                if length == 0:
                    self.rfile.readline()
                    break
                chunk = self.rfile.read(length)
                self.rfile.readline()
                digest.update(chunk)
                size += len(chunk)
                time.sleep(pause)
        else:
            remaining = int(self.headers.get("Content-Length", "0"))
            while remaining:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                remaining -= len(chunk)
                time.sleep(pause)
        body = json.dumps({"size": size, "sha256": digest.hexdigest()}).encode()
        self.send_body(body, "application/json")

    def send_body(self, body, content_type, extra=()):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def stream_events(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"data: one\n\n")
        self.wfile.flush()
        RELEASE.wait(30)
        self.wfile.write(b"data: two\n\n")
        self.wfile.flush()
        self.close_connection = True

    def send_big(self, mib):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"\0" * 65536
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        for _ in range(mib * 16):
            self.wfile.write(frame)
        self.wfile.write(b"0\r\n\r\n")

    def websocket_echo(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                break
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", self.rfile.read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 8:  # close: answer it and stop
                self.wfile.write(b"\x88\x00")
                break
            reply = b"echo:" + data
            self.wfile.write(bytes([0x81, len(reply)]) + reply)  # short text frames only
            self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    time.sleep(float(os.environ.get("START_DELAY", "0")))
    server = Server(("127.0.0.1", int(os.environ["PORT"])), Handler)
    with open("starts.log", "a") as log:
        log.write(f"{os.getpid()}\n")
    server.serve_forever()
