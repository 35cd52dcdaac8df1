"""``pyair init``: detect the app in the current directory and write a commented ``.air.toml``.

    $ pyair init
    detected a Flask app in app.py: wrote .air.toml
      runs       python -m flask --app app run --port 5000
      ready      when http://127.0.0.1:5000/ answers 2xx/3xx
      templates  swapped in the running app, no restart

Detected, in this order: Django (``manage.py``); in ``app.py``, ``main.py``, ``server.py``,
``asgi.py``, ``wsgi.py``: FastAPI/Starlette (run by uvicorn, unless the module runs itself),
aiohttp, Flask (``flask run``, unless it calls ``app.run()``), any other Python script; then a
Node.js app (``package.json``'s main, ``server.js``, ``index.js``, ``app.js``). The port is
``--port``, else read from the source (``$PORT`` with its default, ``port=8080``,
``listen(3000)``), else the framework's default; a ``$PORT`` the app reads goes into ``[env]``.
It never overwrites an existing file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

PYTHON_ENTRIES = ("app.py", "main.py", "server.py", "asgi.py", "wsgi.py")
NODE_ENTRIES = ("server.js", "index.js", "app.js", "main.js")


@dataclass(frozen=True)
class Detected:
    kind: str  # "Django", "Flask", "FastAPI", "Starlette", "aiohttp", "Python script", "Node.js"
    entry: str  # the file it was found in
    command: str  # the full_bin line
    templates: bool  # a templates/ directory exists (Django: always assumed)
    port: int | None = None  # where the app listens, if known
    port_env: bool = False  # the app reads $PORT: [env] PORT is written
    notes: tuple[str, ...] = ()

    @property
    def python(self) -> bool:
        return self.kind != "Node.js"

    @property
    def label(self) -> str:
        """ "a Flask app", "an aiohttp app", "a Python script"."""
        if self.kind == "Python script":
            return "a Python script"
        return f"{'an' if self.kind[0] in 'aeiouAEIOU' else 'a'} {self.kind} app"

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/" if self.port else ""


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


_PY_PORT_ENV = re.compile(
    r"""(?:environ\.get\(|environ\[|getenv\()\s*["']PORT["']\s*\]?\s*(?:,\s*["']?(\d{2,5}))?"""
)
_JS_PORT_ENV = re.compile(r"""process\.env\.PORT\b(?:\s*(?:\|\||\?\?)\s*["']?(\d{2,5}))?""")
_PORT_LITERAL = re.compile(
    r"""\bport\s*[=:]\s*(\d{2,5})\b"""  # run_app(app, port=8080), app.run(port=5000)
    r"""|\.listen\(\s*(\d{2,5})\b"""  # server.listen(3000)
    r"""|\(\s*["'][\w.:]*["']\s*,\s*(\d{2,5})\s*\)""",  # ("127.0.0.1", 8000)
    re.IGNORECASE,
)


def _source_port(source: str) -> tuple[int | None, bool]:
    """(the port the source names, whether it reads it from $PORT)."""
    env = _PY_PORT_ENV.search(source) or _JS_PORT_ENV.search(source)
    if env:
        return (int(env.group(1)) if env.group(1) else None), True
    literal = _PORT_LITERAL.search(source)
    if literal:
        return int(next(group for group in literal.groups() if group)), False
    return None, False


def _has_templates(root: Path) -> bool:
    return (root / "templates").is_dir() or any(root.glob("*/templates"))


def _python_app(root: Path, name: str, port: int | None) -> Detected:
    source = _read(root / name)
    module = name[:-3]
    templates = _has_templates(root)
    runs_itself = re.search(r"""__name__\s*==\s*["']__main__["']""", source) is not None
    found_port, port_env = _source_port(source) if runs_itself else (None, False)
    chosen = port or found_port

    def script(kind: str, default: int | None, *notes: str) -> Detected:
        return Detected(kind, name, f"python {name}", templates, chosen or default, port_env, notes)

    asgi = re.search(r"^(\w+)\s*(?::\s*\w+\s*)?=\s*(FastAPI|Starlette)\(", source, re.MULTILINE)
    if asgi and not runs_itself:
        listen = port or 8000
        command = f"python -m uvicorn {module}:{asgi.group(1)} --port {listen}"
        return Detected(asgi.group(2), name, command, templates, listen)
    if asgi:
        reload = ("uvicorn.run(..., reload=True) starts uvicorn's own reloader: drop it",)
        return script(asgi.group(2), 8000, *(reload if "reload=True" in source else ()))
    if re.search(r"^\s*(from|import)\s+aiohttp\b", source, re.MULTILINE):
        return script("aiohttp", 8080)
    if re.search(r"^\s*(from|import)\s+flask\b", source, re.MULTILINE):
        if not runs_itself:
            listen = port or 5000
            command = f"python -m flask --app {module} run --port {listen}"
            return Detected("Flask", name, command, True, listen)
        reloader = "debug=True" in source and "use_reloader=False" not in source
        note = "app.run(debug=True) starts Werkzeug's reloader: add use_reloader=False"
        return script("Flask", 5000, *((note,) if reloader else ()))
    return script("Python script", None)


def _node_entry(root: Path) -> str | None:
    package = root / "package.json"
    if package.is_file():
        try:
            data = json.loads(_read(package))
        except ValueError:
            data = {}
        start = str(data.get("scripts", {}).get("start", "")) if isinstance(data, dict) else ""
        match = re.fullmatch(r"node\s+(\S+\.[cm]?js)", start.strip())
        main = match.group(1) if match else data.get("main") if isinstance(data, dict) else None
        if isinstance(main, str) and (root / main).is_file():
            return main
    return next((name for name in NODE_ENTRIES if (root / name).is_file()), None)


def detect(root: Path, port: int | None = None) -> Detected | None:
    """What kind of app lives in ``root``, and the command that runs it (``port``: --port)."""
    if (root / "manage.py").is_file():
        listen = port or 8000
        command = f"python manage.py runserver 127.0.0.1:{listen} --noreload"
        return Detected("Django", "manage.py", command, True, listen)
    for name in PYTHON_ENTRIES:
        if (root / name).is_file():
            return _python_app(root, name, port)
    entry = _node_entry(root)
    if entry is not None:
        found_port, port_env = _source_port(_read(root / entry))
        return Detected(
            "Node.js", entry, f"node {entry}", False, port or found_port or 3000, port_env
        )
    return None


_COMMAND_NOTES = {
    "Django": "--noreload: pyair is the reloader (Django's would fork a second process).",
    "Flask": "No --debug: pyair restarts the app; Werkzeug's reloader would add a process.",
    "FastAPI": "No --reload: pyair is the reloader; uvicorn's would add a process.",
    "Starlette": "No --reload: pyair is the reloader; uvicorn's would add a process.",
    "Node.js": "pyair runs any command: node, npm start, a compiled binary.",
}


_WATCHED = {
    False: '"py", "html", "jinja", "jinja2", "j2", "css", "js"',
    True: '"py", "html", "txt", "css", "js"',  # Django
}


def render(found: Detected) -> str:
    """The commented ``.air.toml`` for ``found``."""
    lines = [
        f"# pyair config for {found.label} (detected by `pyair init` in {found.entry}).",
        "# Keys are Go air's (https://github.com/air-verse/air); durations are ms or "
        'strings like "2s".',
        "# Run `pyair` to develop, `pyair smoke` in CI to check the whole reload loop.",
        'root = "."',
        'tmp_dir = "tmp"',
        "",
        "[build]",
        "# Runs before every (re)start; when it fails, the app that is running keeps serving.",
        'cmd = ""',
        "# How to start the app. `python` is pyair's venv interpreter when pyair runs from one.",
    ]
    if found.kind in _COMMAND_NOTES:
        lines.append(f"# {_COMMAND_NOTES[found.kind]}")
    lines.append(f'full_bin = "{found.command}"')
    lines.append(
        "# Ready when this URL answers 2xx/3xx: pyair logs it, `pyair smoke` waits for it."
    )
    if found.ready_url:
        lines.append(f'ready_url = "{found.ready_url}"')
    else:
        lines.append("# Set it to where your app answers; `pyair smoke` needs it (or --url).")
        lines.append('# ready_url = "http://127.0.0.1:8000/"')
    lines.append('ready_timeout = "15s"' if found.kind == "Django" else 'ready_timeout = "10s"')
    if found.python:
        lines += [
            "# A .py change restarts the app; a template change is swapped inside the running",
            "# app by pyair's agent (Jinja2, Django, Mako), without a restart.",
            f"include_ext = [{_WATCHED[found.kind == 'Django']}]",
        ]
    else:
        lines += [
            "# Any change to these restarts the app (node_modules is never watched).",
            'include_ext = ["js", "mjs", "cjs", "ts", "json", "html", "ejs", "css"]',
        ]
    excluded = {"Django": ', "media", "staticfiles"', "Flask": ', "instance"'}.get(found.kind, "")
    lines += [
        f'exclude_dir = ["tmp", "static/vendor"{excluded}]',
        "# Quiet time (ms) after the last change before acting.",
        "delay = 10",
        "# SIGTERM (SIGINT when true) to the app's whole process tree; SIGKILL after kill_delay.",
        "send_interrupt = false",
        'kill_delay = "500ms"',
        "",
        "[templates]",
    ]
    if found.python:
        extensions = (
            '"html", "txt"' if found.kind == "Django" else '"html", "jinja", "jinja2", "j2"'
        )
        lines += [
            "# These files are templates: swapped in the running app, never a restart.",
            f"include_ext = [{extensions}]",
            "# When no agent answers (the app uses no supported engine): restart instead.",
            'on_no_agent = "restart"',
        ]
    else:
        lines += [
            "# Template hot-swap needs pyair's agent in a Python app: here every change restarts.",
            "include_ext = []",
        ]
    if found.port_env and found.port:
        lines += ["", "[env]", "# The app reads its port from $PORT.", f'PORT = "{found.port}"']
    lines += ["", "[log]", "time = false", "", "[misc]", "clean_on_exit = false", ""]
    lines += _COMPANIONS_EXAMPLE
    return "\n".join(lines)


# Commented out: the other processes of a dev loop, for the user to adapt (tested uncommented).
_COMPANIONS_EXAMPLE = [
    "# Commands run when their own files change (air's [[build.rules]]); such a file never",
    "# restarts the app. Uncomment and adapt:",
    "# [[build.rules]]",
    '# name = "css"',
    '# cmd = "npx tailwindcss -i styles/input.css -o static/site.css"',
    '# include_dir = ["styles"]',
    '# include_ext = ["css"]',
    "",
    "# Processes beside the app, each with its own prefix, colour and process tree; Ctrl-C",
    '# stops them all. restart: "app" (with the app, the default), "files" (on its own',
    '# include_ext / include_dir / include_file), "never" (it watches by itself).',
    "# A process that crashes is rerun, with back-off.",
    "# [[process]]",
    '# name = "worker"',
    '# cmd = "python -m celery -A proj worker -l info"',
    "#",
    "# [[process]]",
    '# name = "tailwind"',
    '# cmd = "npx tailwindcss -i styles/input.css -o static/site.css --watch"',
    '# restart = "never"',
    "",
]


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pyair init", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, default=Path(".air.toml"))
    parser.add_argument("--port", type=int, help="the port the app listens on (default: detected)")
    args = parser.parse_args(list(argv))
    target: Path = args.config
    if target.exists():
        raise ConfigError(
            f"{target} already exists", path=target, hint="remove it first to write a new one"
        )
    if args.port is not None and not 0 < args.port < 65536:
        raise ConfigError(f"--port: {args.port} is not a TCP port", hint="give 1 to 65535")
    root = Path.cwd()
    found = detect(root, args.port)
    if found is None:
        raise ConfigError(
            f"no app found in {root} (looked for manage.py, {', '.join(PYTHON_ENTRIES)}, "
            "package.json)",
            hint="write .air.toml by hand with [build] full_bin, or cd to your project",
        )
    target.write_text(render(found), encoding="utf-8")
    say = [f"detected {found.label} in {found.entry}: wrote {target}"]
    say.append(f"  runs       {found.command}")
    if found.ready_url:
        say.append(f"  ready      when {found.ready_url} answers 2xx/3xx")
    else:
        say.append("  ready      unknown: set [build] ready_url (pyair smoke needs it)")
    if found.port_env:
        say.append(f"  env        PORT={found.port} (the app reads $PORT)")
    if found.python and found.templates:
        say.append("  templates  swapped in the running app, no restart")
    say += [f"  note       {note}" for note in found.notes]
    print("\n".join(say), file=sys.stderr)
    return 0
