"""Plain Jinja2 on http.server for the end-to-end hot-swap tests (run by a real pyair).

auto_reload=False and a module-level Template the app keeps, so only pyair's agent can make
an edit show without a restart. Listens on 127.0.0.1:$PORT; every start appends its pid to
starts.log. Routes:
  /       the kept ``PAGE`` (extends base.html)
  /child  a fresh ``env.get_template("child.html")`` (extends base.html)
Bodies end with ``site=<...>``: what the app's own sitecustomize left in the environment.
"""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))
env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")), auto_reload=False
)
PAGE = env.get_template("page.html")  # kept for the app's whole life


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        site = os.environ.get("HOTSWAP_SITECUSTOMIZE", "none")
        if self.path == "/":
            body = PAGE.render(pid=os.getpid(), site=site)
        elif self.path == "/child":
            body = env.get_template("child.html").render(pid=os.getpid(), site=site)
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


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", int(os.environ["PORT"])), Handler)
    with open("starts.log", "a") as log:
        log.write(f"{os.getpid()}\n")
    server.serve_forever()
