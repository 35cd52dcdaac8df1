"""The pyair agent: runs inside the user's app and hot-swaps templates when pyair asks.

How it starts: pyair puts ``bootstrap_dir()`` first on the app's ``PYTHONPATH`` and the control
socket's path in ``PYAIR_CONTROL``. Python's ``site`` imports the bootstrap's ``sitecustomize``,
which imports this package, calls ``start()`` and then runs the app's own ``sitecustomize`` (if
there is one further on ``sys.path``). ``python -S``, ``python -I`` and non-Python children never
load it, so they never say hello and pyair falls back to a restart.

``start()`` only installs a tiny import hook (stdlib ``os``/``sys`` only, nothing else imported).
The agent connects when the app first shows a template engine: when ``jinja2``,
``django.template`` or ``mako.lookup`` is imported, or when ``register()`` is called. So helper
processes that inherit the environment (resource trackers, CLI tools) stay silent, and the
connection comes from the process that actually renders. It then runs on a daemon thread:
sends hello, serves ``swap``/``ping``, never raises into the app, goes quiet when the socket
closes.

Built-in engines:

- Jinja2: every ``Environment`` (plain, Flask's ``app.jinja_env``, Starlette/FastAPI
  ``Jinja2Templates``, overlays; any ``auto_reload``). Changed files are mapped to template
  names through the loader (``FileSystemLoader``, ``PackageLoader``, ``ChoiceLoader``,
  ``PrefixLoader``, Flask's dispatching loader) and through the filenames of loaded templates.
  All are compiled first; only if every one compiles are the cache entries replaced and every
  ``Template`` object the app kept (``page = env.get_template("page.html")``) updated in place.
  A template that extends/includes/imports a changed one renders the new version.
- Django: changed files under a ``DjangoTemplates`` engine's directories are compiled first, then
  the engine's loaders are ``reset()`` (what Django's own autoreloader does).
- Mako: every ``TemplateLookup``; loaded templates whose file changed are recompiled and replaced.

While the agent is connected, templates under the project root (``PYAIR_ROOT``, with an
extension pyair swaps: ``PYAIR_TEMPLATE_EXT``) are pyair's: a Jinja2 template in the cache stays
the one that serves until pyair swaps it, whatever the environment's ``auto_reload`` (Jinja's
own up-to-date check would re-read a broken file and answer 500). A swap whose new text does not
compile keeps the last good one: pyair sends the last text of each file that compiled, and the
agent puts it in the cache of an environment that has not loaded that template yet, so a page
first rendered after the error still serves the old HTML. Templates outside the root (those of
libraries) are left to the framework.

When pyair holds the app's port across restarts (``PYAIR_LISTEN``), the app's own ``bind()`` of
that port adopts pyair's socket as the ``socket`` module is imported (``_sockets``).

Framework reloaders (Werkzeug's ``run_simple(use_reloader=True)``, so ``flask run --debug``
and ``app.run(debug=True)``; Django's ``runserver`` without ``--noreload``; uvicorn's
``--reload``) are switched off as they are imported: the server runs in this process, so
pyair's restarts stay warm and the debugger keeps working; ``pyair -d`` says so in one line.
And uvicorn, asked to stop, stops as soon as nothing is in flight (``_servers``).

Other engines: ``register(callback)``::

    try:
        from supervisor.agent import register
    except ImportError:          # not running under pyair
        register = None

    def swap_my_templates(paths: list[str]) -> list[str]:
        # paths: absolute paths of changed template files (some may not be yours).
        # Validate every one you own before swapping any; on an error raise an exception,
        # ideally with .filename and .lineno (or raise TemplateFailure(msg, filename, lineno)).
        # Then swap and return the names you swapped ([] when none were yours).
        ...

    if register is not None:
        register(swap_my_templates)

Callbacks run on the agent thread, one swap at a time, after the built-in engines validated
their templates and before any built-in swap is committed: a callback that raises cancels the
built-in swaps (callbacks earlier in the list have already swapped theirs). When the name
``supervisor`` belongs to another package in the app (supervisord), the agent is loaded as
``_pyair_supervisor.agent`` instead.
"""

