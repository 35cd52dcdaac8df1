"""The package's layering, read from the source: who may import whom.

A unit is a top-level module ``name.py`` or a package ``name/`` (its modules may import each
other); ``supervisor`` is the package's own ``__init__``. Every import is resolved to a unit,
whatever its spelling: ``import supervisor.x``, ``from supervisor import x``, ``from .x import
y``, ``from . import x``, ``from .. import x`` inside a package. The rules:

- a unit imports only units of the layers below its own; units of one layer never import each
  other (the services: the engine connects them);
- the child side (what runs in the app's, the zygote's or the guardian's interpreter) imports
  only the standard library and the child-side units listed for it;
- each of these libraries is imported in its home only.

The checker itself is tested on small trees written to ``tmp_path``: each rule must bite.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import REPO

PACKAGE = REPO / "supervisor"
ROOT_UNIT = "supervisor"

# Top to bottom (DESIGN's table): a unit may import the units of lower layers only.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),  # the only place that exits
    ("smoke", "init"),  # subcommands
    ("engine",),  # routing and the state machine
    ("runtime", "companions"),  # the engine's effects; the rules' and processes' own state
    ("zygote", "watcher", "process", "control", "proxy", "readiness", "sources", "listeners"),
    ("classify", "events", "inotify"),  # inotify: the kernel binding the watchers share
    ("console",),
    ("config",),
    ("errors",),
    # the child side: runs inside the app, the zygote or the guardian
    ("agent",),
    ("zygote_main", "guardian_main"),
    ("protocol",),
    ("childside",),
    (ROOT_UNIT,),
)
SERVICES = frozenset(LAYERS[5])
# Units the rules know before they exist: not reported missing until they land.
PENDING: frozenset[str] = frozenset()
# Known edges between services, each with its reason (none: the runtime wires them).
SERVICE_EDGES: Mapping[tuple[str, str], str] = {}
# What the child side may import of pyair (besides the standard library).
CHILD_SIDE: Mapping[str, frozenset[str]] = {
    "agent": frozenset({"protocol", "childside"}),
    # run as scripts (the zygote in the app's interpreter, the guardian as python -I -S):
    # they load childside from its file, never from pyair's directory on sys.path
    "zygote_main": frozenset({"childside"}),
    "guardian_main": frozenset({"childside"}),
    "protocol": frozenset({"childside"}),
    "childside": frozenset(),
}
# Third-party libraries and the one unit that imports each.
HOMES: Mapping[str, str] = {
    "rich": "console",
    "h11": "proxy",
    "psutil": "process",
    "watchfiles": "watcher",
    "tomli": "config",
    # the app's template engines: only the agent's adapters, loaded when the app imports one
    "jinja2": "agent",
    "django": "agent",
    "mako": "agent",
}
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}

_RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    unit: str | None  # the unit of pyair imported, or None for anything else
    top: str  # the top-level name imported ("supervisor", "anyio", "os")
    spelled: str  # as written, for the message


def _units(package: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """unit → its files, and what is wrong with the layout itself."""
    units: dict[str, list[Path]] = {}
    problems: list[str] = []
    for entry in sorted(package.iterdir()):
        if entry.is_file() and entry.suffix == ".py":
            name, files = (ROOT_UNIT if entry.stem == "__init__" else entry.stem), [entry]
        elif entry.is_dir() and entry.name != "__pycache__":
            files = sorted(p for p in entry.rglob("*.py") if "__pycache__" not in p.parts)
            if not files:  # data, such as static/
                continue
            name = entry.name
        else:
            continue
        if name in units:
            problems.append(f"{name}: both {name}.py and {name}/; keep one")
        units.setdefault(name, []).extend(files)
    for name in units:
        if name not in _RANK:
            problems.append(f"{name}: in no layer (add it to LAYERS in {Path(__file__).name})")
    for name in sorted(_RANK.keys() - units.keys() - PENDING):
        problems.append(f"{name}: missing (expected {name}.py or {name}/)")
    return units, problems


def _imports(file: Path, package: Path, units: Mapping[str, list[Path]]) -> Iterator[Import]:
    """Every import in ``file`` (at any depth: lazy ones too), resolved to a unit."""
    # the package a relative import starts from: supervisor.agent for agent/_jinja.py and
    # for agent/__init__.py alike
    here = list(file.relative_to(package.parent).parts[:-1])
    root = package.name
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                dotted = alias.name.split(".")
                yield _resolve(file, node.lineno, dotted, root, units, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            dots = "." * node.level
            spelled = f"from {dots}{node.module or ''} import"
            if node.level:
                if node.level > len(here):
                    names = ", ".join(alias.name for alias in node.names)
                    yield Import(file, node.lineno, None, "..", f"{spelled} {names}")
                    continue
                base = here[: len(here) - node.level + 1]
                base += node.module.split(".") if node.module else []
            else:
                base = (node.module or "").split(".")
            for alias in node.names:
                yield _resolve(
                    file, node.lineno, [*base, alias.name], root, units, f"{spelled} {alias.name}"
                )


def _resolve(
    file: Path,
    line: int,
    dotted: list[str],
    root: str,
    units: Mapping[str, list[Path]],
    spelled: str,
) -> Import:
    if dotted[0] != root:
        return Import(file, line, None, dotted[0], spelled)
    # supervisor.x is unit x when x is one; otherwise a name of the package's own __init__
    if len(dotted) > 1 and (dotted[1] in units or dotted[1] in _RANK):
        return Import(file, line, dotted[1], root, spelled)
    return Import(file, line, ROOT_UNIT, root, spelled)


def _judge(unit: str, imp: Import) -> str | None:
    """Why ``unit`` must not make this import, or None."""
    if imp.top == "..":
        return "a relative import beyond the package"
    target = imp.unit
    if target is None:
        home = HOMES.get(imp.top)
        if home is not None and home != unit:
            return f"only {home} imports {imp.top}"
        if unit in CHILD_SIDE and imp.top not in STDLIB and home != unit:
            return f"the child side: {unit} imports only the standard library"
        return None
    if target == unit:
        return None  # a package's modules import each other
    if unit in CHILD_SIDE and target not in CHILD_SIDE[unit]:
        allowed = "".join(f" and {name}" for name in sorted(CHILD_SIDE[unit]))
        return f"the child side: {unit} imports only the standard library{allowed}"
    if target not in _RANK:
        return None  # reported as a unit in no layer
    if _RANK[target] < _RANK[unit]:
        return f"{target} is above {unit}"
    if _RANK[target] == _RANK[unit]:
        if (unit, target) in SERVICE_EDGES:
            return None
        if unit in SERVICES:
            return "services never import each other (the engine connects them)"
        return f"{unit} and {target} are one layer: neither imports the other"
    return None


def layer_violations(package: Path) -> list[str]:
    """Every break of the rules in ``package`` (a directory named like the package)."""
    units, problems = _units(package)
    for unit, files in units.items():
        if unit not in _RANK:
            continue
        for file in files:
            for imp in _imports(file, package, units):
                why = _judge(unit, imp)
                if why is not None:
                    where = file.relative_to(package.parent)
                    problems.append(f"{where}:{imp.line}: {unit}: {imp.spelled}: {why}")
    return problems


def test_imports_follow_the_layers() -> None:
    assert layer_violations(PACKAGE) == []


# --------------------------------------------------------------------------- it bites

# A tree that keeps every rule, with packages and every spelling of an import.
LAWFUL: dict[str, str] = {
    **{f"{unit}.py": "" for layer in LAYERS for unit in layer if unit != ROOT_UNIT},
    "__init__.py": '__version__ = "0"\n',
    "__main__.py": "from .cli import main\n",
    "cli.py": "import argparse\nfrom . import __version__\nfrom .engine import Engine\n",
    "engine.py": (
        "import anyio\nfrom .runtime import LocalRuntime\nfrom supervisor.watcher import Watcher\n"
        "import supervisor.proxy\nfrom supervisor import classify, events\n"
    ),
    "runtime.py": "from . import process, control, zygote\nfrom .agent import bootstrap_dir\n",
    "zygote.py": "from . import childside\nfrom .childside import TREE_ENV\n",
    "watcher.py": "from watchfiles import awatch\nfrom .classify import Change\n",
    "process.py": "import psutil\nfrom .config import AppCommand\n",
    "console.py": "from rich.console import Console\nfrom .config import LogConfig\n",
    "config.py": None,  # a package instead
    "config/__init__.py": "from .schema import Config\nfrom . import values\n",
    "config/schema.py": "from ..errors import ConfigError\nfrom .values import parse\n",
    "config/values.py": "try:\n    import tomllib\nexcept ImportError:\n    import tomli\n",
    "proxy.py": None,
    "proxy/__init__.py": "from .server import Proxy\n",
    "proxy/server.py": "import h11\nfrom ..config import Config\nfrom .. import events, console\n",
    "agent.py": None,
    "agent/__init__.py": "import os\nfrom .. import protocol\nfrom ..childside import TREE_ENV\n",
    "agent/_jinja.py": "import jinja2\nfrom . import _runtime\n",
    "agent/_runtime.py": "def later():\n    from supervisor import protocol\n",
    "agent/bootstrap/sitecustomize.py": "import sys\nfrom importlib.machinery import PathFinder\n",
    "protocol.py": "import json\nfrom .childside import encode_frame\n",
    "zygote_main.py": "import os\nimport runpy\nif False:\n    from . import childside\n",
    "static/client.js": "",
}

BREAKS: dict[str, tuple[dict[str, str | None], str]] = {
    "a service imports a service": (
        {"watcher.py": "from .control import ControlServer\n"},
        "supervisor/watcher.py:1: watcher: from .control import ControlServer: services never",
    ),
    "the zygote service imports the process service": (
        {"zygote.py": "from .process import AppProcess\n"},
        "supervisor/zygote.py:1: zygote: from .process import AppProcess: services never",
    ),
    "a service package imports a service absolutely": (
        {"proxy/server.py": "import supervisor.process\n"},
        "supervisor/proxy/server.py:1: proxy: import supervisor.process: services never",
    ),
    "the agent imports supervisor-side code": (
        {"agent/_runtime.py": "def later():\n    from ..config import Config\n"},
        "supervisor/agent/_runtime.py:2: agent: from ..config import Config: the child side",
    ),
    "the agent imports a library": (
        {"agent/__init__.py": "import anyio\n"},
        "agent: import anyio: the child side: agent imports only the standard library",
    ),
    "the agent imports supervisor-side code absolutely": (
        {"agent/_jinja.py": "import jinja2\nimport supervisor.config.schema\n"},
        "agent: import supervisor.config.schema: the child side: agent imports only",
    ),
    "zygote_main imports pyair": (
        {"zygote_main.py": "import os\nfrom supervisor import protocol\n"},
        "zygote_main: from supervisor import protocol: the child side",
    ),
    "h11 outside proxy/": ({"engine.py": "import h11\n"}, "engine: import h11: only proxy"),
    "rich outside console": (
        {"config/values.py": "from rich.text import Text\n"},
        "config: from rich.text import Text: only console imports rich",
    ),
    "psutil outside process": ({"zygote.py": "import psutil\n"}, "zygote: import psutil"),
    "watchfiles outside watcher": (
        {"smoke.py": "from watchfiles import Change\n"},
        "smoke: from watchfiles import Change: only watcher",
    ),
    "an absolute sibling import upwards": (
        {"process.py": "from supervisor import engine\n"},
        "process: from supervisor import engine: engine is above process",
    ),
    "a relative import upwards from a package": (
        {"config/schema.py": "from .. import console\n"},
        "config: from .. import console: console is above config",
    ),
    "a relative import beyond the package": (
        {"cli.py": "from .. import elsewhere\n"},
        "cli: from .. import elsewhere: a relative import beyond the package",
    ),
    "a missing unit": ({"control.py": None}, "control: missing (expected control.py or control/)"),
    "a unit in no layer": ({"helpers.py": "import os\n"}, "helpers: in no layer"),
    "a module and a package of one name": ({"config.py": ""}, "config: both config.py and config/"),
}


def _tree(root: Path, changes: Mapping[str, str | None]) -> Path:
    package = root / "supervisor"
    for rel, text in {**LAWFUL, **changes}.items():
        if text is not None:
            path = package / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return package


def test_the_checker_passes_a_lawful_tree(tmp_path: Path) -> None:
    assert layer_violations(_tree(tmp_path, {})) == []


@pytest.mark.parametrize(("changes", "expected"), BREAKS.values(), ids=BREAKS.keys())
def test_the_checker_reports_each_broken_rule(
    tmp_path: Path, changes: dict[str, str | None], expected: str
) -> None:
    found = layer_violations(_tree(tmp_path, changes))
    assert len(found) == 1 and expected in found[0], found
