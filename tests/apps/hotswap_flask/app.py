"""A Flask app started the usual way (``app.run`` without the reloader) on 127.0.0.1:$PORT."""

import os

from flask import Flask, render_template

app = Flask(__name__)


@app.route("/")
def index() -> str:
    return render_template("page.html", pid=os.getpid())


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), use_reloader=False)
