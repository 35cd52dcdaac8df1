"""Watch the project tree and emit debounced batches of file changes.

    watcher = Watcher(config, notice=console.warning)
    await tg.start(watcher.run, send)   # returns once the OS watches are really in place
    watcher.watched_dirs                # [PosixPath('/app'), PosixPath('/app/templates'), ...]
    watcher.polling                     # [build] poll = true, WSL, or after a fallback
    # send receives lists of (Change, absolute path), sorted by path, one list per burst

Which directories are watched follows air's rules (``rules``): every kept directory is watched
non-recursively, so an excluded tree (``node_modules``, ``.git``, ``tmp``...) never costs a
watch or a scan. Two backends report what changes:

* On Linux, ``native``: pyair's one task sleeps on an inotify descriptor (``inotify``) and
  wakes on the first event, no timer at all while nothing changes; events come in the kernel's
  order, with when each write is complete.
* Elsewhere, and for polling (``[build] poll = true``, WSL, an inotify limit reached),
  ``watchfiles_backend``: watchfiles' loop, which wakes every step, with unordered batches.

This module picks the backend, falls back to polling when the native one cannot go on, and
turns what a backend reports into batches: one burst at a time is folded per path
(``changes``) and emitted once it is due (``debounce``): ``build.delay`` ms of quiet after a
save, longer for a burst, capped; a template or stylesheet save (``eager``) as soon as it is
written and closed. Each path's net change is settled then: a temp file created and deleted
disappears, an atomic save (editor temp file + rename) is ``modified``, ``exclude_unchanged``
drops a same-content rewrite.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, Protocol

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..classify import Change, FileChange
from ..config import Config
from .changes import (
    Burst,
    Failed,
    Message,
    Pending,
    RawBatch,
    RawChange,
    Rescan,
    Unwatched,
    merge_changes,
    net_change,
)
from .debounce import QuietWindow
from .rules import Rules, app_filter, build_filter, is_editor_junk
from .tree import EMPTY_DIGEST, Facts, Signature, Walk, digest_all, probe
from .watchfiles_backend import WatchfilesBackend, short_error, wants_polling

__all__ = ["Watcher", "app_filter", "build_filter", "is_editor_junk", "merge_changes"]

logger = logging.getLogger("pyair.watcher")

Kind = Literal["inotify", "watchfiles", "poll"]
MIN_POLL_MS = 500  # air's floor for poll_interval
RUNTIME_FAILURES = 3  # a backend dying this often while running: poll (twice that: give up)
INLINE_PROBE = 32  # a burst this small is stat'ed in the event loop, not in a worker thread
EAGER_QUIET_MAX_S = 0.01  # inotify: an eager save not closed yet waits at most this long


class _Backend(Protocol):
    polling: bool
    started: bool

    @property
    def dirs(self) -> set[str]: ...

    async def run(
        self, sink: MemoryObjectSendStream[Message], *, task_status: TaskStatus[Walk]
    ) -> None: ...


def _log_notice(message: str) -> None:
    logger.warning(message)


def _is_limit_error(exc: BaseException) -> bool:
    """The native watcher could not go on because an inotify limit was reached."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EMFILE, errno.ENFILE):
        return True
    text = str(exc)
    return isinstance(exc, OSError | RuntimeError) and any(
        marker in text
        for marker in (
            "OS file watch limit reached",
            "Too many open files",
            "No space left on device",
            "os error 24",
            "os error 28",
        )
    )


def default_backend(config: Config) -> Kind:
    if config.build.poll or wants_polling():
        return "poll"
    return "inotify" if sys.platform.startswith("linux") else "watchfiles"


