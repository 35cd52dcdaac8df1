"""A Flask app (configs/flask.toml) run by ``flask run``: GET / renders templates/index.html."""

import os

from flask import Flask, render_template

app = Flask(__name__)


@app.route("/")
def index() -> str:
    return render_template("index.html", pid=os.getpid())
