"""Django adapter: compile changed templates, then reset the engines' (cached) loaders.

Only used once the app imported ``django.template``. Django modules are reached through
``importlib`` so this file type-checks without Django stubs.
"""

from __future__ import annotations

import importlib
import os

from . import TemplateFailure
from ._runtime import Prepared, real

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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


def _validate(engine: Any, path: str, name: str) -> None:
    base = importlib.import_module("django.template.base")
    with open(path, encoding=engine.file_charset) as f:
        source = f.read()
    origin = base.Origin(name=path, template_name=name)
    try:
        base.Template(source, origin=origin, name=name, engine=engine)
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


def prepare(paths: list[str]) -> Prepared | None:
    engines = _django_engines()
    touched: list[Any] = []
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
                _validate(engine, path, name)
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

    return Prepared(names, claimed, commit)