class Watcher:
    """Watches ``config.root`` with air's rules; see the module docstring."""

    def __init__(
        self,
        config: Config,
        *,
        notice: Callable[[str], None] = _log_notice,
        debug: Callable[[str], None] | None = None,
        eager: Callable[[str], bool] | None = None,
        backend: Kind | None = None,
    ) -> None:
        """``eager(path)``: changes that are cheap and harmless to act on twice (a template
        swap, a stylesheet refresh) are emitted without waiting for quiet while only a few
        such paths are pending; anything else still waits for the quiet window.
        ``backend`` overrides the choice (tests run both on one machine)."""
        self.config = config
        self._eager = eager
        self._rules = Rules(config)
        self._notice = notice
        self._debug = debug
        self._kind: Kind = backend or default_backend(config)
        self._poll_ms = max(MIN_POLL_MS, config.build.poll_interval)
        self._exclude_unchanged = config.build.exclude_unchanged
        self._known: dict[str, Signature | None] = {}  # files that exist, as last seen
        self._hashes: dict[str, bytes] = {}  # exclude_unchanged: their contents' digests
        self._backend: _Backend | None = None
        self._window = QuietWindow.from_build(config.build, margin_s=0.0, eager_s=0.0)
        self._failures = 0
        self._tg: TaskGroup | None = None
        self._raw_send: MemoryObjectSendStream[Message] | None = None

    @property
    def watched_dirs(self) -> list[Path]:
        """The directories currently watched (each one non-recursively)."""
        dirs = self._backend.dirs if self._backend is not None else set()
        return [Path(d) for d in sorted(dirs)]

    @property
    def polling(self) -> bool:
        """True when the watcher polls (``build.poll``, WSL, or after falling back)."""
        return self._kind == "poll"

    def _say(self, message: str) -> None:
        if self._debug is not None:
            self._debug(message)

    # -- lifetime ------------------------------------------------------------------------

    async def run(
        self,
        send: MemoryObjectSendStream[list[FileChange]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Watch until cancelled, sending one sorted list of changes per debounced burst.

        ``task_status.started()`` is called once the OS watches are in place: a write after it
        is seen. ``send`` is closed on the way out.
        """
        raw_send, raw_recv = anyio.create_memory_object_stream[Message](math.inf)
        async with send, raw_send, raw_recv, anyio.create_task_group() as tg:
            self._tg, self._raw_send = tg, raw_send
            found = await self._start(self._kind)
            for message in found.errors:
                self._say(message)
            for rel in found.skipped:
                self._say(f"!exclude {rel}")
            self._known.update(found.files)  # in place: a polling backend reads it
            if self._exclude_unchanged:
                self._hashes = await anyio.to_thread.run_sync(digest_all, list(self._known))
            self._say(
                f"watching {len(self.watched_dirs)} directories, {len(self._known)} files"
                f" ({self._kind})"
            )
            task_status.started()
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self._debounce(raw_recv, send)  # returns when nobody listens any more
            tg.cancel_scope.cancel()

    def _make(self, kind: Kind) -> _Backend:
        say, notice = self._say, self._notice
        if kind == "inotify":
            from .native import InotifyBackend  # Linux only

            backend: _Backend = InotifyBackend(self._rules, notice=notice, say=say)
            self._window = QuietWindow.from_build(
                self.config.build,
                margin_s=0.0,
                eager_s=min(self.config.build.delay / 1000, EAGER_QUIET_MAX_S),
            )
            return backend
        watchfiles = WatchfilesBackend(
            self._rules,
            polling=kind == "poll",
            poll_ms=self._poll_ms,
            known=self._known,
            notice=notice,
            say=say,
        )
        self._window = QuietWindow.from_build(
            self.config.build, margin_s=watchfiles.margin_s, eager_s=watchfiles.eager_s
        )
        return watchfiles

    async def _start(self, kind: Kind) -> Walk:
        """Start a backend of ``kind`` (polling instead when an inotify limit is reached);
        returns the tree as it found it once its watches are in place."""
        assert self._tg is not None
        while True:
            backend = self._make(kind)
            try:
                found: Walk = await self._tg.start(self._run_backend, backend)
            except Exception as exc:
                if kind == "poll" or not _is_limit_error(exc):
                    raise
                self._notice(
                    f"file watch limit reached ({short_error(exc)}); falling back to polling "
                    f"every {self._poll_ms} ms (raise fs.inotify.max_user_watches / "
                    "max_user_instances to watch natively)"
                )
                kind = "poll"
                continue
            self._kind, self._backend = kind, backend
            return found

    async def _run_backend(
        self, backend: _Backend, *, task_status: TaskStatus[Walk] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """A backend's task: a failure before its watches are in place is raised to
        ``_start``; a failure later is reported to the debouncer, which starts another."""
        assert self._raw_send is not None
        try:
            await backend.run(self._raw_send, task_status=task_status)
        except Exception as exc:
            if not backend.started:
                raise
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._raw_send.send_nowait(Failed(exc))

    async def _recover(self, error: BaseException, burst: Burst) -> None:
        """The backend died while running: start a new one (polling if it was an inotify
        limit, or after three failures; giving up after six)."""
        self._failures += 1
        if self._failures > 2 * RUNTIME_FAILURES:
            raise error
        kind = self._kind
        if kind != "poll" and (_is_limit_error(error) or self._failures >= RUNTIME_FAILURES):
            kind = "poll"
        how = (
            f"polling every {self._poll_ms} ms from now on"
            if kind != self._kind
            else "restarting it"
        )
        self._notice(f"the file watcher failed ({short_error(error)}); {how}")
        found = await self._start(kind)
        self._absorb_rescan(
            Rescan(tuple(self._rules.walk_roots()), found.files, time.monotonic()), burst
        )

    # -- debouncing ----------------------------------------------------------------------

    async def _debounce(
        self,
        raw_recv: MemoryObjectReceiveStream[Message],
        send: MemoryObjectSendStream[list[FileChange]],
    ) -> None:
        """Fold what the backend reports into bursts; emit each one when it is due. Asleep
        (with no deadline at all) while nothing is pending."""
        burst = Burst()
        while True:
            if not burst:
                await self._absorb(await raw_recv.receive(), burst)
            while True:  # everything already queued belongs to this moment
                try:
                    message = raw_recv.receive_nowait()
                except anyio.WouldBlock:
                    break
                await self._absorb(message, burst)
            if not burst:
                continue
            due = self._window.due(burst, eager=self._eager)
            now = time.monotonic()
            if now < due:
                received: Message | None = None
                with anyio.move_on_after(due - now):
                    received = await raw_recv.receive()
                if received is not None:
                    await self._absorb(received, burst)
                continue
            first_at = burst.first_at
            batch = await self._settle(burst.take())
            if batch:
                self._say(
                    f"batch of {len(batch)} after {round((time.monotonic() - first_at) * 1000)} ms"
                )
                await send.send(batch)

    async def _absorb(self, message: Message, burst: Burst) -> None:
        if isinstance(message, RawBatch):
            for raw in message.changes:
                self._fold(raw, burst, ordered=message.ordered, at=message.stamp)
        elif isinstance(message, Rescan):
            self._absorb_rescan(message, burst)
        elif isinstance(message, Unwatched):
            dirs = set(message.dirs)
            for path in [p for p in self._known if p.rpartition("/")[0] in dirs]:
                raw = RawChange(Change.deleted, path, True)
                self._fold(raw, burst, ordered=message.ordered, at=message.stamp)
        else:
            await self._recover(message.error, burst)

    def _fold(self, raw: RawChange, burst: Burst, *, ordered: bool, at: float) -> None:
        pending = burst.add(raw, ordered=ordered, known=self._known, at=at)
        if pending is not None and pending.first_seen:
            self._say(f"{raw.change.name} {self._rules.rel(raw.path)}")

    def _absorb_rescan(self, rescan: Rescan, burst: Burst) -> None:
        """Compare a fresh listing of ``rescan.under`` with what was known."""
        prefixes = tuple(d.rstrip("/") + "/" for d in rescan.under)
        for path in [p for p in self._known if p.startswith(prefixes) and p not in rescan.files]:
            self._fold(RawChange(Change.deleted, path, True), burst, ordered=True, at=rescan.stamp)
        for path, sig in rescan.files.items():
            if path not in self._known:
                self._fold(RawChange(Change.added, path), burst, ordered=True, at=rescan.stamp)
            elif sig is None or sig != self._known[path]:
                self._fold(RawChange(Change.modified, path), burst, ordered=True, at=rescan.stamp)

    async def _settle(self, pending: Mapping[str, Pending]) -> list[FileChange]:
        """Each path's net change; exclude_unchanged, and poll-mode dedup.

        The file system is probed inline for a few paths (a stat each), in a worker thread
        for more or for digests; the watcher's own state is only touched here.
        """
        had_content = {p for p in pending if self._hashes.get(p, EMPTY_DIGEST) != EMPTY_DIGEST}
        check = functools.partial(
            probe, list(pending), digests=self._exclude_unchanged, had_content=had_content
        )
        if len(pending) <= INLINE_PROBE and not self._exclude_unchanged:
            facts: dict[str, Facts] = check()
        else:
            facts = await anyio.to_thread.run_sync(check)
        out: list[FileChange] = []
        for path, state in pending.items():
            fact = facts[path]
            exists = state.exists if state.exists is not None else fact.exists
            change = net_change(state, exists=exists)
            if change is None:
                continue
            if change == Change.deleted:
                self._known.pop(path, None)
                self._hashes.pop(path, None)
                out.append((change, path))
                continue
            seen = fact.signature is not None and self._known.get(path) == fact.signature
            if self.polling and change == Change.modified and seen:
                continue  # both pollers saw the same write; it was reported already
            self._known[path] = fact.signature
            if fact.digest is not None:
                if self._hashes.get(path) == fact.digest:
                    continue  # contents unchanged
                self._hashes[path] = fact.digest
            out.append((change, path))
        return sorted(out, key=lambda c: (c[1], c[0]))
