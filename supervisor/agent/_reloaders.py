"""The frameworks' own reloaders, switched off as they are imported: pyair is the reloader.

Run as their docs say (``flask run --debug``, ``app.run(debug=True)``, ``manage.py runserver``,
``uvicorn --reload``), these servers start a second process that watches files and restarts the
first: every restart would be a cold interpreter behind pyair's back. Here the server runs in
this process instead, exactly as with the reloader turned off (``--no-reload``, ``--noreload``);
Werkzeug's debugger stays on. Each says so once, in ``pyair -d``.

- ``werkzeug.serving.run_simple``: called with ``use_reloader=False``. ``werkzeug`` and
  ``flask.cli`` bind the function at import (``from werkzeug import run_simple``), so every
  module that holds the original gets the new one too (a warm app has them imported already).
- ``django.utils.autoreload.run_with_reloader(main, ...)``: calls ``main(...)``.
- ``uvicorn.config.Config.should_reload``: False, so ``uvicorn.run`` serves in this process.
"""

from __future__ import annotations

import functools
import sys

from . import note

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

WERKZEUG = (
    "Werkzeug's reloader is off: the server runs in this process and pyair restarts it "
    "(the debugger stays on)"
)
DJANGO = "Django's autoreloader is off: runserver serves in this process and pyair restarts it"
UVICORN = "uvicorn's --reload is off: the server runs in this process and pyair restarts it"
_USE_RELOADER_AT = 3  # run_simple(hostname, port, application, use_reloader, ...)


def switch_off(module: ModuleType) -> None:
    """Switch off the reloader ``module`` (one of the hooked ones) would start."""
    name = module.__name__
    if name == "werkzeug.serving":
        _werkzeug(module)
    elif name == "django.utils.autoreload":
        _django(module)
    elif name == "uvicorn.config":
        _uvicorn(module)


def _patched(function: Any) -> bool:
    return bool(getattr(function, "__pyair__", False))


def _werkzeug(serving: ModuleType) -> None:
    original = getattr(serving, "run_simple", None)
    if original is None or _patched(original):
        return

    @functools.wraps(original)
    def run_simple(*args: Any, **kwargs: Any) -> Any:
        positional = list(args)
        if len(positional) > _USE_RELOADER_AT:
            wanted, positional[_USE_RELOADER_AT] = positional[_USE_RELOADER_AT], False
        else:
            wanted, kwargs["use_reloader"] = kwargs.get("use_reloader", False), False
        if wanted:
            note(WERKZEUG)
        return original(*positional, **kwargs)

    run_simple.__pyair__ = True  # type: ignore[attr-defined]
    setattr(serving, "run_simple", run_simple)  # noqa: B010 - a module mypy does not know
    _rebind("run_simple", original, run_simple)


def _rebind(attribute: str, original: Callable[..., Any], replacement: Callable[..., Any]) -> None:
    """Every loaded module that bound ``original`` under ``attribute`` gets ``replacement``."""
    for module in list(sys.modules.values()):
        try:
            namespace = vars(module)
            if namespace.get(attribute) is original:
                namespace[attribute] = replacement
        except Exception:  # an odd object in sys.modules: not ours to touch
            continue


def _django(autoreload: ModuleType) -> None:
    original = getattr(autoreload, "run_with_reloader", None)
    if original is None or _patched(original):
        return

    @functools.wraps(original)
    def run_with_reloader(main_func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        note(DJANGO)
        return main_func(*args, **kwargs)

    run_with_reloader.__pyair__ = True  # type: ignore[attr-defined]
    setattr(autoreload, "run_with_reloader", run_with_reloader)  # noqa: B010


def _uvicorn(config: ModuleType) -> None:
    cls = getattr(config, "Config", None)
    prop = getattr(cls, "__dict__", {}).get("should_reload")
    if not isinstance(prop, property) or prop.fget is None or _patched(prop.fget):
        return
    original = prop.fget

    @functools.wraps(original)
    def should_reload(self: Any) -> bool:
        if original(self):
            note(UVICORN)
        return False

    should_reload.__pyair__ = True  # type: ignore[attr-defined]
    cls.should_reload = property(should_reload)  # type: ignore[union-attr]
