"""A tiny http.server app for end-to-end tests: GET / answers "version=<V> pid=<pid>".

Every start appends its pid to starts.log (so tests count restarts), PORT sets the port.
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "1"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        greeting = os.environ.get("GREETING", "")
        args = " ".join(sys.argv[1:])
        body = f"version={VERSION} pid={os.getpid()} env={greeting} args={args}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", int(os.environ["PORT"])), Handler)
    with open("starts.log", "a") as log:
        log.write(f"{os.getpid()}\n")
    server.serve_forever()
