"""A Flask app run by its development server: `flask --app flaskapp run --debug --port N`."""

import os

from flask import Flask

VERSION = 0

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return f"{VERSION} {os.getpid()}\n"
