"""Run as ``python -S serve.py`` from a shell: no site, so no sitecustomize and no agent.

Stdlib only; reads its template once at start and serves it on 127.0.0.1:$PORT. Every start
appends its pid to starts.log.
"""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "templates", "page.html"), encoding="utf-8") as f:
    PAGE = f.read()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = PAGE.replace("{{ pid }}", str(os.getpid())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", int(os.environ["PORT"])), Handler)
    with open("starts.log", "a") as log:
        log.write(f"{os.getpid()}\n")
    server.serve_forever()
