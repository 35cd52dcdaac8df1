"""An app that leaves an orphan: at every start it launches a daemon that pyair cannot see.

The daemon is started with a clean environment (no PYAIR_TREE), in a session of its own, and
double-forks, so its parent is gone before pyair stops the tree: neither the process group,
the parent links nor the tree token lead to it. Its pid is appended to orphans.pids.
Serves GET / on $PORT.
"""

import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DAEMON = """
import os, sys, time
if os.fork():
    os._exit(0)
with open(sys.argv[1], "a") as out:
    out.write(f"{os.getpid()}\\n")
time.sleep(300)
"""

subprocess.run(
    [sys.executable, "-c", DAEMON, os.path.abspath("orphans.pids")],
    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    start_new_session=True,
    stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
    check=True,
)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"pid={os.getpid()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
