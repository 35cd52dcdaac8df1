"""A stdlib server that stops the way uvicorn and gunicorn do: on SIGTERM it closes its
listener at once, lets the requests in flight finish for DRAIN_S, then exits."""

import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = 0
PORT = int(os.environ["PORT"])
DRAIN_S = float(os.environ.get("DRAIN_S", "0.3"))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{VERSION} {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
# SIGTERM wakes the main thread through a pipe the C-level handler writes to, whichever
# thread the kernel gave the signal to. A Python handler alone (say, Event.set()) runs only
# once the main thread wakes by itself: a request thread starting at the wrong moment takes
# the signal and the main thread sleeps on, serving, until pyair kills it.
wake_read, wake_write = os.pipe()
os.set_blocking(wake_write, False)
signal.set_wakeup_fd(wake_write)
signal.signal(signal.SIGTERM, lambda signum, frame: None)
threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
print(f"serving on {PORT}", flush=True)
os.read(wake_read, 1)  # until a signal
server.shutdown()  # no more accept()
server.server_close()  # the listener is closed: a plain restart refuses from here on
time.sleep(DRAIN_S)  # requests in flight finish
