"""Plain Jinja2 on http.server: auto_reload=False (unless AGENT_TEST_AUTO_RELOAD=1) and a
module-level Template the app keeps.

Prints ``PORT <n>`` once it listens on 127.0.0.1. Routes:
  /       the kept ``PAGE`` object (extends base.html)
  /child  a fresh ``env.get_template("child.html")`` (extends base.html, includes part.html)
"""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))
env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
    auto_reload=os.environ.get("AGENT_TEST_AUTO_RELOAD") == "1",
)
PAGE = env.get_template("page.html")  # kept for the app's whole life


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/":
            body = PAGE.render(pid=os.getpid())
        elif self.path == "/child":
            body = env.get_template("child.html").render(pid=os.getpid())
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
