"""Jinja2 loader coverage for the agent's swap, in one process and without a socket.

    python check.py WORKDIR   ->  prints one JSON object (see the end of this file)

Arms the agent's import hooks, then builds environments with each kind of loader, keeps a
Template from each, edits the files, calls the agent's swap directly and reports what renders.
"""

import json
import os
import sys

from supervisor import agent

agent.install_hooks()  # what start() does, minus the socket

import jinja2  # noqa: E402
from jinja2 import (  # noqa: E402
    BaseLoader,
    ChoiceLoader,
    DictLoader,
    Environment,
    FileSystemLoader,
    FunctionLoader,
    PackageLoader,
    PrefixLoader,
)

from supervisor.agent import _runtime  # noqa: E402

root = os.path.abspath(sys.argv[1])


def path(rel: str) -> str:
    return os.path.join(root, rel)


def write(rel: str, text: str) -> str:
    os.makedirs(os.path.dirname(path(rel)), exist_ok=True)
    with open(path(rel), "w", encoding="utf-8") as f:
        f.write(text)
    return path(rel)


FILES = {
    "a/page.html": "A1",
    "b/page.html": "B1",  # shadowed by a/page.html in the ChoiceLoader
    "b/only_b.html": "OB1",
    "pre/x.html": "X1",
    "func/f.html": "F1",
    "mypkg/__init__.py": "",
    "mypkg/templates/p.html": "P1",
    "named/n.html": "N1",
    "anon/c.html": "C1",
}
for rel, text in FILES.items():
    write(rel, text)
sys.path.insert(0, root)


def load_func(name: str) -> tuple[str, str, object]:
    with open(path("func/" + name), encoding="utf-8") as f:
        return f.read(), path("func/" + name), lambda: True


class NamedLoader(BaseLoader):
    """An app's own loader that reports filenames: found through loaded templates."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, None]:
        with open(path("named/" + template), encoding="utf-8") as f:
            return f.read(), path("named/" + template), None


class AnonLoader(BaseLoader):
    """An app's own loader without filenames: the agent can only clear the cache."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, None, None]:
        with open(path("anon/" + template), encoding="utf-8") as f:
            return f.read(), None, None


envs = {
    "choice": Environment(
        loader=ChoiceLoader([FileSystemLoader(path("a")), FileSystemLoader(path("b"))]),
        auto_reload=False,
    ),
    "prefix": Environment(
        loader=PrefixLoader({"pre": FileSystemLoader(path("pre"))}), auto_reload=False
    ),
    "package": Environment(loader=PackageLoader("mypkg"), auto_reload=False),
    "func": Environment(loader=FunctionLoader(load_func), auto_reload=False),
    "nocache": Environment(loader=FileSystemLoader(path("a")), cache_size=0),
    "named": Environment(loader=NamedLoader(), auto_reload=False),
    "anon": Environment(loader=AnonLoader(), auto_reload=False),
    "dict": Environment(loader=DictLoader({"d.html": "D1"})),
}
envs["overlay"] = envs["choice"].overlay()
NAMES = {
    "choice": "page.html",
    "choice_b": "only_b.html",
    "prefix": "pre/x.html",
    "package": "p.html",
    "func": "f.html",
    "nocache": "page.html",
    "named": "n.html",
    "anon": "c.html",
    "dict": "d.html",
    "overlay": "page.html",
}


def env_of(key: str) -> Environment:
    return envs["choice" if key == "choice_b" else key]


kept = {key: env_of(key).get_template(name) for key, name in NAMES.items()}


def snapshot() -> dict[str, dict[str, str]]:
    return {
        "kept": {key: t.render() for key, t in kept.items()},
        "fresh": {key: env_of(key).get_template(NAMES[key]).render() for key in NAMES},
    }


report: dict[str, object] = {"before": snapshot()}

# 1. edit every file to v2 and swap them all
changed = [write(rel, text.replace("1", "2")) for rel, text in FILES.items() if text]
report["ack_all"] = _runtime.swap(1, changed)
report["after_all"] = snapshot()

# 2. only the shadowed b/page.html changes: nothing that serves page.html may change
report["ack_shadowed"] = _runtime.swap(2, [write("b/page.html", "B3")])
report["after_shadowed"] = snapshot()

# 3. a syntax error in one of two files: neither swaps
good = write("a/page.html", "A4")
bad = write("pre/x.html", "X4\n{% for %}")
report["ack_error"] = _runtime.swap(3, [good, bad])
report["after_error"] = snapshot()

# 4. a deleted template is evicted (the next get_template says not found)
os.remove(path("b/only_b.html"))
report["ack_deleted"] = _runtime.swap(4, [path("b/only_b.html")])
try:
    envs["choice"].get_template("only_b.html")
    report["deleted_fresh"] = "still served"
except jinja2.TemplateNotFound:
    report["deleted_fresh"] = "not found"

print(json.dumps(report))
