"""``pyair init``: detect the app in the current directory and write a commented ``.air.toml``.

    $ pyair init
    detected a Flask app in flaskr/__init__.py: wrote .air.toml
      runs       python -m flask --app flaskr run --debug --port 5001
      open       http://127.0.0.1:5000/ (live reload; the app itself listens on port 5001)
      ready      when port 5001 answers HTTP (any status)
      templates  swapped in the running app, no restart

Detected, in this order: Django (``manage.py`` at the root or one level down, as
``django-admin startproject`` makes it); in ``app.py``, ``main.py``, ``server.py``,
``asgi.py``, ``wsgi.py``: FastAPI/Starlette (run by uvicorn, unless the module runs itself),
aiohttp, Flask (``flask run``, an app factory ``create_app`` too, unless it calls
``app.run()``), any other Python script; then a package of the root (``flaskr/__init__.py``
with ``create_app``, ``app/main.py`` with ``app = FastAPI()``, or ``.flaskenv``'s
``FLASK_APP``); then a Node.js app (``package.json``'s main, ``server.js``, ``index.js``,
``app.js``).

Ports: the page you open is pyair's live-reload proxy, on the port you would open without
pyair (``--port``, else the framework's: Flask 5000, FastAPI/Django 8000, aiohttp 8080, Node
3000); the app listens on the next one up (``--app-port`` to pick it). An app that hard-codes
its port in the source keeps it, and the proxy takes the next one up. Readiness needs no URL:
the app is up at its first HTTP answer on its port, whatever the status. It never overwrites
an existing file.
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
PACKAGE_ENTRIES = ("__init__.py", "main.py", "app.py", "asgi.py", "wsgi.py")
NODE_ENTRIES = ("server.js", "index.js", "app.js", "main.js")
DEFAULT_PORTS = {"Flask": 5000, "FastAPI": 8000, "Starlette": 8000, "Django": 8000}
DEFAULT_PORTS |= {"aiohttp": 8080, "Node.js": 3000}
# Directories that never hold the app (a venv, tests, the build's output).
SKIPPED_DIRS = frozenset({"tests", "test", "docs", "node_modules", "venv", "env", "build", "dist"})
SKIPPED_DIRS |= {"site-packages", "__pycache__", "tmp", "static", "templates", "migrations"}


@dataclass(frozen=True)
class Detected:
    kind: str  # "Django", "Flask", "FastAPI", "Starlette", "aiohttp", "Python script", "Node.js"
    entry: str  # the file it was found in (root-relative)
    command: str  # the full_bin line
    templates: bool  # a templates/ directory exists (Django: always assumed)
    port: int | None = None  # where the app listens, if known
    port_env: bool = False  # the app reads $PORT: [env] PORT is written
    notes: tuple[str, ...] = ()
    proxy_port: int | None = None  # where the browser goes: pyair's live-reload proxy

    @property
    def python(self) -> bool:
        return self.kind != "Node.js"

    @property
    def label(self) -> str:
        """ "a Flask app", "an aiohttp app", "a Python script"."""
        if self.kind == "Python script":
            return "a Python script"
        return f"{'an' if self.kind[0] in 'aeiouAEIOU' else 'a'} {self.kind} app"


@dataclass(frozen=True)
class Ports:
    """``pyair init --port`` (the page's) and ``--app-port`` (the app's), as given."""

    browser: int | None = None
    app: int | None = None

    def chosen(self, kind: str) -> tuple[int, int]:
        """(the proxy's port, the app's) for an app whose port the command sets."""
        browser = self.browser or DEFAULT_PORTS.get(kind, 8000)
        return browser, self.app or browser + 1

    def around(self, fixed: int) -> tuple[int, int]:
        """(the proxy's port, the app's) for an app whose source fixes its port."""
        browser = self.browser if self.browser and self.browser != fixed else fixed + 1
        return browser, fixed


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


_ASGI = re.compile(r"^(\w+)\s*(?::\s*\w+\s*)?=\s*(FastAPI|Starlette)\(", re.MULTILINE)
_FLASK_IMPORT = re.compile(r"^\s*(from|import)\s+flask\b", re.MULTILINE)
_FACTORY = re.compile(r"^def\s+(create_app|make_app)\s*\(", re.MULTILINE)
_RUNS_ITSELF = re.compile(r"""__name__\s*==\s*["']__main__["']""")


def _self_chosen(
    kind: str, found_port: int | None, port_env: bool, ports: Ports
) -> tuple[int, int] | None:
    """(the proxy's port, the app's) for an app that runs itself, None when it has none.

    One that reads ``$PORT`` gets it from ``[env]``, so pyair chooses; one that names its port
    (or listens on its framework's default) keeps it, and the proxy takes the next one up.
    """
    if port_env:
        browser = ports.browser or found_port or DEFAULT_PORTS.get(kind, 8000)
        return browser, ports.app or browser + 1
    fixed = found_port or (DEFAULT_PORTS.get(kind) if kind != "Python script" else None)
    return ports.around(fixed) if fixed is not None else None


def _served_by_command(
    kind: str, entry: str, command: str, templates: bool, ports: Ports
) -> Detected:
    """An app whose port is on the command line pyair writes: the proxy goes in front."""
    browser, app = ports.chosen(kind)
    return Detected(kind, entry, command.format(port=app), templates, app, proxy_port=browser)


def _flask_command(target: str) -> str:
    # --debug: the debugger, as Flask's tutorial runs it; pyair's agent switches its reloader off
    return f"python -m flask --app {target} run --debug --port {{port}}"


def _python_app(root: Path, name: str, ports: Ports) -> Detected:
    source = _read(root / name)
    module = name[:-3]
    templates = _has_templates(root)
    runs_itself = _RUNS_ITSELF.search(source) is not None
    found_port, port_env = _source_port(source) if runs_itself else (None, False)

    def script(kind: str, *notes: str) -> Detected:
        found = _self_chosen(kind, found_port, port_env, ports)
        if found is None:
            return Detected(kind, name, f"python {name}", templates, None, False, notes)
        browser, app = found
        return Detected(kind, name, f"python {name}", templates, app, port_env, notes, browser)

    asgi = _ASGI.search(source)
    if asgi and not runs_itself:
        command = f"python -m uvicorn {module}:{asgi.group(1)} --port {{port}}"
        return _served_by_command(asgi.group(2), name, command, templates, ports)
    if asgi:
        reload = ("uvicorn.run(..., reload=True): pyair's agent switches that reloader off",)
        return script(asgi.group(2), *(reload if "reload=True" in source else ()))
    if re.search(r"^\s*(from|import)\s+aiohttp\b", source, re.MULTILINE):
        return script("aiohttp")
    if _FLASK_IMPORT.search(source):
        if not runs_itself:
            return _served_by_command("Flask", name, _flask_command(module), True, ports)
        reloader = "debug=True" in source and "use_reloader=False" not in source
        note = "app.run(debug=True): pyair's agent switches Werkzeug's reloader off"
        return script("Flask", *((note,) if reloader else ()))
    return script("Python script")


def _candidate_dirs(root: Path) -> list[Path]:
    """The root's subdirectories that may hold the app (not hidden, not a venv or tests)."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    return [
        entry
        for entry in entries
        if entry.is_dir()
        and not entry.name.startswith((".", "_"))
        and entry.name not in SKIPPED_DIRS
        and not (entry / "pyvenv.cfg").exists()
    ]


def _django(root: Path, ports: Ports) -> Detected | None:
    """``manage.py`` at the root, or one level down (``django-admin startproject mysite``)."""
    found = [root / "manage.py"] + [d / "manage.py" for d in _candidate_dirs(root)]
    manage = next((path for path in found if path.is_file()), None)
    if manage is None:
        return None
    entry = manage.relative_to(root).as_posix()
    command = f"python {entry} runserver 127.0.0.1:{{port}} --noreload"
    return _served_by_command("Django", entry, command, True, ports)


def _flaskenv_app(root: Path) -> str | None:
    """``FLASK_APP`` from ``.flaskenv`` / ``.env``: what ``flask run`` would load."""
    for name in (".flaskenv", ".env"):
        found = re.search(r"^\s*FLASK_APP\s*=\s*['\"]?([\w.:()]+)", _read(root / name), re.M)
        if found:
            return found.group(1)
    return None


def _package_app(root: Path, ports: Ports) -> Detected | None:
    """A package of the root that holds the app: Flask's ``create_app`` (the tutorial's
    ``flaskr``), or ``app = FastAPI()`` in ``app/main.py`` or a package's ``__init__``."""
    flask_app = _flaskenv_app(root)
    if flask_app is not None:
        entry = ".flaskenv" if (root / ".flaskenv").is_file() else ".env"
        return _served_by_command("Flask", entry, _flask_command(flask_app), True, ports)
    for package in _candidate_dirs(root):
        if not (package / "__init__.py").is_file():
            continue
        templates = _has_templates(root) or _has_templates(package)
        for name in PACKAGE_ENTRIES:
            source = _read(package / name)
            if not source:
                continue
            entry = f"{package.name}/{name}"
            dotted = package.name if name == "__init__.py" else f"{package.name}.{name[:-3]}"
            asgi = _ASGI.search(source)
            if asgi:
                command = f"python -m uvicorn {dotted}:{asgi.group(1)} --port {{port}}"
                return _served_by_command(asgi.group(2), entry, command, templates, ports)
            if _FLASK_IMPORT.search(source) and (_FACTORY.search(source) or "Flask(" in source):
                return _served_by_command("Flask", entry, _flask_command(dotted), True, ports)
    return None


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


