"""The watchfiles backend: polling, and the native watchers of platforms without inotify.

    backend = WatchfilesBackend(rules, polling=True, poll_ms=500, known=..., notice=..., say=...)
    found = await tg.start(backend.run, sink)   # every watch in place; the tree as it was then

Used for ``[build] poll = true``, under WSL and with ``WATCHFILES_FORCE_POLLING`` (as watchfiles
itself decides), after an inotify limit was reached, and on platforms other than Linux
(FSEvents, kqueue, ReadDirectoryChangesW through watchfiles' ``notify``). The only module that
imports watchfiles.

* Every kept directory is watched *non-recursively*, so an excluded tree is never scanned. A
  directory created, deleted or re-created at run time means a new ``awatch`` over the new set
  (a "generation"); the old one keeps running until the new one is armed and a little longer,
  so nothing in between is lost, and the new directory is listed: what is already in it is
  reported as added.
* watchfiles' loop wakes every ``step`` to look at its pending set (it cannot sleep on a
  descriptor), and its batches are sets: the order of events is lost, so the watcher settles
  each path from whether it exists when the burst is emitted.
* Polling: notify's poller keeps whole-second mtimes (watchfiles #319: a second save within the
  same second is never seen), so known files are also stat'ed with nanosecond mtimes each poll
  interval.
* A watched directory whose parent is not watched (the project root) that disappears is
  announced in one line and looked for every poll interval (once a second natively) until it
  is back; then it is watched and rescanned again.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import (
    MemoryObjectReceiveStream,
    MemoryObjectSendStream,
)
from watchfiles import Change as WatchfilesChange
from watchfiles import awatch

from ..classify import Change
from .changes import Message, RawBatch, RawChange, Rescan, Unwatched
from .rules import Rules
from .tree import Signature, Walk, changed_signatures, initial_walk, walk

logger = logging.getLogger("pyair.watcher")

NATIVE_STEP_MS = 20  # how often watchfiles' loop looks at its pending set (native watchers)
POLL_STEP_MS = 50  # the same while polling, where the poll interval dominates anyway
RUST_TIMEOUT_MS = 1000  # an idle awatch call returns (and yields) this often
NATIVE_RETIRE_S = 0.25  # a superseded native awatch runs on this long after its successor
ROOT_CHECK_NATIVE_S = 1.0  # how often a missing root is looked for, natively


def wants_polling() -> bool:
    """Whether watchfiles would poll here by itself: WATCHFILES_FORCE_POLLING, or WSL, where
    changes made from Windows never reach inotify (watchfiles #187)."""
    value = os.environ.get("WATCHFILES_FORCE_POLLING")
    if value:
        return value.lower() not in {"false", "disable", "disabled"}
    return "microsoft-standard" in platform.uname().release.lower()


class _Armed(threading.Event):
    """awatch's ``stop_event``: watchfiles' Rust loop first calls ``is_set()`` once its
    watcher has added every OS watch, so that first call tells when the generation is armed.
    Setting it stops that awatch within a step."""

    def __init__(self, on_armed: Callable[[], None]) -> None:
        super().__init__()
        self._on_armed: Callable[[], None] | None = on_armed

    def is_set(self) -> bool:
        on_armed, self._on_armed = self._on_armed, None
        if on_armed is not None:
            try:
                anyio.from_thread.run_sync(on_armed)
            except Exception:  # not in an anyio worker thread, or the loop is gone
                logger.debug("could not report the armed watcher", exc_info=True)
        return super().is_set()


@dataclass(eq=False)
class _Generation:
    """One ``awatch`` over one fixed set of directories."""

    dirs: frozenset[str]
    armed: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None
    stop: _Armed = field(init=False)

    def __post_init__(self) -> None:
        self.stop = _Armed(self.armed.set)


class WatchfilesBackend:
    """Watches the kept directories through watchfiles; see the module docstring."""

    def __init__(
        self,
        rules: Rules,
        *,
        polling: bool,
        poll_ms: int,
        known: Mapping[str, Signature | None],
        notice: Callable[[str], None],
        say: Callable[[str], None],
    ) -> None:
        self.rules = rules
        self.polling = polling
        self.poll_ms = poll_ms
        self.step_ms = POLL_STEP_MS if polling else NATIVE_STEP_MS
        self._known = known  # the watcher's: files and their signatures (read only here)
        self._notice = notice
        self._say = say
        self._dirs: set[str] = set()
        self._missing: set[str] = set()
        self._current: _Generation | None = None
        self._generations: list[_Generation] = []
        self._raw_send: MemoryObjectSendStream[list[tuple[WatchfilesChange, str]]] | None = None
        self._tg: TaskGroup | None = None
        self.started = False

    @property
    def dirs(self) -> set[str]:
        return set(self._dirs)

    @property
    def margin_s(self) -> float:
        """How late a change made before may still be reported (see debounce)."""
        step = self.step_ms / 1000
        return self.poll_ms / 1000 + 4 * step + 0.1 if self.polling else 2 * step

    @property
    def eager_s(self) -> float:
        return 2 * self.step_ms / 1000

    # -- lifetime ------------------------------------------------------------------------

    async def run(
        self,
        sink: MemoryObjectSendStream[Message],
        *,
        task_status: TaskStatus[Walk] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Watch until cancelled. ``task_status.started(walk)`` once every watch is in place."""
        raw_send, raw_recv = anyio.create_memory_object_stream[list[tuple[WatchfilesChange, str]]](
            float("inf")
        )
        async with raw_send, raw_recv, anyio.create_task_group() as tg:
            self._tg, self._raw_send = tg, raw_send
            try:
                found = await anyio.to_thread.run_sync(initial_walk, self.rules)
                self._dirs = set(found.dirs)
                generation = await self._arm(self._dirs, initial=True)
                self._current = generation
                if self.polling:
                    tg.start_soon(self._poll_signatures, sink)
                tg.start_soon(self._look_for_missing_roots, sink)
                self.started = True
                task_status.started(found)
                await self._process(raw_recv, sink)
            finally:
                for generation in self._generations:
                    generation.stop.set()
                tg.cancel_scope.cancel()

    # -- generations ---------------------------------------------------------------------

    async def _arm(self, dirs: set[str], *, initial: bool) -> _Generation | None:
        """Start an awatch over ``dirs`` and wait until its watches are in place."""
        assert self._tg is not None
        wanted = set(dirs)
        for _attempt in range(10):
            generation = _Generation(frozenset(wanted))
            if not wanted:  # nothing to watch (the root is gone): no awatch at all
                return generation
            self._generations.append(generation)
            self._tg.start_soon(self._pump, generation)
            await generation.armed.wait()
            error = generation.error
            if error is None:
                return generation
            if isinstance(error, FileNotFoundError):  # a directory went away meanwhile
                wanted = {d for d in wanted if os.path.isdir(d)}
                continue
            if initial:
                raise error
            self._notice(f"cannot watch new directories: {short_error(error)}")
            return None
        if initial:
            raise RuntimeError("the watched directories keep disappearing")
        return None

    async def _pump(self, generation: _Generation) -> None:
        """Run one awatch, forwarding its raw batches; a failure while running stops all."""
        assert self._raw_send is not None
        raw_send = self._raw_send
        rules = self.rules

        def watch_filter(change: WatchfilesChange, path: str) -> bool:
            # files by air's rules, plus any directory event (new or gone directories)
            return (
                rules.accept(Change(int(change)), path)
                or path in generation.dirs
                or (change != WatchfilesChange.deleted and os.path.isdir(path))
            )

        try:
            async for changes in awatch(
                *sorted(generation.dirs),
                watch_filter=watch_filter,
                debounce=self.step_ms,
                step=self.step_ms,
                stop_event=generation.stop,
                rust_timeout=RUST_TIMEOUT_MS,
                yield_on_timeout=True,
                force_polling=self.polling,
                poll_delay_ms=self.poll_ms,
                recursive=False,
                ignore_permission_denied=False,
            ):
                if changes:
                    raw_send.send_nowait(sorted(changes))
        except Exception as exc:
            generation.error = exc
            if generation.armed.is_set():
                raise  # it failed while running: the watcher decides what next
        finally:
            generation.armed.set()
            generation.done.set()
            if generation in self._generations:
                self._generations.remove(generation)

    async def _rearm(
        self, new_dirs: list[str], sink: MemoryObjectSendStream[Message], *, report: bool = True
    ) -> dict[str, Signature | None]:
        """Swap in an awatch over the updated directory set. The new directories are listed
        once their watches are in place; what is in them is reported as added (``report``),
        or returned for the caller to compare with what it knew."""
        old = self._current
        found: dict[str, Signature | None] = {}
        while True:
            listed = await anyio.to_thread.run_sync(walk, self.rules, new_dirs)
            generation = await self._arm(self._dirs | set(listed.dirs), initial=False)
            if generation is None:
                return found  # notice given; keep the old awatch
            self._say(f"re-armed: {len(generation.dirs)} directories (+{len(listed.dirs)})")
            # files (and directories) that appeared before the new watches were in place
            rescan = await anyio.to_thread.run_sync(walk, self.rules, new_dirs)
            found.update(rescan.files)
            vanished = self._dirs - generation.dirs
            self._current, self._dirs = generation, set(generation.dirs)
            if vanished:
                self._drop(sorted(vanished), sink)
            if rescan.files and report:
                adds = [RawChange(Change.added, path) for path in sorted(rescan.files)]
                sink.send_nowait(RawBatch(adds, False, time.monotonic()))
            if old is not None and old is not generation:
                assert self._tg is not None
                self._tg.start_soon(self._retire, old)
            missing = [d for d in rescan.dirs if d not in generation.dirs]
            if not missing:
                return found
            old, new_dirs = generation, missing

    async def _retire(self, old: _Generation) -> None:
        """Stop a superseded awatch once what it saw before its successor was armed has come
        through: a poll interval and a half when polling, a few steps natively."""
        linger = 1.5 * self.poll_ms / 1000 + 2 * self.step_ms / 1000
        await anyio.sleep(linger if self.polling else NATIVE_RETIRE_S)
        old.stop.set()

    def _drop(self, gone: Iterable[str], sink: MemoryObjectSendStream[Message]) -> None:
        """Forget directories (and their subdirectories); their known files are gone."""
        prefixes = tuple(d.rstrip("/") + "/" for d in gone)
        dropped = {d for d in self._dirs if d in gone or d.startswith(prefixes)}
        dropped.update(gone)
        self._dirs -= dropped
        for d in sorted(dropped):
            self._say(f"unwatch {self.rules.rel(d)}")
        sink.send_nowait(Unwatched(tuple(sorted(dropped)), time.monotonic(), ordered=False))

    # -- raw batches ---------------------------------------------------------------------

    async def _process(
        self,
        raw_recv: MemoryObjectReceiveStream[list[tuple[WatchfilesChange, str]]],
        sink: MemoryObjectSendStream[Message],
    ) -> None:
        """Forward file changes; re-arm for directories created, deleted or re-created."""
        async for batch in raw_recv:
            stamp = time.monotonic()
            files: list[RawChange] = []
            new_dirs: list[str] = []
            gone_dirs: list[str] = []
            for raw_change, path in batch:
                change = Change(int(raw_change))
                if path in self._dirs:
                    # the watched directory itself was deleted, or created again (a new
                    # inode: its old OS watch is dead): watch whatever is there now
                    if change != Change.modified:
                        gone_dirs.append(path)
                        if os.path.isdir(path):
                            new_dirs.append(path)
                    continue
                if change != Change.deleted and os.path.isdir(path):
                    if (self.rules.follow_symlinks or not os.path.islink(path)) and (
                        self.rules.reachable(self.rules.rel(path))
                    ):
                        new_dirs.append(path)
                    continue
                parent = os.path.dirname(path)
                rel = self.rules.rel(path)
                if (
                    parent not in self._dirs
                    and rel not in self.rules.include_file
                    and rel not in self.rules.pattern_files
                ):
                    continue  # from a directory no longer watched (moved away, re-armed)
                if self.rules.accept(change, path):
                    files.append(RawChange(change, path))
            if any(f.change == Change.deleted for f in files) or gone_dirs:
                missing = tuple(d.rstrip("/") + "/" for d in await self._check_roots(sink))
                if missing:
                    files = [f for f in files if not f.path.startswith(missing)]
                    gone_dirs = [d for d in gone_dirs if not (d + "/").startswith(missing)]
                    new_dirs = [d for d in new_dirs if not (d + "/").startswith(missing)]
            if files:
                sink.send_nowait(RawBatch(files, False, stamp))
            if gone_dirs:
                self._drop(gone_dirs, sink)
            if new_dirs or gone_dirs:
                await self._rearm(new_dirs, sink)

    # -- roots that go away --------------------------------------------------------------

    def _watch_roots(self) -> list[str]:
        return [d for d in self._dirs | self._missing if os.path.dirname(d) not in self._dirs]

    async def _look_for_missing_roots(self, sink: MemoryObjectSendStream[Message]) -> None:
        interval = self.poll_ms / 1000 if self.polling else ROOT_CHECK_NATIVE_S
        while True:
            await anyio.sleep(interval)
            await self._check_roots(sink)

    async def _check_roots(self, sink: MemoryObjectSendStream[Message]) -> list[str]:
        """Say when a watched root disappears; watch and rescan it once it is back. Returns
        the roots missing now (their files' deletions are not reported: they moved away)."""
        for root in self._watch_roots():
            if root in self._missing and os.path.isdir(root):
                self._missing.discard(root)
                self._notice(f"{_what(self.rules, root)} {root} is back: watching it again")
                found = await self._rearm([root], sink, report=False)
                sink.send_nowait(Rescan((root,), found, time.monotonic()))
            elif root not in self._missing and not os.path.isdir(root):
                self._missing.add(root)
                self._notice(
                    f"{_what(self.rules, root)} {root} was moved away or deleted: changes "
                    "in it are not seen until it is back at that path; waiting for it"
                )
                prefix = root.rstrip("/") + "/"
                self._dirs = {d for d in self._dirs if d != root and not d.startswith(prefix)}
                await self._rearm([], sink)
        return sorted(self._missing)

    # -- poll mode -----------------------------------------------------------------------

    async def _poll_signatures(self, sink: MemoryObjectSendStream[Message]) -> None:
        """Alongside notify's poller (whole-second mtimes, watchfiles #319), stat the known
        files with nanosecond mtimes, size and inode; report each change once, as
        ``modified`` (the watcher records a signature only when it emits the batch)."""
        reported: dict[str, Signature | None] = {}
        while True:
            await anyio.sleep(self.poll_ms / 1000)
            items = [(p, reported.get(p, sig)) for p, sig in self._known.items()]
            changed = await anyio.to_thread.run_sync(changed_signatures, items)
            if changed:
                reported.update(changed)
                batch = [RawChange(Change.modified, path) for path in sorted(changed)]
                sink.send_nowait(RawBatch(batch, False, time.monotonic()))
            for path in [p for p in reported if p not in self._known]:
                del reported[path]


def _what(rules: Rules, directory: str) -> str:
    return "the project root" if directory == rules.root else "the watched directory"


def short_error(exc: BaseException) -> str:
    text = str(exc).split(" (Error {", 1)[0].strip()
    return text or type(exc).__name__
