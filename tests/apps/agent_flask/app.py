"""A Flask app (templates_auto_reload off, the default outside debug) on werkzeug's server.

Prints ``PORT <n>`` once it listens on 127.0.0.1.
"""

import os

from flask import Flask, render_template
from werkzeug.serving import make_server

app = Flask(__name__)


@app.route("/")
def index() -> str:
    return render_template("page.html", pid=os.getpid())


server = make_server("127.0.0.1", 0, app, threaded=True)
print(f"PORT {server.server_port}", flush=True)
server.serve_forever()