import os
import sys

from ..childside import (
    AGENT_DEBUG_ENV,
    CONTROL_ENV,
    LISTEN_ENV,
    PRELOAD_ENV,
    ROOT_ENV,
    TEMPLATE_EXT_ENV,
    find_spec_past,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from importlib.machinery import ModuleSpec
    from pathlib import Path
    from types import ModuleType

    SwapCallback = Callable[[list[str]], Iterable[str] | None]

__all__ = ["ENV_VAR", "TemplateFailure", "bootstrap_dir", "engines", "register", "unregister"]

ENV_VAR = CONTROL_ENV  # its older name here: the engine imports it by this one


class TemplateFailure(Exception):
    """A changed template does not compile; raise it from a ``register()`` callback."""

    def __init__(self, message: str, filename: str | None = None, lineno: int | None = None):
        super().__init__(message)
        self.message = message
        self.filename = filename
        self.lineno = lineno


_callbacks: "list[SwapCallback]" = []
_engines: list[str] = []
_control_path: str | None = None
_connected = False
_project: "tuple[str, frozenset[str]] | None" = None  # (real root, extensions) pyair swaps
_owned: dict[str, bool] = {}
# Directories whose files pyair never watches, so never swaps: their templates are left alone.
_NOT_WATCHED = frozenset({"site-packages", "dist-packages", "venv", "node_modules", "__pycache__"})


def bootstrap_dir() -> "Path":
    """The directory pyair puts first on the child's PYTHONPATH (holds ``sitecustomize.py``)."""
    from pathlib import Path

    return Path(__file__).resolve().parent / "bootstrap"


def engines() -> list[str]:
    """Template engines seen in this process so far (e.g. ``["jinja2", "custom"]``)."""
    return list(_engines)


def register(callback: "SwapCallback") -> "SwapCallback":
    """Add a swap callback for another template engine (see the module docstring).

    Returns the callback, so it works as a decorator. Registering outside pyair is harmless.
    """
    if callback not in _callbacks:
        _callbacks.append(callback)
    _engine_found("custom")
    return callback


def unregister(callback: "SwapCallback") -> None:
    if callback in _callbacks:
        _callbacks.remove(callback)


def debug(message: str) -> None:
    if os.environ.get(AGENT_DEBUG_ENV):
        warn(message)


def warn(message: str) -> None:
    try:
        sys.stderr.write(f"pyair agent ({os.getpid()}): {message}\n")
        sys.stderr.flush()
    except Exception:
        pass


def owns(filename: "str | None") -> bool:
    """Whether pyair swaps this template file: under the project root, with a template
    extension, outside the directories pyair never watches (hidden ones, venvs, packages)."""
    if not filename or _project is None:
        return False
    owned = _owned.get(filename)
    if owned is None:
        owned = _owned[filename] = _is_projects(filename, *_project)
    return owned


def _is_projects(filename: str, root: str, exts: "frozenset[str]") -> bool:
    path = os.path.realpath(filename)
    if not path.startswith(root + os.sep):
        return False
    parts = path[len(root) + 1 :].split(os.sep)
    if any(part.startswith(".") or part in _NOT_WATCHED for part in parts[:-1]):
        return False
    name = parts[-1]
    return "." in name and name.rpartition(".")[2].lower() in exts


def note(text: str) -> None:
    """Tell pyair something about this process (``pyair -d`` shows it, once per text)."""
    try:
        from . import _runtime

        _runtime.note(text)
    except Exception as exc:
        warn(f"cannot send a note: {type(exc).__name__}: {exc}")
    _connect()


def _engine_found(name: str) -> None:
    if name not in _engines:
        _engines.append(name)
    _connect()


def _connect() -> None:
    global _connected
    if _control_path is None or _connected:
        return
    _connected = True
    try:
        from . import _runtime

        _runtime.start(_control_path)
    except Exception as exc:
        warn(f"cannot start: {type(exc).__name__}: {exc}")


# --- import hooks: notice template engines without importing them ---------------------------


def _on_jinja2(module: "ModuleType") -> None:
    from . import _jinja

    _jinja.install()
    _engine_found("jinja2")


def _on_django_template(module: "ModuleType") -> None:
    from . import _django

    _django.install()
    _engine_found("django")


def _on_mako_lookup(module: "ModuleType") -> None:
    from . import _mako

    _mako.install(module)
    _engine_found("mako")


def _on_reloader(module: "ModuleType") -> None:
    from . import _reloaders

    _reloaders.switch_off(module)


def _on_socket(module: "ModuleType") -> None:
    from . import _sockets

    _sockets.install(module)


def _on_uvicorn_server(module: "ModuleType") -> None:
    from . import _servers

    _servers.stop_quickly(module)


def _on_uvicorn_http(module: "ModuleType") -> None:
    from . import _servers

    _servers.answer_fresh_connections(module)


_HOOKS: "dict[str, Callable[[ModuleType], None]]" = {
    "jinja2": _on_jinja2,
    "django.template": _on_django_template,
    "mako.lookup": _on_mako_lookup,
    "werkzeug.serving": _on_reloader,
    "django.utils.autoreload": _on_reloader,
    "uvicorn.config": _on_reloader,
    "uvicorn.server": _on_uvicorn_server,
    "uvicorn.protocols.http.h11_impl": _on_uvicorn_http,
    "uvicorn.protocols.http.httptools_impl": _on_uvicorn_http,
}


def _run_hook(name: str, module: "ModuleType") -> None:
    try:
        _HOOKS[name](module)
    except Exception as exc:  # never break the app's import
        warn(f"{name} hook failed: {type(exc).__name__}: {exc}")


class _HookedLoader:
    """Wraps a module's real loader for one import, then puts the real loader back."""

    def __init__(self, loader: object, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: "ModuleSpec") -> "ModuleType | None":
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: "ModuleType") -> None:
        # The module only ever sees its real loader.
        module.__loader__ = self._loader  # type: ignore[assignment]
        spec = getattr(module, "__spec__", None)
        if spec is not None:
            spec.loader = self._loader
        self._loader.exec_module(module)  # type: ignore[attr-defined]
        _run_hook(self._name, module)


