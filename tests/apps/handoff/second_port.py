"""Binds two ports: PORT (pyair holds it) and OTHER_PORT (its own, never adopted)."""

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = 0


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        port = self.server.server_address[1]
        body = f"{VERSION} {os.getpid()} {port} {self.server.socket.fileno()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


main = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
other = ThreadingHTTPServer(("127.0.0.1", int(os.environ["OTHER_PORT"])), Handler)
threading.Thread(target=other.serve_forever, daemon=True).start()
main.serve_forever()
