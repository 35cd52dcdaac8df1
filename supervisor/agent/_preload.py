"""Tells pyair which modules the app imported, for ``[build] preload = "auto"``.

Only in the app's leader (the process pyair started, leader of its own session): a zygote's
fork replaces that one. A daemon thread (``_thread``: nothing imported at start-up) sends the
app's ``sys.modules`` on a short control-socket connection of its own, a second after start
and a few times later while the set keeps growing (lazy imports on the first requests), then
ends. pyair keeps the libraries and the standard library and drops the project's own modules.
"""

from __future__ import annotations

import os
import sys

from ..childside import UntrustedListener, connect_control, module_location
from . import debug, warn

REPORT_AT_S = (1.0, 3.0, 10.0, 30.0)  # after start; a report only when sys.modules grew


def start(control_path: str) -> bool:
    """Start the reporter thread in the session leader; False anywhere else."""
    if not hasattr(os, "getsid") or os.getsid(0) != os.getpid():
        return False
    import _thread

    _thread.start_new_thread(_run, (control_path,))
    return True


def _run(control_path: str) -> None:
    import time

    started = time.monotonic()
    sent = 0
    for at in REPORT_AT_S:
        time.sleep(max(0.0, started + at - time.monotonic()))
        count = len(sys.modules)
        if count == sent:
            continue
        sent = count
        try:
            report(control_path)
        except UntrustedListener as exc:
            warn(f"refused the control socket: {exc}")
            return
        except Exception as exc:  # pyair gone, socket closed: never the app's problem
            debug(f"modules report failed: {type(exc).__name__}: {exc}")
            return


def snapshot() -> tuple[list[str], list[str]]:
    """(names, files) of ``sys.modules``: each module's file, or package directory, or ''."""
    names: list[str] = []
    files: list[str] = []
    for name, module in list(sys.modules.items()):
        names.append(name)
        files.append(module_location(module))
    return names, files


def report(control_path: str) -> None:
    from .. import protocol

    names, files = snapshot()
    prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix]
    data = protocol.encode(protocol.modules(os.getpid(), names, files, prefixes))
    with connect_control(control_path, timeout=2.0) as sock:  # checks who listens first
        sock.sendall(data)
    debug(f"reported {len(names)} modules")
