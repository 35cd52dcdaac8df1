"""``pyair init``: detect the app in the current directory and write a commented ``.air.toml``.

    $ pyair init
    detected a Flask app in app.py: wrote .air.toml

It never overwrites an existing file.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class Detected:
    kind: str  # "Django", "Flask", "FastAPI", "Starlette", "aiohttp", "Python script"
    entry: str  # the file it was found in
    command: str  # the full_bin line
    templates: bool


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def detect(root: Path) -> Detected | None:
    """What kind of app lives in ``root``, and the command that runs it."""
    has_templates = (root / "templates").is_dir() or any(root.glob("*/templates"))
    if (root / "manage.py").is_file():
        return Detected("Django", "manage.py", "python manage.py runserver --noreload", True)
    for name in ("app.py", "main.py", "server.py", "asgi.py", "wsgi.py"):
        path = root / name
        if not path.is_file():
            continue
        source = _read(path)
        module = name[:-3]
        asgi = re.search(r"^(\w+)\s*=\s*(FastAPI|Starlette)\(", source, re.MULTILINE)
        runs_itself = "__main__" in source
        if asgi and not runs_itself:
            command = f"python -m uvicorn {module}:{asgi.group(1)} --port 8000"
            return Detected(asgi.group(2), name, command, has_templates)
        if re.search(r"^\s*(from|import)\s+aiohttp", source, re.MULTILINE):
            return Detected("aiohttp", name, f"python {name}", has_templates)
        if re.search(r"^\s*(from|import)\s+flask", source, re.MULTILINE) and not runs_itself:
            command = f"python -m flask --app {module} run --port 5000"
            return Detected("Flask", name, command, True)
        kind = "Flask" if "flask" in source.lower() else "Python script"
        return Detected(kind, name, f"python {name}", has_templates)
    return None


TEMPLATE = """\
# pyair config for a {kind} app (detected in {entry}).
# Keys follow Go's air (https://github.com/air-verse/air); durations are ms or "2s" strings.
root = "."
tmp_dir = "tmp"

[build]
# Optional build step, run before every (re)start; if it fails the old app keeps serving.
cmd = ""
# How to start the app (a shell line). `python` is the venv's interpreter when pyair runs from one.
full_bin = "{command}"
# Watched extensions; .py changes restart, template changes are swapped in place.
include_ext = ["py", "html", "htm", "jinja", "jinja2", "j2", "css", "js"]
exclude_dir = ["assets", "tmp", "vendor", "testdata", "node_modules", "static/vendor"]
# Quiet window (ms) after the last change before acting.
delay = 20
# Polite stop signal: SIGINT when true, else SIGTERM; SIGKILL after kill_delay.
send_interrupt = false
kill_delay = "500ms"

[templates]
include_ext = ["html", "jinja", "jinja2", "j2"]
on_no_agent = "restart"

[log]
time = false

[misc]
clean_on_exit = false
"""


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pyair init", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, default=Path(".air.toml"))
    args = parser.parse_args(list(argv))
    target: Path = args.config
    if target.exists():
        raise ConfigError(
            f"{target} already exists", path=target, hint="remove it first to write a new one"
        )
    root = Path.cwd()
    found = detect(root)
    if found is None:
        raise ConfigError(
            f"no app found in {root} (looked for manage.py, app.py, main.py, server.py)",
            hint="write .air.toml by hand with [build] full_bin, or cd to your project",
        )
    target.write_text(TEMPLATE.format(**found.__dict__), encoding="utf-8")
    print(f"detected a {found.kind} app in {found.entry}: wrote {target}", file=sys.stderr)
    return 0
