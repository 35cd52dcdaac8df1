"""http.server + Jinja2 (configs/jinja.air.toml): GET / renders templates/index.html.

The port comes from $PORT (8000 by default), as the config's [env] sets it.
"""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))
env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")))
PAGE = env.get_template("index.html")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE.render(pid=os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
