"""The event-driven backend (Linux): one inotify descriptor, one watch per kept directory.

    backend = InotifyBackend(rules, notice=print, say=print)
    found = await tg.start(backend.run, sink)   # every watch in place; the tree as it was then
    backend.dirs                                # the watched directories

Its one task sleeps in ``anyio.wait_readable`` on the descriptor: no timer, no thread, no
wakeup while nothing changes. When the kernel has events, all of them are read at once and
translated in the kernel's order, so nothing is re-derived from unordered sets:

* a file's ``CREATE``/``MODIFY`` mean it is being written, its ``CLOSE_WRITE`` (or a
  ``MOVED_TO``: an editor renaming its temp file into place) that the write is complete;
  ``DELETE``/``MOVED_FROM`` that it is gone. ``MOVED_FROM``/``MOVED_TO`` pairs carry one cookie,
  which names the rename in the debug log.
* A new directory (``CREATE``/``MOVED_TO`` with ``ISDIR``) is watched *before* it is listed,
  and what the listing finds is reported as added: nothing written into it is lost. One that
  went (``DELETE``/``MOVED_FROM``/``IGNORED``) is unwatched with everything under it, so the
  same name created again is simply a new directory (``rm -r pkg && mkdir pkg`` is seen).
* ``Q_OVERFLOW`` (the kernel dropped events: more than ``max_queued_events`` at once) starts a
  rescan of the whole tree, compared with what was known: nothing is silently missed.
* A watched directory whose parent is not watched (the project root, an include_dir outside
  it) that is deleted or moved away (``DELETE_SELF``/``MOVE_SELF``) is announced in one line;
  its nearest existing ancestor is then watched for its name to come back, and when it does it
  is watched and rescanned again.

Reaching ``max_user_watches`` (ENOSPC) or ``max_user_instances`` (EMFILE) raises OSError: the
watcher falls back to polling.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from .. import inotify as ino
from ..classify import Change
from .changes import Message, RawBatch, RawChange, Rescan, Unwatched
from .rules import Rules
from .tree import Walk, initial_walk, signature, walk

# (change, done) for the events of a file: see RawChange.done
_FILE_EVENTS: tuple[tuple[int, Change, bool | None], ...] = (
    (ino.CREATE, Change.added, False),
    (ino.MOVED_TO, Change.added, True),
    (ino.MODIFY, Change.modified, False),
    (ino.ATTRIB, Change.modified, None),
    (ino.CLOSE_WRITE, Change.modified, True),
    (ino.DELETE, Change.deleted, True),
    (ino.MOVED_FROM, Change.deleted, True),
)
_GONE_SELF = ino.DELETE_SELF | ino.MOVE_SELF | ino.IGNORED | ino.UNMOUNT
# MASK_ADD: should that directory be watched already under another name (a link), its own
# events stay as they are
_WAITER_EVENTS = (
    ino.CREATE | ino.MOVED_TO | ino.DELETE_SELF | ino.MOVE_SELF | ino.ONLYDIR | ino.MASK_ADD
)
_LIMITS = (errno.ENOSPC, errno.EMFILE, errno.ENFILE)


class InotifyBackend:
    """Watches the kept directories through inotify; see the module docstring."""

    polling = False

    def __init__(
        self, rules: Rules, *, notice: Callable[[str], None], say: Callable[[str], None]
    ) -> None:
        self.rules = rules
        self._notice = notice
        self._say = say
        self._mask = ino.DIRECTORY_EVENTS | (0 if rules.follow_symlinks else ino.DONT_FOLLOW)
        self._inotify: ino.Inotify | None = None
        self._wd_dir: dict[int, str] = {}
        self._dir_wd: dict[str, int] = {}
        self._missing: dict[str, str] = {}  # a gone watch root -> the ancestor watched for it
        self._waiter_wds: dict[int, str] = {}  # watches held only to see a root come back
        self.started = False

    @property
    def dirs(self) -> set[str]:
        return set(self._dir_wd)

    # -- lifetime ------------------------------------------------------------------------

    async def run(
        self,
        sink: MemoryObjectSendStream[Message],
        *,
        task_status: TaskStatus[Walk] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Watch until cancelled. ``task_status.started(walk)`` once every watch is in place."""
        self._inotify = ino.Inotify()
        try:
            watched: list[tuple[str, int]] = []
            found = await anyio.to_thread.run_sync(
                lambda: initial_walk(self.rules, before_listing=self._watcher_into(watched))
            )
            self._register(watched)
            self.started = True
            task_status.started(found)
            while True:
                await anyio.wait_readable(self._inotify.fd)
                await self._handle(self._inotify.read(), sink)
        finally:
            # closed by the task that waited on it, so nothing waits any more (anyio >= 4.9
            # has wait_readable; notify_closing only came with 4.10)
            self._inotify.close()
            self._wd_dir.clear()
            self._dir_wd.clear()

    # -- watches -------------------------------------------------------------------------

    def _watcher_into(self, watched: list[tuple[str, int]]) -> Callable[[str], bool]:
        """A walk's ``before_listing``: watch a directory (from the walk's thread)."""
        assert self._inotify is not None
        inotify, mask = self._inotify, self._mask

        def watch(directory: str) -> bool:
            try:
                watched.append((directory, inotify.add_watch(directory, mask)))
            except OSError as exc:
                if exc.errno in _LIMITS:
                    raise
                return False  # gone meanwhile, not a directory any more, or not readable
            return True

        return watch

    def _register(self, watched: list[tuple[str, int]]) -> None:
        for directory, wd in watched:
            other = self._wd_dir.get(wd)
            if other is not None and other != directory:
                self._say(f"{directory} is {other} again (a link): watched once")
                continue
            self._wd_dir[wd] = directory
            self._dir_wd[directory] = wd

    async def _watch_tree(self, top: str) -> Walk:
        """Watch ``top`` and the kept directories under it, listing each one after its watch
        is in place (the reader waits meanwhile, so no event refers to an unknown watch)."""
        watched: list[tuple[str, int]] = []
        found = await anyio.to_thread.run_sync(
            lambda: walk(self.rules, [top], before_listing=self._watcher_into(watched))
        )
        self._register(watched)
        for directory, _wd in watched:
            self._say(f"watch {self.rules.rel(directory)}")
        return found

    def _unwatch_tree(self, top: str) -> list[str]:
        """Forget ``top`` and every watched directory under it; returns them."""
        assert self._inotify is not None
        prefix = top.rstrip("/") + "/"
        gone = [d for d in self._dir_wd if d == top or d.startswith(prefix)]
        for directory in gone:
            wd = self._dir_wd.pop(directory)
            self._wd_dir.pop(wd, None)
            self._inotify.rm_watch(wd)
            self._say(f"unwatch {self.rules.rel(directory)}")
        return gone

    def _is_watch_root(self, directory: str) -> bool:
        """Watched for its own sake, not because its parent's listing reached it."""
        return os.path.dirname(directory) not in self._dir_wd

    # -- events --------------------------------------------------------------------------

    async def _handle(self, events: list[ino.Event], sink: MemoryObjectSendStream[Message]) -> None:
        stamp = time.monotonic()
        changes: list[RawChange] = []
        renames: dict[int, str] = {}

        def flush() -> None:
            if changes:
                sink.send_nowait(RawBatch(list(changes), True, stamp))
                changes.clear()

        overflow = False
        for event in events:
            mask = event.mask
            if mask & ino.Q_OVERFLOW:
                overflow = True
                continue
            if event.wd in self._waiter_wds:
                flush()
                await self._waiter_event(event, sink)
            directory = self._wd_dir.get(event.wd)
            if directory is None:
                continue  # a watch dropped a moment ago, or a waiter's own
            if not event.name:
                if mask & _GONE_SELF:
                    flush()
                    await self._directory_gone(directory, mask, sink)
                continue
            path = os.path.join(directory, event.name)
            if mask & (ino.CREATE | ino.MOVED_TO) and self._missing:
                flush()
                await self._maybe_back(directory, event.name, sink)
            if mask & ino.ISDIR or (
                self.rules.follow_symlinks
                and mask & (ino.CREATE | ino.MOVED_TO)
                and os.path.isdir(path)
            ):
                flush()
                await self._directory_event(path, mask, sink)
                continue
            if mask & ino.MOVED_FROM:
                renames[event.cookie] = path
            elif mask & ino.MOVED_TO and event.cookie in renames:
                source = renames.pop(event.cookie)
                self._say(f"renamed {self.rules.rel(source)} -> {self.rules.rel(path)}")
            if not self.rules.accept(Change.modified, path):
                continue
            for bit, change, done in _FILE_EVENTS:
                if mask & bit:
                    changes.append(RawChange(change, path, done))
        flush()
        if overflow:
            await self._rescan(sink)

    async def _directory_event(
        self, path: str, mask: int, sink: MemoryObjectSendStream[Message]
    ) -> None:
        if mask & (ino.DELETE | ino.MOVED_FROM):
            gone = self._unwatch_tree(path)
            if gone:
                sink.send_nowait(Unwatched(tuple(gone), time.monotonic()))
            return
        if path in self._dir_wd:
            return  # already watched (a rescan got there first)
        if not self.rules.reachable(self.rules.rel(path)):
            return
        found = await self._watch_tree(path)
        if found.files:
            adds = [RawChange(Change.added, f) for f in sorted(found.files)]
            sink.send_nowait(RawBatch(adds, True, time.monotonic()))

    async def _directory_gone(
        self, directory: str, mask: int, sink: MemoryObjectSendStream[Message]
    ) -> None:
        """A watched directory itself was deleted or moved (or its file system unmounted)."""
        if not self._is_watch_root(directory):
            if mask & ino.IGNORED:  # the kernel dropped the watch: nothing more comes from it
                gone = self._unwatch_tree(directory)
                sink.send_nowait(Unwatched(tuple(gone), time.monotonic()))
            return  # its parent reports it gone (DELETE/MOVED_FROM with ISDIR)
        self._unwatch_tree(directory)
        what = "the project root" if directory == self.rules.root else "the watched directory"
        how = "moved away" if mask & ino.MOVE_SELF else "deleted"
        self._notice(
            f"{what} {directory} was {how}: changes in it are not seen until it is back "
            "at that path; waiting for it"
        )
        await self._wait_for(directory, sink)

    # -- a watch root that went away ---------------------------------------------------------

    async def _wait_for(self, missing: str, sink: MemoryObjectSendStream[Message]) -> None:
        """Watch the nearest existing ancestor of ``missing`` for the next component of its
        path; if it is back already (moved away and back before this ran), take it back."""
        assert self._inotify is not None
        while True:
            ancestor = os.path.dirname(missing)
            while ancestor != os.path.dirname(ancestor) and not os.path.isdir(ancestor):
                ancestor = os.path.dirname(ancestor)
            self._missing[missing] = ancestor
            if ancestor not in self._dir_wd and ancestor not in self._waiter_wds.values():
                try:
                    self._waiter_wds[self._inotify.add_watch(ancestor, _WAITER_EVENTS)] = ancestor
                except OSError as exc:
                    self._notice(f"cannot watch {ancestor} for {missing} to come back: {exc}")
                    return
                self._say(f"waiting in {ancestor} for {missing}")
            if os.path.isdir(missing):
                self._release_waiter(missing)
                await self._came_back(missing, sink)
                return
            deeper = os.path.dirname(missing)
            while deeper != ancestor and not os.path.isdir(deeper):
                deeper = os.path.dirname(deeper)
            if deeper == ancestor:
                return  # the watch in ``ancestor`` reports the next step
            self._release_waiter(missing)  # a step closer appeared meanwhile

    async def _waiter_event(self, event: ino.Event, sink: MemoryObjectSendStream[Message]) -> None:
        ancestor = self._waiter_wds[event.wd]
        if not event.name and event.mask & _GONE_SELF:  # the ancestor went too: go up
            del self._waiter_wds[event.wd]
            for missing, where in list(self._missing.items()):
                if where == ancestor:
                    await self._wait_for(missing, sink)
        elif event.name:
            await self._maybe_back(ancestor, event.name, sink)

    async def _maybe_back(
        self, parent: str, name: str, sink: MemoryObjectSendStream[Message]
    ) -> None:
        """``parent/name`` appeared: one of the missing roots may be back, or closer."""
        step = os.path.join(parent, name) + "/"
        for missing, where in list(self._missing.items()):
            if where == parent and (missing + "/").startswith(step):
                self._release_waiter(missing)
                await self._wait_for(missing, sink)

    def _release_waiter(self, missing: str) -> None:
        assert self._inotify is not None
        where = self._missing.pop(missing)
        if where in self._missing.values():
            return  # still waited in for another one
        for wd, path in list(self._waiter_wds.items()):
            if path == where:
                del self._waiter_wds[wd]
                if wd not in self._wd_dir:  # held for the wait only
                    self._inotify.rm_watch(wd)

    async def _came_back(self, top: str, sink: MemoryObjectSendStream[Message]) -> None:
        if self.rules.reachable(self.rules.rel(top)):
            found = await self._watch_tree(top)
        else:  # an include_file's directory, inside an excluded tree: that file only
            watched: list[tuple[str, int]] = []
            if self._watcher_into(watched)(top):
                self._register(watched)
            found = Walk(
                files={
                    p: s
                    for p in self.rules.include_file_paths()
                    if os.path.dirname(p) == top and (s := signature(p))
                }
            )
        what = "the project root" if top == self.rules.root else "the watched directory"
        self._notice(f"{what} {top} is back: watching it again")
        sink.send_nowait(Rescan((top,), found.files, time.monotonic()))

    async def _rescan(self, sink: MemoryObjectSendStream[Message]) -> None:
        """The kernel's queue overflowed: list the whole tree again and let the watcher
        compare it with what it knew (watches of new directories are added on the way)."""
        self._say("inotify queue overflowed: rescanning the tree")
        roots = [r for r in self.rules.walk_roots() if r not in self._missing]
        watched: list[tuple[str, int]] = []
        found = await anyio.to_thread.run_sync(
            lambda: initial_walk(self.rules, before_listing=self._watcher_into(watched))
        )
        self._register(watched)
        listed = {d for d, _wd in watched}
        for directory in [d for d in self._dir_wd if d not in listed]:
            self._unwatch_tree(directory)
        sink.send_nowait(Rescan(tuple(roots), found.files, time.monotonic()))
