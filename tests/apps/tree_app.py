"""An app with a process tree: a child, a grandchild that called setsid, then serves HTTP.

It writes every pid of its tree to tree.pids, and can ignore SIGINT/SIGTERM (IGNORE_SIGNALS=1).
"""

import os
import signal
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if os.environ.get("IGNORE_SIGNALS"):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

child = subprocess.Popen(["sleep", "300"])
# a grandchild in its own session: out of the app's process group
detached = subprocess.Popen(
    [sys.executable, "-c", "import os, time; os.setsid(); time.sleep(300)"],
)
middle = subprocess.Popen(
    [sys.executable, "-c", "import subprocess; subprocess.Popen(['sleep', '301']).wait()"]
)
with open("tree.pids", "a") as out:
    out.write(f"{os.getpid()} {child.pid} {detached.pid} {middle.pid}\n")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"pid={os.getpid()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
