"""What backends report, and how one burst of it folds into one change per path.

    burst = Burst()
    burst.add(RawChange(Change.deleted, "/app/x.html"), ordered=True, known=known, at=t)
    burst.add(RawChange(Change.added, "/app/x.html", done=True), ordered=True, known=known, at=t)
    net_change(burst.paths["/app/x.html"], exists=True)   # Change.modified: an atomic save

A backend that reads its events in the order they happened (inotify) says so, and the last
event of a path tells whether it exists now. One that yields unordered sets (watchfiles) does
not; then whether a path exists is asked of the file system when the burst is settled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from ..classify import Change, FileChange
from .tree import Signature


class RawChange(NamedTuple):
    change: Change
    path: str
    # Ordered sources: True once the write is complete (the writer closed the file, a file
    # was renamed into place), False while it may still be written to; None: this change
    # says nothing about it (or the source cannot tell). A ``modified`` that is done is a
    # writer closing the file: it completes a write reported before, and alone is no change.
    done: bool | None = None


@dataclass(eq=False)
class RawBatch:
    """Changes to files, as a backend saw them (``stamp``: time.monotonic() then)."""

    changes: list[RawChange]
    ordered: bool
    stamp: float


@dataclass(eq=False)
class Rescan:
    """A backend listed ``under`` (whole subtrees) again, after it may have missed events
    (a queue overflow, a directory back after it was gone, a new backend taking over)."""

    under: tuple[str, ...]
    files: dict[str, Signature | None]
    stamp: float


@dataclass(eq=False)
class Unwatched:
    """Directories no longer watched (gone, or moved where the rules do not watch): the
    files known in them are gone from view."""

    dirs: tuple[str, ...]
    stamp: float
    ordered: bool = True  # False: they may be back already; ask the file system


@dataclass(eq=False)
class Failed:
    """The backend stopped working while running."""

    error: BaseException


Message = RawBatch | Rescan | Unwatched | Failed


@dataclass
class Pending:
    """One path's changes so far in this burst."""

    existed: bool  # before the burst
    exists: bool | None  # after its last change, when the source is ordered
    writing: bool  # ordered: written to, not known to be complete yet
    first_seen: bool = True  # for the debug line of its first change


@dataclass
class Burst:
    """The changes seen since the last batch was emitted."""

    paths: dict[str, Pending] = field(default_factory=dict)
    first_at: float = 0.0
    last_at: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def add(
        self, raw: RawChange, *, ordered: bool, known: Container[str], at: float
    ) -> Pending | None:
        """Fold in one change; returns the path's state (None: it was no change)."""
        pending = self.paths.get(raw.path)
        if pending is None and raw.change == Change.modified and raw.done:
            return None  # the close of a write that was acted on already
        if not self.paths:
            self.first_at = at
        self.last_at = max(self.last_at, at)
        if pending is None:
            # it was there before when the watcher knew it, or when the first word about it
            # was not "added" (a bare modified/deleted proves it existed)
            existed = raw.path in known or raw.change != Change.added
            pending = self.paths[raw.path] = Pending(existed, None, False)
        else:
            pending.first_seen = False
            if not ordered and raw.change == Change.added and raw.path not in known:
                pending.existed = False  # unordered: any "added" means it may be new
        if ordered:
            pending.exists = raw.change != Change.deleted
            if raw.done is not None:
                pending.writing = not raw.done and pending.exists
        return pending

    def complete(self) -> bool:
        """Every path is known to be finished: written and closed (or renamed into place),
        not deleted (a deletion may be the first half of an editor's save)."""
        return all(p.exists is True and not p.writing for p in self.paths.values())

    def writing(self) -> bool:
        """Some path is still open for writing (an ordered source saw no close yet)."""
        return any(p.writing for p in self.paths.values())

    def take(self) -> dict[str, Pending]:
        paths, self.paths = self.paths, {}
        self.first_at = self.last_at = 0.0
        return paths


def net_change(pending: Pending, *, exists: bool) -> Change | None:
    """A path's net change over a burst: created and deleted again is nothing at all, and
    deleted then created again (an atomic save) is ``modified``."""
    if pending.existed and exists:
        return Change.modified
    if exists:
        return Change.added
    if pending.existed:
        return Change.deleted
    return None


def merge_changes(
    events: Iterable[FileChange],
    *,
    known: Container[str] = frozenset(),
    exists: Callable[[str], bool] = os.path.isfile,
) -> list[FileChange]:
    """Merge unordered raw events into one change per path, sorted by path.

    Added-then-deleted disappears, deleted-then-added is ``modified``, otherwise the last
    meaning wins; since the order is unknown (watchfiles yields sets), the outcome is settled
    from ``known`` (paths that existed before) and ``exists`` (whether the path is there now).
    """
    burst = Burst()
    for change, path in events:
        burst.add(RawChange(change, path), ordered=False, known=known, at=0.0)
    out = []
    for path, pending in burst.paths.items():
        settled = net_change(pending, exists=exists(path))
        if settled is not None:
            out.append((settled, path))
    return sorted(out, key=lambda c: (c[1], c[0]))