class _ImportWatcher:
    """A ``sys.meta_path`` finder that only ever answers for the hooked module names."""

    def find_spec(
        self, fullname: str, path: "Sequence[str] | None", target: "ModuleType | None" = None
    ) -> "ModuleSpec | None":
        if fullname not in _HOOKS:
            return None
        spec = find_spec_past(self, fullname, path, target)
        if spec is None:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _HookedLoader(spec.loader, fullname)  # type: ignore[assignment]
        return spec

    def invalidate_caches(self) -> None:
        pass


_watcher: _ImportWatcher | None = None


def install_hooks() -> None:
    """Watch for template engines being imported (and catch up on ones already imported)."""
    global _watcher
    if _watcher is None:
        _watcher = _ImportWatcher()
        sys.meta_path.insert(0, _watcher)
    for name in _HOOKS:
        module = sys.modules.get(name)
        if module is not None:
            _run_hook(name, module)


def start(control_path: str | None = None) -> bool:
    """Arm the agent (the bootstrap calls this): True if ``PYAIR_CONTROL`` names a socket."""
    global _control_path, _project
    path = control_path if control_path is not None else os.environ.get(CONTROL_ENV)
    if not path:
        return False
    _control_path = path
    root = os.environ.get(ROOT_ENV)
    if root:
        exts = os.environ.get(TEMPLATE_EXT_ENV, "").lower().split(",")
        _project = (os.path.realpath(root), frozenset(ext for ext in exts if ext))
    if os.environ.get(LISTEN_ENV):  # pyair holds the app's port: its bind() adopts it
        _HOOKS["socket"] = _on_socket
    install_hooks()
    if _engines:  # something registered before start
        _engine_found(_engines[0])
    if os.environ.get(PRELOAD_ENV) == "auto":  # report the imported modules (see _preload)
        try:
            from . import _preload

            _preload.start(path)
        except Exception as exc:
            warn(f"cannot report modules: {type(exc).__name__}: {exc}")
    return True
