"""A Jinja2 app with a child process that, once its source carries the smoke comment, takes
minutes to start: a smoke run is stuck in its restart step until it is interrupted.

Every start appends "<pid> <child pid>" to tree.pids. Serves GET / on $PORT.
"""

import os
import subprocess
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))
env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")))
child = subprocess.Popen(["sleep", "300"])
with open(os.path.join(HERE, "tree.pids"), "a") as out:
    out.write(f"{os.getpid()} {child.pid}\n")

with open(__file__) as me:
    if me.read().endswith("# pyair smoke\n"):  # the comment a smoke run appends
        time.sleep(300)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = env.get_template("index.html").render(pid=os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
