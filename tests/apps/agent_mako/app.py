"""Mako on http.server (filesystem_checks off, so only the agent can refresh it).

Prints ``PORT <n>`` once it listens on 127.0.0.1.
"""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mako.lookup import TemplateLookup

HERE = os.path.dirname(os.path.abspath(__file__))
lookup = TemplateLookup(directories=[os.path.join(HERE, "templates")], filesystem_checks=False)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = lookup.get_template("page.html").render(pid=os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