def detect(root: Path, port: int | None = None, app_port: int | None = None) -> Detected | None:
    """What kind of app lives in ``root``, and the command that runs it.

    ``port``: ``--port``, the port the browser opens (pyair's proxy); ``app_port``:
    ``--app-port``, where the app listens (default: the next one up).
    """
    ports = Ports(port, app_port)
    django = _django(root, ports)
    if django is not None:
        return django
    for name in PYTHON_ENTRIES:
        if (root / name).is_file():
            return _python_app(root, name, ports)
    package = _package_app(root, ports)
    if package is not None:
        return package
    entry = _node_entry(root)
    if entry is not None:
        found_port, port_env = _source_port(_read(root / entry))
        browser, app = _self_chosen("Node.js", found_port, port_env, ports) or (None, None)
        return Detected("Node.js", entry, f"node {entry}", False, app, port_env, (), browser)
    return None


_COMMAND_NOTES = {
    "Django": "--noreload: pyair is the reloader (without it pyair's agent switches Django's off).",
    "Flask": "--debug keeps Werkzeug's debugger; pyair's agent switches its reloader off.",
    "FastAPI": "No --reload needed: pyair is the reloader (its agent switches uvicorn's off).",
    "Starlette": "No --reload needed: pyair is the reloader (its agent switches uvicorn's off).",
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
    if found.port:
        lines += [
            "# Ready at the app's first HTTP answer on [proxy] app_port, whatever its status",
            "# (a 404 at / is an app that is up). For an app that needs one page to answer",
            "# 2xx/3xx first, set it here:",
        ]
    else:
        lines.append("# Set it to where your app answers; `pyair smoke` needs it (or --url).")
    lines.append(f'# ready_url = "http://127.0.0.1:{found.port or 8000}/healthz"')
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
    if found.port and found.proxy_port:
        lines += [
            "",
            "[proxy]",
            f"# Open http://127.0.0.1:{found.proxy_port}/: pages update in place, CSS without a",
            "# reload, errors as an overlay, requests held while the app restarts.",
            "enabled = true",
            f"proxy_port = {found.proxy_port}",
            "# The app listens here; readiness and the proxy talk to it on this port.",
            f"app_port = {found.port}",
        ]
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


def _port_option(value: int | None, option: str) -> None:
    if value is not None and not 0 < value < 65536:
        raise ConfigError(f"{option}: {value} is not a TCP port", hint="give 1 to 65535")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pyair init", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, default=Path(".air.toml"))
    parser.add_argument(
        "--port", type=int, help="the port you open in the browser (default: the framework's)"
    )
    parser.add_argument(
        "--app-port", type=int, help="the port the app listens on (default: --port + 1)"
    )
    args = parser.parse_args(list(argv))
    target: Path = args.config
    if target.exists():
        raise ConfigError(
            f"{target} already exists", path=target, hint="remove it first to write a new one"
        )
    _port_option(args.port, "--port")
    _port_option(args.app_port, "--app-port")
    if args.port is not None and args.port == args.app_port:
        raise ConfigError(
            f"--port and --app-port are both {args.port}", hint="the proxy needs its own port"
        )
    root = Path.cwd()
    found = detect(root, args.port, args.app_port)
    if found is None:
        raise ConfigError(
            f"no app found in {root} (looked for manage.py, {', '.join(PYTHON_ENTRIES)}, "
            "a package with create_app or FastAPI(), package.json)",
            hint="write .air.toml by hand with [build] full_bin, or cd to your project",
        )
    target.write_text(render(found), encoding="utf-8")
    say = [f"detected {found.label} in {found.entry}: wrote {target}"]
    say.append(f"  runs       {found.command}")
    if found.port and found.proxy_port:
        say.append(
            f"  open       http://127.0.0.1:{found.proxy_port}/ (live reload; the app itself "
            f"listens on port {found.port})"
        )
        say.append(f"  ready      when port {found.port} answers HTTP (any status)")
    else:
        say.append("  ready      unknown: set [build] ready_url (pyair smoke needs it)")
    if found.port_env:
        say.append(f"  env        PORT={found.port} (the app reads $PORT)")
    if found.python and found.templates:
        say.append("  templates  swapped in the running app, no restart")
    say += [f"  note       {note}" for note in found.notes]
    print("\n".join(say), file=sys.stderr)
    return 0
