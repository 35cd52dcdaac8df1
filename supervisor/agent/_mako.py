"""Mako adapter: track every TemplateLookup; recompile loaded templates whose file changed.

Only used once the app imported ``mako.lookup``. Mako ships no type hints, so it is ``Any`` here.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
import weakref

from . import TemplateFailure
from ._runtime import Prepared, real

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

_lock = threading.Lock()
_lookups: weakref.WeakSet[Any] = weakref.WeakSet()
_installed = False


def install(lookup_module: ModuleType) -> None:
    global _installed
    if _installed:
        return
    _installed = True
    cls = lookup_module.TemplateLookup
    original_init = cls.__init__

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        with _lock:
            _lookups.add(self)

    cls.__init__ = __init__


def _compile(lookup: Any, uri: str, filename: str) -> Any:
    template_cls = importlib.import_module("mako.template").Template
    args = dict(getattr(lookup, "template_args", {}))
    args["module_directory"] = None  # compile in memory: a stale module file can't win
    try:
        return template_cls(uri=uri, filename=filename, lookup=lookup, module_filename=None, **args)
    except Exception as exc:
        lineno = getattr(exc, "lineno", None)
        where = getattr(exc, "filename", None)
        raise TemplateFailure(
            str(exc),
            where if isinstance(where, str) else filename,
            lineno if type(lineno) is int else None,
        ) from exc


def prepare(paths: list[str], last_good: dict[str, str] | None = None) -> Prepared | None:
    """Recompile loaded templates whose file changed (a failure raises: the old ones serve)."""
    with _lock:
        lookups = list(_lookups)
    swaps: list[tuple[Any, str, Any]] = []
    names: list[str] = []
    claimed: set[str] = set()
    for lookup in lookups:
        collection = lookup._collection
        loaded = [(uri, t, real(t.filename)) for uri, t in list(collection.items()) if t.filename]
        for path in paths:
            real_path = real(path)
            matches = [(uri, t) for uri, t, where in loaded if where == real_path]
            if matches:
                claimed.add(path)
            if not os.path.isfile(path):
                continue
            for uri, old in matches:
                swaps.append((lookup, uri, _compile(lookup, uri, old.filename)))
                if uri not in names:
                    names.append(uri)
            if not matches:  # not loaded yet: validate it if it is one of ours
                for directory in lookup.directories:
                    rel = os.path.relpath(real_path, real(directory))
                    if not rel.startswith(os.pardir):
                        _compile(lookup, "/" + rel.replace(os.sep, "/"), path)
                        claimed.add(path)
                        break
    if not swaps and not claimed:
        return None

    def commit() -> None:
        for lookup, uri, new in swaps:
            with lookup._mutex:
                lookup._collection[uri] = new

    return Prepared(names, claimed, commit)
