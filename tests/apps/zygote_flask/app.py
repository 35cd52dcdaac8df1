"""A Flask app that records, at every start, what was already imported before its imports.

starts.jsonl gets one line per start: the pid, whether flask and the app's own helper module
were in sys.modules before this file imported them (warm: flask yes, helper never), how many
modules were loaded at the first line, a random number, and under which name pyair's agent
was loaded.
"""

import json
import os
import random
import sys

BEFORE = {"flask": "flask" in sys.modules, "helper": "helper" in sys.modules}
# Where pyair's agent was loaded: a cold start loads it as "supervisor", a zygote under its
# private name before it forks (then the app only arms it).
AGENT = next((n for n in ("supervisor", "_pyair_supervisor") if n + ".agent" in sys.modules), "")
MODULES_AT_START = len(sys.modules)

import helper  # noqa: E402
from flask import Flask  # noqa: E402

VERSION = "1"

app = Flask(__name__)


@app.route("/")
def index() -> str:
    return f"version={VERSION} pid={os.getpid()} helper={helper.LOADS}"


with open("starts.jsonl", "a") as out:
    record = {
        "pid": os.getpid(),
        "before": BEFORE,
        "modules": MODULES_AT_START,
        "random": random.random(),
        "main": __name__,
        "argv0": sys.argv[0],
        "agent": AGENT,
    }
    out.write(json.dumps(record) + "\n")

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), use_reloader=False)
