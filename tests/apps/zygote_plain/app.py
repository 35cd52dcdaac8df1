"""An http.server app that imports the modules named in $IMPORTS and serves their VALUEs.

starts.jsonl gets one line per start: the pid and which of them were imported already.
"""

import importlib
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAMES = [name for name in os.environ.get("IMPORTS", "").split(",") if name]
BEFORE = {name: name in sys.modules for name in NAMES}
MODULES = [importlib.import_module(name) for name in NAMES]
VERSION = "1"

with open("starts.jsonl", "a") as out:
    out.write(json.dumps({"pid": os.getpid(), "before": BEFORE}) + "\n")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        values = ",".join(str(getattr(module, "VALUE", "-")) for module in MODULES)
        body = f"version={VERSION} pid={os.getpid()} values={values}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
