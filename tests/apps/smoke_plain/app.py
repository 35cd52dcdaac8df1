"""An app with a template but no template engine: it reads templates/index.html itself.

pyair's agent has nothing to hook, so a template change can only restart it.
Serves GET / on $PORT.
"""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "templates", "index.html")) as page:
    TEMPLATE = page.read()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = TEMPLATE.replace("$pid", str(os.getpid())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
