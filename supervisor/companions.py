"""What runs beside the app: air's build rules and the extra processes (``[[process]]``).

    runner = RuleRunner(delay_ms=1000, run=run_the_command)   # run(paths) -> Awaitable[None]
    tg.start_soon(runner.run)
    runner.changed(paths)      # debounced; one run at a time, at most one more queued

    companion = Companion(name, start=start_it, stop=stop_it, report=report, backoff=backoff)
    await tg.start(companion.run, "start")   # its first process is started
    companion.restart("app")                 # stop its whole tree, start a new one
    await companion.close(stop=True)         # on the way out

The engine decides when (which rule a file belongs to, which process restarts with the app);
these keep each one's own state: a rule's quiet window and its single run in flight, a
process's current tree, its reruns with back-off after a crash. They touch nothing
themselves: the commands run and the trees start and stop through callables the engine
gives them (the runtime's effects).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
from anyio.abc import TaskStatus

from .errors import PyairError
from .process import StopReport

BACKOFF_CAP_MS = 30_000
STABLE_RUN_S = 10.0  # a process that ran this long before it exited starts its back-off afresh
MIN_RULE_CAP_MS = 1000  # a rule's burst is cut max(this, 10 x delay) after its first change


class Backoff:
    """Doubling delays before each rerun: ``first_ms``, twice that... capped at 30 s; a run
    that lasted STABLE_RUN_S resets it."""

    def __init__(self, first_ms: int) -> None:
        self.first_ms = first_ms
        self._next_ms = first_ms

    def next_delay(self, ran_s: float) -> int:
        """The delay before the next rerun of something that ran ``ran_s`` seconds."""
        if ran_s >= STABLE_RUN_S:
            self._next_ms = self.first_ms
        delay = self._next_ms
        self._next_ms = min(max(delay * 2, 1), BACKOFF_CAP_MS)
        return delay


# --------------------------------------------------------------------------- build rules


class RuleRunner:
    """One ``[[build.rules]]`` entry's runs: a trailing quiet window of ``delay_ms`` after
    the last change (cut ``max(1 s, 10 x delay)`` after the first), then one run with every
    path changed meanwhile. Changes during a run queue exactly one more run, never a second
    one in parallel."""

    def __init__(self, delay_ms: int, run: Callable[[tuple[str, ...]], Awaitable[None]]) -> None:
        self.delay_s = max(0, delay_ms) / 1000
        self.cap_s = max(MIN_RULE_CAP_MS, 10 * delay_ms) / 1000
        self._run = run
        self._pending: set[str] = set()
        self._first_at = 0.0
        self._last_at = 0.0
        self._wake = anyio.Event()
        self.runs = 0  # started so far
        self.running = False

    @property
    def idle(self) -> bool:
        """Nothing running and nothing waiting to run."""
        return not self.running and not self._pending

    def changed(self, paths: tuple[str, ...]) -> None:
        """Files of this rule changed (called on the event loop, never blocks)."""
        now = time.monotonic()
        if not self._pending:
            self._first_at = now
        self._last_at = now
        self._pending.update(paths)
        self._wake.set()

    async def _woken(self, timeout: float = math.inf) -> None:
        with anyio.move_on_after(timeout):
            await self._wake.wait()
        self._wake = anyio.Event()

    async def run(self) -> None:
        """Run the rule whenever it is due, until cancelled."""
        while True:
            while not self._pending:
                await self._woken()
            while (due := min(self._first_at + self.cap_s, self._last_at + self.delay_s)) > (
                now := time.monotonic()
            ):
                await self._woken(due - now)
            paths = tuple(sorted(self._pending))
            self._pending.clear()
            self.runs += 1
            self.running = True
            try:
                await self._run(paths)
            finally:
                self.running = False


# --------------------------------------------------------------------------- extra processes


class Handle(Protocol):
    """One started process tree (the runtime's ``AppProcess``)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    async def stop(self, *, interrupt: bool, kill_delay_ms: int) -> StopReport: ...

    async def kill(self) -> None: ...


class CompanionReport(Protocol):
    """What a companion says happened (the engine turns it into lines and events)."""

    def started(self, name: str, handle: Handle, generation: int, reason: str) -> None: ...

    def exited(self, name: str, handle: Handle, code: int, retry_ms: int) -> None: ...

    def failed(self, name: str, error: str, retry_ms: int) -> None: ...


class Companion:
    """One extra process: started, restarted on request, rerun with back-off when it exits
    on its own (or cannot start), stopped whole on the way out. Its crash is its own: the
    app and the other processes go on."""

    def __init__(
        self,
        name: str,
        *,
        start: Callable[[int], Awaitable[Handle]],
        stop: Callable[[Handle], Awaitable[object]],
        report: CompanionReport,
        backoff: Backoff,
    ) -> None:
        """``start(generation)`` starts its tree (PyairError or OSError when it cannot);
        ``stop(handle)`` stops one tree whole."""
        self.name = name
        self._start = start
        self._stop = stop
        self._report = report
        self._backoff = backoff
        self.handle: Handle | None = None
        self._stopping: Handle | None = None
        self.generation = 0
        self._started_at = 0.0
        self._retry_at: float | None = None
        self._requested: str | None = None
        self._wake = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._closed = False

    def restart(self, reason: str) -> None:
        """Stop the current tree (if any) and start a new one, now (never waits)."""
        if not self._closed:
            self._requested = reason
            self._wake.set()

    async def run(
        self, reason: str, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the first tree (``task_status.started()`` once it is spawned, or could not
        be), then supervise it until :meth:`close`."""
        with anyio.CancelScope() as self._scope:
            async with anyio.create_task_group() as tg:
                await self._spawn(tg, reason)
                task_status.started()
                while not self._closed:
                    await self._next(tg)

    async def _next(self, tg: anyio.abc.TaskGroup) -> None:
        timeout = math.inf
        if self.handle is None and self._retry_at is not None:
            timeout = max(0.0, self._retry_at - time.monotonic())
        with anyio.move_on_after(timeout):
            await self._wake.wait()
        self._wake = anyio.Event()
        if self._closed:
            return
        if self._requested is not None:
            reason, self._requested = self._requested, None
            await self._stop_current()
            await self._spawn(tg, reason)
            return
        handle = self.handle
        if handle is not None and handle.returncode is not None:  # exited on its own
            self.handle = None
            delay = self._backoff.next_delay(time.monotonic() - self._started_at)
            self._retry_at = time.monotonic() + delay / 1000
            self._report.exited(self.name, handle, handle.returncode, delay)
            return
        retry_at = self._retry_at
        if self.handle is None and retry_at is not None and time.monotonic() >= retry_at:
            await self._spawn(tg, "rerun")

    async def _spawn(self, tg: anyio.abc.TaskGroup, reason: str) -> None:
        self.generation += 1
        self._retry_at = None
        try:
            handle = await self._start(self.generation)
        except (PyairError, OSError) as exc:
            delay = self._backoff.next_delay(0.0)
            self._retry_at = time.monotonic() + delay / 1000
            self._report.failed(self.name, str(exc), delay)
            return
        self.handle = handle
        self._started_at = time.monotonic()
        self._report.started(self.name, handle, self.generation, reason)
        tg.start_soon(self._watch_exit, handle)

    async def _watch_exit(self, handle: Handle) -> None:
        await handle.wait()
        if handle is self.handle:
            self._wake.set()

    async def _stop_current(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            self._stopping = handle
            try:
                with anyio.CancelScope(shield=True):
                    await self._stop(handle)
            finally:
                self._stopping = None

    async def kill(self) -> None:
        """Kill the current tree at once (a second Ctrl-C), even while it is being stopped."""
        handle = self.handle or self._stopping
        if handle is not None:
            await handle.kill()

    async def close(self, *, stop: bool = True) -> None:
        """Supervise no more; with ``stop``, stop the current tree whole (shielded)."""
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        if stop:
            await self._stop_current()
