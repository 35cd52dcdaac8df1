"""The orphan guardian: kills pyair's app trees when pyair dies, even by SIGKILL.

pyair (:class:`supervisor.process.Guardian`) runs it as ``<pyair's python> -I -S guardian_main.py
TOKEN`` in its own session, stdin a pipe from pyair, stdout and stderr closed: the standard
library only and no site, so it starts in a few ms. The pipe carries pyair's frames
(:mod:`supervisor.childside`, loaded by path)::

    pyair -> guardian  {"op": "remove", "path": "/run/user/1000/pyair-x1y2z3a4"}
                       a private directory of pyair's to remove when pyair dies
    pyair -> guardian  {"op": "bye"}    pyair is done: exit without touching anything

At the pipe's end without a bye (pyair died, or closed it to ask for a last sweep), it SIGKILLs
every process whose environment carries ``PYAIR_TREE=TOKEN`` (or a token nested under it), pass
after pass until a pass finds none or ``SWEEP_S`` passed, removes the directories it was given
(still ours: a directory owned by this uid, not a link) with the files in them, and exits. It
ignores the signals a terminal or a dying session sends (SIGINT, SIGTERM, SIGHUP, SIGPIPE): it
must outlive pyair.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

    from . import childside  # at run time: _load_childside()

SWEEP_S = 2.0  # a tree that keeps forking is swept for at most this long
SWEEP_PAUSE_S = 0.01  # between passes


def _load_childside() -> ModuleType:
    """pyair's child-side module, from the file next to this one, without touching sys.path."""
    from _frozen_importlib import ModuleSpec, module_from_spec
    from _frozen_importlib_external import SourceFileLoader

    name, path = "_pyair_childside", os.path.join(os.path.dirname(__file__), "childside.py")
    loader = SourceFileLoader(name, path)
    spec = ModuleSpec(name, loader, origin=path)
    spec.has_location = True
    module = module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[name] = module
    return module


if not TYPE_CHECKING:
    childside = _load_childside()


def said_bye(channel: childside.FrameChannel, to_remove: list[str] | None = None) -> bool:
    """Read pyair's frames until it says bye (True) or the pipe ends (False); the paths of
    ``remove`` frames are added to ``to_remove``."""
    while not channel.closed:
        try:
            frames = channel.read()
        except childside.FrameError:  # garbage on the pipe: only its end counts now
            continue
        for frame in frames:
            if not isinstance(frame, dict):
                continue
            if frame.get("op") == "bye":
                return True
            path = frame.get("path")
            if frame.get("op") == "remove" and isinstance(path, str) and to_remove is not None:
                to_remove.append(path)
    return False


def remove_directory(path: str) -> bool:
    """Remove ``path`` and the files in it if it is still pyair's private directory (a
    directory owned by this uid, not a link); whether it is gone."""
    import contextlib
    import stat

    try:
        info = os.lstat(path)
    except OSError:
        return True
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return False
    try:
        names = os.listdir(path)
    except OSError:
        return False
    for name in names:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(path, name))
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


def sweep(token: str) -> int:
    """SIGKILL every process carrying ``token`` until none is left or SWEEP_S passed; how many
    signals were sent."""
    import signal
    import time

    needles = childside.token_needles(token)
    spared = {0, 1, os.getpid()}
    deadline = time.monotonic() + SWEEP_S
    killed = 0
    while True:
        hits = 0
        try:
            names = os.listdir(childside.PROC)
        except OSError:
            names = []
        for name in names:
            if not name.isdigit() or int(name) in spared:
                continue
            if childside.carries_token(name, needles):
                try:
                    os.kill(int(name), signal.SIGKILL)
                    hits += 1
                except OSError:
                    pass
        killed += hits
        if not hits or time.monotonic() > deadline:
            return killed
        time.sleep(SWEEP_PAUSE_S)


def main(argv: list[str]) -> int:
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)
    to_remove: list[str] = []
    if not said_bye(childside.FrameChannel(0), to_remove):
        sweep(argv[1])
        for path in to_remove:
            remove_directory(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
