"""A home-made template engine (string.Template, parsed once and cached) hooked in with
``supervisor.agent.register``. Listens on 127.0.0.1:$PORT (any free port when unset) and prints
``PORT <n>`` once it does.
"""

import os
import string
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "templates")


class TplSyntaxError(Exception):
    def __init__(self, message: str, filename: str, lineno: int) -> None:
        super().__init__(message)
        self.filename = filename
        self.lineno = lineno


def compile_file(path: str) -> string.Template:
    with open(path, encoding="utf-8") as f:
        source = f.read()
    template = string.Template(source)
    if not template.is_valid():
        for number, line in enumerate(source.splitlines(), 1):
            if not string.Template(line).is_valid():
                raise TplSyntaxError("invalid placeholder", path, number)
        raise TplSyntaxError("invalid placeholder", path, 1)
    return template


CACHE = {name: compile_file(os.path.join(TEMPLATES, name)) for name in os.listdir(TEMPLATES)}


def swap(paths: list[str]) -> list[str]:
    mine = {os.path.basename(p): p for p in paths if os.path.dirname(p) == TEMPLATES}
    fresh = {name: compile_file(path) for name, path in mine.items()}  # all or nothing
    CACHE.update(fresh)
    return sorted(fresh)


try:
    from supervisor.agent import register
except ImportError:  # not under pyair
    pass
else:
    register(swap)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = CACHE["page.tpl"].substitute(pid=os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


server = Server(("127.0.0.1", int(os.environ.get("PORT", "0"))), Handler)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
