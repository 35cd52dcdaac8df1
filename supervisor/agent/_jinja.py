"""Jinja2 adapter: track every Environment and Template, and swap changed templates in place.

Imported only after ``jinja2`` itself has been imported by the app. While the agent is
connected, a template file pyair swaps (``owns()``) is always up to date for Jinja: its cached
Template serves until a swap replaces it, so an edit that does not compile never reaches a
request, whatever ``auto_reload`` says.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import weakref

import jinja2
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    DictLoader,
    Environment,
    FileSystemLoader,
    FunctionLoader,
    ModuleLoader,
    PackageLoader,
    PrefixLoader,
    Template,
    TemplateNotFound,
)

from . import TemplateFailure, owns
from ._runtime import Prepared, real, state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, MutableMapping
    from typing import Any

_lock = threading.Lock()
_envs: weakref.WeakSet[Environment] = weakref.WeakSet()
_templates: weakref.WeakSet[Template] = weakref.WeakSet()
_installed = False


def _track_env(env: Environment) -> None:
    with _lock:
        _envs.add(env)


def _track_template(template: Template) -> None:
    with _lock:
        _templates.add(template)


def install() -> None:
    """Patch Environment creation (``__init__``, ``overlay``) and Template creation, once."""
    global _installed
    if _installed:
        return
    _installed = True

    original_init = Environment.__init__

    @functools.wraps(original_init)
    def __init__(self: Environment, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        _track_env(self)

    Environment.__init__ = __init__  # type: ignore[method-assign]

    original_overlay = Environment.overlay

    @functools.wraps(original_overlay)
    def overlay(self: Environment, *args: Any, **kwargs: Any) -> Environment:
        env = original_overlay(self, *args, **kwargs)
        _track_env(env)
        return env

    Environment.overlay = overlay  # type: ignore[method-assign,assignment]

    # Every Template (from_code, from_module_dict, from_string, loader.load) is built here.
    from_namespace = Template.__dict__.get("_from_namespace")
    if isinstance(from_namespace, classmethod):
        original_from_namespace = from_namespace.__func__

        @functools.wraps(original_from_namespace)
        def _from_namespace(
            cls: type[Template],
            environment: Environment,
            namespace: MutableMapping[str, Any],
            globals: MutableMapping[str, Any],
        ) -> Template:
            template: Template = original_from_namespace(cls, environment, namespace, globals)
            _track_template(template)
            return template

        Template._from_namespace = classmethod(_from_namespace)  # type: ignore[assignment,method-assign]

    # Jinja's own check (auto_reload) would re-read the file on the next get_template, and
    # raise on a broken one: the agent's compile-first swap decides for pyair's files.
    up_to_date = Template.__dict__.get("is_up_to_date")
    if isinstance(up_to_date, property) and up_to_date.fget is not None:
        jinja_check = up_to_date.fget

        @functools.wraps(jinja_check)
        def is_up_to_date(self: Template) -> bool:
            if state.connected and owns(self.filename):
                return True
            return bool(jinja_check(self))

        Template.is_up_to_date = property(is_up_to_date)  # type: ignore[method-assign,assignment]


# --- which template names does a file have in an environment? --------------------------------


def _names_under(dirs: list[str], path: str) -> set[str]:
    names: set[str] = set()
    variants = {os.path.abspath(path), os.path.realpath(path)}
    for directory in dirs:
        for root in {os.path.abspath(directory), os.path.realpath(directory)}:
            for variant in variants:
                rel = os.path.relpath(variant, root)
                if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
                    continue
                names.add(rel.replace(os.sep, "/"))
    return names


def _loader_names(loader: BaseLoader, path: str) -> tuple[set[str], bool]:
    """Candidate names for ``path`` under ``loader``, and whether some loader was unknown."""
    if isinstance(loader, FileSystemLoader):
        return _names_under(list(loader.searchpath), path), False
    if isinstance(loader, PackageLoader):
        if getattr(loader, "_archive", None) is not None:
            return set(), False  # a zipped package: its files don't change on disk
        root = getattr(loader, "_template_root", None)
        return (_names_under([root], path), False) if isinstance(root, str) else (set(), True)
    if isinstance(loader, ChoiceLoader):
        names: set[str] = set()
        unknown = False
        for sub in loader.loaders:
            sub_names, sub_unknown = _loader_names(sub, path)
            names |= sub_names
            unknown = unknown or sub_unknown
        return names, unknown
    if isinstance(loader, PrefixLoader):
        names = set()
        unknown = False
        for prefix, sub in loader.mapping.items():
            sub_names, sub_unknown = _loader_names(sub, path)
            names |= {f"{prefix}{loader.delimiter}{name}" for name in sub_names}
            unknown = unknown or sub_unknown
        return names, unknown
    if isinstance(loader, (DictLoader, FunctionLoader, ModuleLoader)):
        return set(), False  # not files (FunctionLoader files are found by filename below)
    app = getattr(loader, "app", None)  # Flask's DispatchingJinjaLoader: the app + blueprints
    if app is not None and hasattr(app, "iter_blueprints"):
        names = set()
        unknown = False
        subs = [app.jinja_loader, *(bp.jinja_loader for bp in app.iter_blueprints())]
        for sub in subs:
            if sub is not None:
                sub_names, sub_unknown = _loader_names(sub, path)
                names |= sub_names
                unknown = unknown or sub_unknown
        return names, unknown
    return set(), True


# --- the swap --------------------------------------------------------------------------------


def _cache_get(env: Environment, name: str) -> Template | None:
    cache = env.cache
    if cache is None or env.loader is None:
        return None
    template = cache.get((weakref.ref(env.loader), name))
    return template if isinstance(template, Template) else None


def _cached_templates(env: Environment) -> list[Template]:
    cache = env.cache
    if cache is None:
        return []
    try:
        values = list(cache.values())
    except Exception:
        return []
    return [t for t in values if isinstance(t, Template)]


def _become(old: Template, new: Template) -> None:
    """Make ``old`` render like ``new`` with a single ``__dict__`` store (no torn state)."""
    state = dict(old.__dict__)
    state.update(new.__dict__)
    state["name"] = old.name  # a PrefixLoader template keeps its local name
    state["globals"] = old.globals  # what the app passed to get_template(globals=...)
    state["_module"] = None
    old.__dict__ = state


def _compile(
    env: Environment, name: str, path: str, real_path: str, real_of: Callable[[str], str]
) -> Template | None:
    """The new Template for ``name`` if ``name`` is served from ``path``; else None."""
    loader = env.loader
    assert loader is not None
    try:
        source, filename, uptodate = loader.get_source(env, name)
    except TemplateNotFound:
        return None
    if filename is None or real_of(filename) != real_path:
        return None  # shadowed by another file, or not file based
    try:
        code = env.compile(source, name, filename)
        old = _cache_get(env, name)
        template_globals = old.globals if old is not None else env.make_globals(None)
        return env.template_class.from_code(env, code, template_globals, uptodate)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateFailure(exc.message or str(exc), exc.filename or path, exc.lineno) from exc
    except Exception as exc:
        lineno = getattr(exc, "lineno", None)
        raise TemplateFailure(
            f"{type(exc).__name__}: {exc}", path, lineno if type(lineno) is int else None
        ) from exc


def _last_good(env: Environment, name: str, filename: str, source: str) -> Template | None:
    """``source`` (the file's last text that compiled) as the Template for ``name``; it says
    it is stale, so Jinja reads the file again once pyair is gone."""
    try:
        code = env.compile(source, name, filename)
        return env.template_class.from_code(env, code, env.make_globals(None), lambda: False)
    except Exception:
        return None


def prepare(paths: list[str], last_good: dict[str, str] | None = None) -> Prepared | None:
    """Compile every changed template of every live environment.

    A template that does not compile makes it an error (nothing is swapped); ``keep`` then
    puts the file's last good text (``last_good``, by path) in each cache that has not loaded
    that template, so it serves the old HTML there too.
    """
    with _lock:
        envs = list(_envs)
        templates = list(_templates)
    memo: dict[str, str] = {}

    def real_of(path: str) -> str:  # realpath() once per file, not once per file per env
        resolved = memo.get(path)
        if resolved is None:
            resolved = memo[path] = real(path)
        return resolved

    by_id = {id(env): env for env in envs}
    # Template objects by (environment, file), not by name: a PrefixLoader template is named
    # by its local name ("x.html") while the cache knows it as "pre/x.html".
    kept: dict[tuple[int, str], list[Template]] = {}
    for template in templates:
        env = template.environment
        by_id.setdefault(id(env), env)  # overlays and environments made before tracking
        if template.filename is not None:
            kept.setdefault((id(env), real_of(template.filename)), []).append(template)
    if not by_id:
        return None

    swaps: list[tuple[Environment, str, Template, str]] = []
    evictions: list[tuple[Environment, str]] = []
    clears: list[Environment] = []
    kept_old: list[tuple[Environment, str, Template]] = []
    failure: TemplateFailure | None = None
    names: list[str] = []
    claimed: set[str] = set()
    for env in by_id.values():
        loader = env.loader
        if loader is None:
            continue
        loaded = _cached_templates(env)
        loaded.extend(t for t in templates if t.environment is env)
        for path in paths:
            real_path = real_of(path)
            candidates, unknown = _loader_names(loader, path)
            candidates |= {
                t.name
                for t in loaded
                if t.name is not None
                and t.filename is not None
                and real_of(t.filename) == real_path
            }
            if not os.path.exists(path):  # deleted: forget it; the next render says not found
                for name in candidates:
                    if _cache_get(env, name) is not None:
                        evictions.append((env, name))
                        claimed.add(path)
                continue
            found = False
            for name in sorted(candidates):
                try:
                    new = _compile(env, name, path, real_path, real_of)
                except TemplateFailure as exc:
                    failure = failure or exc
                    found = True
                    source = (last_good or {}).get(path)
                    if source is not None and env.cache is not None and not _cache_get(env, name):
                        old = _last_good(env, name, path, source)
                        if old is not None:
                            kept_old.append((env, name, old))
                    continue
                if new is not None:
                    swaps.append((env, name, new, real_path))
                    found = True
            if found:
                claimed.add(path)
            elif unknown and env.cache is not None:
                clears.append(env)  # a loader we can't read: drop the whole cache

    for _env, name, _new, _real in swaps:
        if name not in names:
            names.append(name)
    for _env, name in evictions:
        if name not in names:
            names.append(name)

    def commit() -> None:
        for env, name, new, real_path in swaps:
            for old in kept.get((id(env), real_path), ()):
                if old is not new:
                    _become(old, new)
            cache, loader = env.cache, env.loader
            if cache is not None and loader is not None:
                key = (weakref.ref(loader), name)
                if key in cache:
                    cache[key] = new
        for env, name in evictions:
            cache, loader = env.cache, env.loader
            if cache is not None and loader is not None:
                with contextlib.suppress(KeyError):
                    del cache[(weakref.ref(loader), name)]
        for env in clears:
            if env.cache is not None:
                env.cache.clear()

    def keep() -> None:
        for env, name, old in kept_old:
            cache, loader = env.cache, env.loader
            if cache is not None and loader is not None:
                cache.setdefault((weakref.ref(loader), name), old)

    if failure is not None:
        return Prepared(names, claimed, commit, error=failure, keep=keep)
    if not swaps and not evictions and not clears:
        return None
    return Prepared(names, claimed, commit)
