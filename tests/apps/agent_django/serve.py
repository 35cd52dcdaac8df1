"""A small Django project (DEBUG=True, so the cached template loader is on) on wsgiref.

Prints ``PORT <n>`` once it listens on 127.0.0.1.
"""

import os
from wsgiref.simple_server import WSGIRequestHandler, make_server

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

from django.core.wsgi import get_wsgi_application


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=QuietHandler)
print(f"PORT {server.server_port}", flush=True)
server.serve_forever()
