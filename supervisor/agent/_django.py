"""Django adapter: compile changed templates, reset the engines' (cached) loaders, and update
the ``Template`` objects the app kept.

Only used once the app imported ``django.template``. Django modules are reached through
``importlib`` so this file type-checks without Django stubs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import threading
import weakref

from . import TemplateFailure
from ._runtime import Prepared, real

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_lock = threading.Lock()
_templates: weakref.WeakSet[Any] = weakref.WeakSet()  # every file-based Template made so far
_installed = False


def install() -> None:
    """Track every ``django.template.base.Template`` made from a file, once.

    A view that keeps one (``PAGE = loader.get_template("page.html")`` at import) holds the
    backend's wrapper around it; resetting the loaders never reaches it, a swap does.
    """
    global _installed
    if _installed:
        return
    _installed = True
    cls = importlib.import_module("django.template.base").Template
    original_init = cls.__init__

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        name = getattr(getattr(self, "origin", None), "name", None)
        if isinstance(name, str) and os.path.isabs(name):
            with _lock:
                _templates.add(self)

    cls.__init__ = __init__


def _engine_dirs(engine: Any) -> list[str]:
    """The directories a Django template engine loads from (as Django's autoreloader sees them)."""
    dirs = [os.fspath(d) for d in engine.dirs if d]
    for loader in engine.template_loaders:
        get_dirs = getattr(loader, "get_dirs", None)
        if get_dirs is None:
            continue
        for directory in get_dirs():
            if directory:
                dirs.append(os.fspath(directory))
    return [os.path.abspath(d) for d in dirs]


def _name_in(dirs: list[str], path: str) -> str | None:
    real_path = real(path)
    for directory in dirs:
        rel = os.path.relpath(real_path, real(directory))
        if rel != os.pardir and not rel.startswith(os.pardir + os.sep) and rel != os.curdir:
            return rel.replace(os.sep, "/")
    return None


def _error_line(exc: BaseException) -> int | None:
    debug_info = getattr(exc, "template_debug", None)  # engine debug=True
    if isinstance(debug_info, dict) and type(debug_info.get("line")) is int:
        line: int = debug_info["line"]
        return line
    token = getattr(exc, "token", None)  # set by the parser in either mode
    lineno = getattr(token, "lineno", None)
    return lineno if type(lineno) is int else None


def _origin(engine: Any, path: str, name: str) -> Any:
    """The origin the engine's own loaders give ``path`` (its loader included), else a bare one."""
    base = importlib.import_module("django.template.base")
    real_path = real(path)
    for loader in engine.template_loaders:
        try:
            for origin in loader.get_template_sources(name):
                if real(origin.name) == real_path:
                    return origin
        except Exception:  # a loader that cannot list its sources: the next one may
            continue
    return base.Origin(name=path, template_name=name)


def _compile(engine: Any, path: str, name: str, source: str | None = None) -> Any:
    """The Template for ``path`` (its text now, or ``source``); TemplateFailure if it fails."""
    base = importlib.import_module("django.template.base")
    if source is None:
        with open(path, encoding=engine.file_charset) as f:
            source = f.read()
    try:
        return base.Template(source, origin=_origin(engine, path, name), name=name, engine=engine)
    except Exception as exc:
        raise TemplateFailure(str(exc), path, _error_line(exc)) from exc


def _django_engines() -> list[Any]:
    template = importlib.import_module("django.template")
    backend_cls = importlib.import_module("django.template.backends.django").DjangoTemplates
    try:
        backends = template.engines.all()
    except Exception:  # settings not configured (yet): nothing to swap
        return []
    return [backend.engine for backend in backends if isinstance(backend, backend_cls)]


def _become(old: Any, new: Any) -> None:
    """``old`` renders like ``new``, in one ``__dict__`` store; it keeps its name and origin."""
    state = dict(old.__dict__)
    state.update(new.__dict__)
    state["name"], state["origin"] = old.name, old.origin
    old.__dict__ = state


def _keep_in_caches(engine: Any, name: str, template: Any) -> None:
    """Serve ``template`` for ``name`` from the engine's cached loaders that do not hold it."""
    for loader in engine.template_loaders:
        cache = getattr(loader, "get_template_cache", None)
        if isinstance(cache, dict):
            cache.setdefault(loader.cache_key(name), template)


def prepare(paths: list[str], last_good: dict[str, str] | None = None) -> Prepared | None:
    """Compile every changed template of every Django engine.

    One that does not compile makes it an error; ``keep`` then puts its last good text
    (``last_good``, by path) in the cached loaders that have not loaded it yet.
    """
    engines = _django_engines()
    touched: list[Any] = []
    fresh: list[tuple[Any, str, Any]] = []  # (engine, real path, new Template)
    kept_old: list[tuple[Any, str, Any]] = []
    failure: TemplateFailure | None = None
    names: list[str] = []
    claimed: set[str] = set()
    for engine in engines:
        dirs = _engine_dirs(engine)
        mine = False
        for path in paths:
            name = _name_in(dirs, path)
            if name is None:
                continue
            if os.path.isfile(path):
                try:
                    fresh.append((engine, real(path), _compile(engine, path, name)))
                except TemplateFailure as exc:
                    failure = failure or exc
                    source = (last_good or {}).get(path)
                    if source is not None:
                        with contextlib.suppress(TemplateFailure):  # it never compiled here
                            kept_old.append((engine, name, _compile(engine, path, name, source)))
            mine = True
            claimed.add(path)
            if name not in names:
                names.append(name)
        if mine:
            touched.append(engine)
    if not touched:
        return None

    def commit() -> None:
        for engine in touched:
            for loader in engine.template_loaders:
                reset = getattr(loader, "reset", None)
                if callable(reset):
                    reset()
        with _lock:
            kept = list(_templates)
        for engine, real_path, new in fresh:
            for old in kept:
                if old is not new and old.engine is engine and real(old.origin.name) == real_path:
                    _become(old, new)

    def keep() -> None:
        for engine, name, template in kept_old:
            _keep_in_caches(engine, name, template)

    if failure is not None:
        return Prepared(names, claimed, commit, error=failure, keep=keep)
    return Prepared(names, claimed, commit)
