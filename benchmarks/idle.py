"""Idle cost: CPU time and wakeups of pyair's own processes and threads vs the watchfiles CLI.

    python -m benchmarks.idle --seconds 30

Both tools supervise their own copy of the tiny http.server app, side by side in the same
window, with nothing changing. pyair runs with its defaults and is brought to its steady
state first (one ``.py`` save, so the app is a warm one forked from a waiting zygote).
Counted for pyair: its own process, every process it started except the app (the guardian,
the zygotes) and, inside the app, every thread but the main one (the tiny app runs no thread of
its own while idle: what is there is the agent's); for the watchfiles CLI: its own process
(the app it restarts is not counted). Per thread, from ``/proc``: CPU time from
``schedstat`` (nanoseconds) and wakeups as voluntary + involuntary context switches from
``status``.

A third row, pyair with ``preload = false``, shows what is left without the zygote (whose
library directories pyair watches with inotify). Threads that end during the window (the agent's module
reporter stops 30 s after the app started) are listed as ended; what they did is not counted.

Targets: pyair ≤ 0.15 % of a core and ≤ 1.5x the watchfiles CLI.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .common import Supervised, save_version, watchfiles_cli
from .reload import pyair, pyair_cold, write_app

COLD = "pyair preload=false"  # the same without a zygote: what the zygote's upkeep costs
TARGET_CPU_PCT = 0.15
TARGET_RATIO = 1.5


@dataclass(frozen=True)
class Thread:
    role: str  # "pyair", "guardian", "zygote", "app: agent", "watchfiles CLI"
    pid: int
    tid: int
    name: str = field(compare=False)  # main/thread and where it waits: changes while it runs


@dataclass
class Sample:
    cpu_ns: int
    switches: int


def _read_thread(pid: int, tid: int) -> Sample | None:
    task = Path(f"/proc/{pid}/task/{tid}")
    try:
        cpu_ns = int((task / "schedstat").read_text().split()[0])
        switches = 0
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return Sample(cpu_ns, switches)


def _threads_of(pid: int) -> list[tuple[int, str]]:
    """(tid, label) per thread: ``main`` or ``thread``, and where the kernel has it waiting."""
    out = []
    try:
        tasks = sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda p: int(p.name))
    except OSError:
        return out
    for task in tasks:
        tid = int(task.name)
        try:
            wchan = (task / "wchan").read_text().strip() or "running"
        except OSError:
            continue
        out.append((tid, f"{'main' if tid == pid else 'thread'} ({wchan})"))
    return out


def _role(root: psutil.Process, proc: psutil.Process, tool: str) -> str:
    if proc.pid == root.pid:
        return tool
    try:
        argv = proc.cmdline()
    except psutil.Error:
        return "gone"
    if any("zygote" in arg for arg in argv):
        return "zygote"
    if "-I" in argv and "-S" in argv and "-c" in argv:  # the orphan guardian's own interpreter
        return "guardian"
    return "app"


def _listener(port: int) -> psutil.Process | None:
    """The process listening on ``port`` (a warm app may have been re-parented away)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return psutil.Process(conn.pid) if conn.pid else None
    return None


def threads(root_pid: int, tool: str, port: int) -> list[Thread]:
    """The threads counted for ``tool``: see the module docstring."""
    root = psutil.Process(root_pid)
    procs = {p.pid: p for p in [root, *root.children(recursive=True)]}
    app = _listener(port)
    if app is not None:
        procs.setdefault(app.pid, app)
    found: list[Thread] = []
    for proc in procs.values():
        role = _role(root, proc, tool)
        for tid, label in _threads_of(proc.pid):
            if role != "app":
                found.append(Thread(role, proc.pid, tid, label))
            elif tool.startswith("pyair") and tid != proc.pid:
                found.append(Thread("app: agent", proc.pid, tid, label))
    return found


@dataclass
class Usage:
    tool: str
    seconds: float
    per_thread: dict[Thread, Sample]
    ended: list[Thread] = field(default_factory=list)

    @property
    def cpu_pct(self) -> float:
        return sum(s.cpu_ns for s in self.per_thread.values()) / (self.seconds * 1e9) * 100

    @property
    def wakeups(self) -> float:
        return sum(s.switches for s in self.per_thread.values()) / self.seconds


