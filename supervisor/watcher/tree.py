"""The project tree on disk: walking it by the rules, and what a file looks like now.

    found = walk(rules, rules.walk_roots(), before_listing=watch)   # blocking: a worker thread
    found.dirs                # the kept directories, each one handed to ``watch`` first
    found.files               # accepted files -> (mtime_ns, size, inode)
    probe(["/app/app.py"], digests=False)   # {path: Facts(exists, digest, signature)}

Every function here blocks on the file system; the backends call them from a worker thread,
or inline for a handful of files.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from stat import S_ISREG

from ..classify import Change
from .rules import Rules

Signature = tuple[int, int, int]  # (st_mtime_ns, st_size, st_ino)

EMPTY_DIGEST = hashlib.sha256(b"").digest()
EMPTY_READ_RETRIES = 5  # exclude_unchanged: an empty read is retried 5 x 20 ms (air #924)
EMPTY_READ_WAIT = 0.02


@dataclass
class Walk:
    dirs: list[str] = field(default_factory=list)
    files: dict[str, Signature | None] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # root-relative, for the debug log
    errors: list[str] = field(default_factory=list)


def walk(
    rules: Rules,
    starts: Iterable[str],
    *,
    before_listing: Callable[[str], bool] | None = None,
) -> Walk:
    """Kept directories and accepted files under ``starts`` (each must be reachable).

    ``before_listing(directory)`` is called for each directory to watch *before* it is
    listed, so a file created meanwhile is either listed or reported by the new watch; it
    returns False when the directory cannot be watched (it went away), and may raise.
    """
    result = Walk()
    seen: set[tuple[int, int]] = set()
    stack = list(starts)
    while stack:
        directory = stack.pop()
        rel = rules.rel(directory)
        watch, descend = rules.dir_state(rel)
        if not descend:
            result.skipped.append(rel)
            continue
        if watch and before_listing is not None and not before_listing(directory):
            continue
        try:
            scanner = os.scandir(directory)
            if rules.follow_symlinks:  # a symlink loop must not walk forever
                st = os.stat(directory)
                if (st.st_dev, st.st_ino) in seen:
                    scanner.close()
                    continue
                seen.add((st.st_dev, st.st_ino))
        except OSError as exc:
            result.errors.append(f"cannot list {directory}: {exc.strerror or exc}")
            continue
        if watch:
            result.dirs.append(directory)
        with scanner:
            for entry in scanner:
                try:
                    if entry.is_dir(follow_symlinks=rules.follow_symlinks):
                        stack.append(entry.path)
                    elif watch and rules.accept(Change.added, entry.path):
                        st = entry.stat()
                        result.files[entry.path] = (st.st_mtime_ns, st.st_size, st.st_ino)
                except OSError:
                    continue
    return result


def initial_walk(rules: Rules, *, before_listing: Callable[[str], bool] | None = None) -> Walk:
    """The whole tree, plus include_file entries and their directories (watched even inside
    an excluded tree)."""
    result = walk(rules, rules.walk_roots(), before_listing=before_listing)
    kept = set(result.dirs)
    for path in rules.include_file_paths():
        parent = os.path.dirname(path)
        watchable = parent not in kept and os.path.isdir(parent)
        if watchable and (before_listing is None or before_listing(parent)):
            kept.add(parent)
            result.dirs.append(parent)
        if path not in result.files and (sig := signature(path)) is not None:
            result.files[path] = sig
    return result


def signature(path: str) -> Signature | None:
    """(ns mtime, size, inode) of a regular file, None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not S_ISREG(st.st_mode):
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def digest(path: str) -> bytes | None:
    """SHA-256 of a file's contents, or None if it cannot be read."""
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                sha.update(chunk)
    except OSError:
        return None
    return sha.digest()


@dataclass(frozen=True)
class Facts:
    exists: bool
    digest: bytes | None = None
    signature: Signature | None = None


def probe(
    paths: Iterable[str], *, digests: bool, had_content: Container[str] = ()
) -> dict[str, Facts]:
    """What the file system says about each path now.

    With ``digests``, a file that had content and now reads empty is read again, up to
    5 x 20 ms for the whole batch (air #924: an editor that truncates, then writes).
    """
    facts = {}
    for path in paths:
        sig = signature(path)
        if sig is None:
            facts[path] = Facts(False)
            continue
        facts[path] = Facts(True, digest(path) if digests else None, sig)
    retry = [p for p, f in facts.items() if f.digest == EMPTY_DIGEST and p in had_content]
    for _round in range(EMPTY_READ_RETRIES):
        if not retry:
            break
        time.sleep(EMPTY_READ_WAIT)
        for path in retry:
            sig = signature(path)
            facts[path] = Facts(sig is not None, digest(path), sig)
        retry = [p for p in retry if facts[p].digest == EMPTY_DIGEST]
    return facts


def digest_all(files: Iterable[str]) -> dict[str, bytes]:
    """exclude_unchanged's starting point: the digest of every known file."""
    return {path: d for path in files if (d := digest(path)) is not None}


def changed_signatures(
    items: Iterable[tuple[str, Signature | None]],
) -> dict[str, Signature]:
    """Paths whose (ns mtime, size, inode) differ from the recorded one -> the new one."""
    return {path: now for path, recorded in items if (now := signature(path)) and now != recorded}
