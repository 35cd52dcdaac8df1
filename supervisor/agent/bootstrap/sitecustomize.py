"""pyair's bootstrap: imported by ``site`` because pyair put this directory first on PYTHONPATH.

1. When ``PYAIR_CONTROL`` is set, load pyair's ``supervisor`` package from the directory this
   file lives in (without putting pyair's site-packages on the app's sys.path) and arm the agent.
   The variable's name comes from ``supervisor/childside.py``, loaded by path for it.
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

CHILDSIDE = "_pyair_childside"  # pyair's child-side module, loaded from its file by this name
PRIVATE_PACKAGE = "_pyair_supervisor"  # pyair's package where "supervisor" may be another's


def load_childside(pkg_dir: str) -> "ModuleType":
    """``supervisor/childside.py`` (the environment names and ``load_source``), by path."""
    path = os.path.join(pkg_dir, "childside.py")
    loader = SourceFileLoader(CHILDSIDE, path)
    spec = ModuleSpec(CHILDSIDE, loader, origin=path)
    spec.has_location = True
    module = module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[CHILDSIDE] = module
    return module


# What arming the agent imports of it anyway (an engine's module only once that engine is
# loaded): a zygote loads them before it forks, so an app it forks only arms the agent.
_ARMED_WITH = ("_runtime", "_reloaders", "_servers", "_sockets", "_preload")
_ENGINE_MODULES = (("jinja2", "_jinja"), ("django", "_django"), ("mako", "_mako"))


def _start_agent(here: str, childside: "ModuleType") -> None:
    _load_agent(here, childside).start()


def _preload_agent(here: str, childside: "ModuleType") -> None:
    """The agent loaded and not armed: what a zygote does before it forks the app."""
    agent = _load_agent(here, childside, private=True)
    package = agent.__name__.rpartition(".")[0]
    names = [f"{agent.__name__}.{name}" for name in _ARMED_WITH]
    names += [
        f"{agent.__name__}.{ours}" for engine, ours in _ENGINE_MODULES if engine in sys.modules
    ]
    for name in [f"{package}.protocol", *names]:
        __import__(name)


def _load_agent(here: str, childside: "ModuleType", *, private: bool = False) -> "ModuleType":
    """pyair's package and its agent, loaded (not armed). ``private``: under the alias, as a
    zygote loads it (it cannot tell yet whether the app has a ``supervisor`` of its own)."""
    preloaded = sys.modules.get(PRIVATE_PACKAGE + ".agent")
    if preloaded is not None:  # the zygote that forked this app loaded it
        return preloaded
    pkg_dir = os.path.dirname(os.path.dirname(here))  # .../supervisor
    init = os.path.join(pkg_dir, "__init__.py")
    name = "supervisor"
    if private:
        ours = False
    elif name in sys.modules:
        ours = _same_file(getattr(sys.modules[name], "__file__", None) or "", init)
    else:
        spec = PathFinder.find_spec(name)
        ours = spec is None or _same_file(spec.origin or "", init)
        if ours:  # loaded once, from here: the import system need not search for it again
            childside.load_source(name, init, pkg_dir)
    if not ours:
        name = PRIVATE_PACKAGE  # "supervisor" is someone else's (supervisord, another pyair)
        if name not in sys.modules:
            childside.load_source(name, init, pkg_dir)
    if name + ".childside" not in sys.modules:  # one copy of it in the app: this one
        sys.modules[name + ".childside"] = vars(sys.modules[name])["childside"] = childside
    agent = sys.modules.get(name + ".agent")
    if agent is None:  # straight from its file: the import system need not search for it
        agent_dir = os.path.dirname(here)
        agent = childside.load_source(
            name + ".agent", os.path.join(agent_dir, "__init__.py"), agent_dir
        )
    return agent


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
    try:
        childside = load_childside(os.path.dirname(os.path.dirname(here)))
        if os.environ.get(childside.CONTROL_ENV):
            _start_agent(here, childside)
    except Exception as exc:
        sys.stderr.write(f"pyair agent: disabled ({type(exc).__name__}: {exc})\n")
    sys.path[:] = [entry for entry in sys.path if not _same_dir(entry, here)]
    _chain_user_sitecustomize()


if __name__ == "sitecustomize":  # pyair's zygote loads it by path for _start_agent() only
    _boot()