def measure(tools: dict[str, tuple[int, int]], seconds: float) -> list[Usage]:
    """Per-thread deltas over ``seconds`` per tool (name → root pid, app port), one window."""
    counted = {tool: threads(pid, tool, port) for tool, (pid, port) in tools.items()}
    before = {t: s for ts in counted.values() for t in ts if (s := _read_thread(t.pid, t.tid))}
    started = time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - started
    out = []
    for tool, (pid, port) in tools.items():
        now = threads(pid, tool, port)
        deltas = {}
        for thread in now:
            after = _read_thread(thread.pid, thread.tid)
            if after is None:
                continue
            first = before.get(thread, Sample(0, 0))  # a thread born meanwhile counts whole
            deltas[thread] = Sample(after.cpu_ns - first.cpu_ns, after.switches - first.switches)
        ended = [t for t in counted[tool] if t not in deltas]
        out.append(Usage(tool, elapsed, deltas, ended))
    return out


def _roles(tool: Supervised) -> list[str]:
    return sorted({thread.role for thread in threads(tool.proc.pid, "pyair", tool.port)})


def _wait_for_roles(tool: Supervised, role: str, timeout: float) -> None:
    """Until ``role`` is among pyair's processes and the set stayed the same for a second."""
    deadline = time.monotonic() + timeout
    last, since = _roles(tool), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)  # poll
        now = _roles(tool)
        if now != last:
            last, since = now, time.monotonic()
        elif role in now and time.monotonic() - since >= 1.0:
            return
    raise TimeoutError(f"pyair never settled with a {role}: {last}")


def settle(tool: Supervised) -> None:
    """pyair's steady state: one warm restart done and a zygote waiting again."""
    _wait_for_roles(tool, "zygote", timeout=30)
    tool.round(save_version)
    _wait_for_roles(tool, "zygote", timeout=30)


def run(seconds: float) -> list[Usage]:
    base = Path(tempfile.mkdtemp(prefix="pyair-bench-idle-"))
    tools: list[Supervised] = []
    try:
        tools.append(Supervised("pyair", base, pyair, write_app, ready="version=0"))
        tools.append(Supervised(COLD, base, pyair_cold, write_app, ready="version=0"))
        tools.append(
            Supervised("watchfiles CLI", base, watchfiles_cli(), write_app, ready="version=0")
        )
        settle(tools[0])
        tools[1].round(save_version)  # the same history: one restart (a cold one here)
        return measure({tool.name: (tool.proc.pid, tool.port) for tool in tools}, seconds)
    finally:
        for tool in tools:
            tool.close()
        shutil.rmtree(base, ignore_errors=True)


def report(usages: Iterable[Usage]) -> str:
    usages = list(usages)
    lines = [
        f"idle cost over {usages[0].seconds:.0f} s, nothing changing (CPU % of one core)",
        f"{'tool':<34} {'CPU %':>8} {'wakeups/s':>10}",
    ]
    for usage in usages:
        lines.append(f"{usage.tool:<34} {usage.cpu_pct:>8.3f} {usage.wakeups:>10.1f}")
    for usage in usages:
        lines.append(f"{usage.tool}, per thread:")
        for thread, sample in sorted(usage.per_thread.items(), key=lambda kv: -kv[1].switches):
            name = re.sub(r"\s+", " ", thread.name)
            lines.append(
                f"  {thread.role + ' / ' + name:<40} {sample.cpu_ns / (usage.seconds * 1e7):>8.3f}"
                f" {sample.switches / usage.seconds:>10.2f}"
            )
        for thread in usage.ended:
            lines.append(f"  {thread.role + ' / ' + thread.name:<40} {'ended':>8}")
    return "\n".join(lines)


def verdict(usages: list[Usage]) -> str:
    by_tool = {u.tool: u for u in usages}
    ours, peer = by_tool["pyair"], by_tool["watchfiles CLI"]
    ratio = ours.cpu_pct / peer.cpu_pct if peer.cpu_pct else float("inf")
    ok_abs = "ok" if ours.cpu_pct <= TARGET_CPU_PCT else "MISSED"
    ok_ratio = "ok" if ratio <= TARGET_RATIO else "MISSED"
    return (
        f"targets for pyair idle: ≤ {TARGET_CPU_PCT} % of a core: {ours.cpu_pct:.3f} % {ok_abs}; "
        f"≤ {TARGET_RATIO}x the watchfiles CLI: {ratio:.2f}x {ok_ratio}"
    )


def main(argv: list[str] | None = None) -> list[Usage]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    usages = run(args.seconds)
    print(report(usages))
    print(verdict(usages))
    return usages


if __name__ == "__main__":
    main()
