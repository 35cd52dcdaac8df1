"""pyair's bootstrap: imported by ``site`` because pyair put this directory first on PYTHONPATH.

1. When ``PYAIR_CONTROL`` is set, load pyair's ``supervisor`` package from the directory this
   file lives in (without putting pyair's site-packages on the app's sys.path) and arm the agent.
2. Take this directory off ``sys.path`` again.
3. Run the app's own ``sitecustomize`` (the next one on ``sys.path``), as the real
   ``sitecustomize`` module, exactly as Python would have without pyair.

Stdlib only, and as little of it as possible: this runs before every Python process the app
starts. A failure in 1 prints one line and is otherwise ignored.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType


try:  # CPython's import system, already loaded: no importlib package import at start-up
    from _frozen_importlib import ModuleSpec, module_from_spec
    from _frozen_importlib_external import PathFinder, SourceFileLoader
except ImportError:  # pragma: no cover - other interpreters
    from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
    from importlib.util import module_from_spec


def _load_package(name: str, init: str, pkg_dir: str) -> "ModuleType":
    spec = ModuleSpec(name, SourceFileLoader(name, init), origin=init, is_package=True)
    spec.submodule_search_locations = [pkg_dir]
    spec.has_location = True
    module = module_from_spec(spec)
    sys.modules[name] = module
    try:
        assert spec.loader is not None
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _start_agent(here: str) -> None:
    pkg_dir = os.path.dirname(os.path.dirname(here))  # .../supervisor
    init = os.path.join(pkg_dir, "__init__.py")
    name = "supervisor"
    existing = sys.modules.get(name)
    origin = getattr(existing, "__file__", None)
    if existing is None:
        spec = PathFinder.find_spec(name)
        origin = spec.origin if spec is not None else None
        if spec is None:
            _load_package(name, init, pkg_dir)
    if origin is not None and not _same_file(origin, init):
        name = "_pyair_supervisor"  # "supervisor" is someone else's (supervisord, another pyair)
        if name not in sys.modules:
            _load_package(name, init, pkg_dir)
    __import__(name + ".agent")
    sys.modules[name + ".agent"].start()


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _same_dir(entry: str, here: str) -> bool:
    return os.path.abspath(entry or os.curdir) == here


def _chain_user_sitecustomize() -> None:
    spec = PathFinder.find_spec("sitecustomize", sys.path)
    if spec is None or spec.loader is None:
        return
    module = module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _boot() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if os.environ.get("PYAIR_CONTROL"):
        try:
            _start_agent(here)
        except Exception as exc:
            sys.stderr.write(f"pyair agent: disabled ({type(exc).__name__}: {exc})\n")
    sys.path[:] = [entry for entry in sys.path if not _same_dir(entry, here)]
    _chain_user_sitecustomize()


if __name__ == "sitecustomize":  # pyair's zygote loads it by path for _start_agent() only
    _boot()
