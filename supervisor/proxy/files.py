"""The project's files as the asset table sees them: found by name, hashed by content.

    index = FileIndex(config.root)
    index.walk()                                    # blocking: run it in a worker thread
    index.candidates(["static", "js", "app.js"])   # files a URL may serve, best first
    digests = Digests()
    sig, sha = await digests.get(path)             # remembered while the file is unchanged

A file's stat ``signature`` changes whenever its content does, except for two writes within one
timestamp tick that keep its size: so a hash is remembered only for a file written more than
``RACY_S`` ago (as git does for its index), and computed afresh until then.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path
from urllib.parse import unquote

import anyio

from ..config import ALWAYS_EXCLUDED_DIRS

__all__ = [
    "MAX_VERSIONED",
    "Digests",
    "FileIndex",
    "Signature",
    "in_common",
    "is_racy",
    "sha256",
    "signature",
    "url_segments",
]

MAX_VERSIONED = 8 * 1024 * 1024  # bigger files are never hashed (and their bodies not held)
HASH_INLINE = 256 * 1024  # bigger ones are hashed in a worker thread, off the event loop
RACY_S = 2.0  # coarse timestamps (FAT: 2 s) may not tell two writes apart this long
MAX_CANDIDATES = 8  # files of the URL's name that are hashed to find the one it serves
MAX_INDEXED = 200_000  # files; a bigger tree is indexed this far

Signature = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns
Digest = tuple[Signature, str]  # a file's signature and the sha256 of its content


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signature(path: str) -> Signature | None:
    """What changes whenever a file's content does (None: no such regular file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def is_racy(sig: Signature) -> bool:
    """Written so recently that a second write may not show in its signature yet."""
    return time.time_ns() - sig[3] < RACY_S * 1e9


def _read_digest(path: str) -> Digest | None:
    """(signature, sha256) of a file of at most MAX_VERSIONED bytes; None if it is not one."""
    sig = signature(path)
    if sig is None or sig[2] > MAX_VERSIONED:
        return None
    try:
        with open(path, "rb") as source:
            data = source.read(MAX_VERSIONED + 1)
    except OSError:
        return None
    if signature(path) != sig:  # written while it was read: no version to speak of
        return None
    return sig, sha256(data)


class Digests:
    """Content hashes of files, remembered per stat signature (never for racy files)."""

    def __init__(self) -> None:
        self._known: dict[str, Digest] = {}

    def cached(self, path: str) -> Digest | None:
        known = self._known.get(path)
        return known if known is not None and signature(path) == known[0] else None

    def now(self, path: str) -> Digest | None:
        """The file's (signature, hash), hashing it on the event loop if need be."""
        return self.cached(path) or self._remember(path, _read_digest(path))

    async def get(self, path: str) -> Digest | None:
        """The same; a big file is hashed in a worker thread."""
        known = self.cached(path)
        if known is not None:
            return known
        sig = signature(path)
        if sig is not None and sig[2] > HASH_INLINE:
            return self._remember(path, await anyio.to_thread.run_sync(_read_digest, path))
        return self._remember(path, _read_digest(path))

    def forget(self, path: str) -> str | None:
        """Drop what is known of ``path``; the hash it had, if one was known."""
        known = self._known.pop(path, None)
        return known[1] if known is not None else None

    def _remember(self, path: str, found: Digest | None) -> Digest | None:
        if found is not None and not is_racy(found[0]):
            self._known[path] = found
        return found


def url_segments(path: str) -> list[str] | None:
    """The decoded segments of a URL path; None for one no file can answer."""
    path = unquote(path)
    segments = [s for s in path.split("/") if s]
    if not segments or path.endswith("/") or any(s in (".", "..") or "\0" in s for s in segments):
        return None
    return segments


def in_common(path: str, segments: list[str]) -> int:
    """How many trailing segments ``path`` and a URL's ``segments`` share."""
    parts = path.split(os.sep)
    n = 0
    while n < min(len(parts), len(segments)) and parts[-1 - n] == segments[-1 - n]:
        n += 1
    return n


class FileIndex:
    """The project's files by name (hidden and vendored directories skipped)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_name: dict[str, set[str]] = {}

    def walk(self) -> None:
        by_name: dict[str, set[str]] = {}
        count = 0
        for top, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ALWAYS_EXCLUDED_DIRS]
            for name in files:
                by_name.setdefault(name, set()).add(os.path.join(top, name))
            count += len(files)
            if count >= MAX_INDEXED:
                break
        self._by_name = by_name  # one assignment: requests never see half a walk

    def add(self, path: str) -> None:
        self._by_name.setdefault(os.path.basename(path), set()).add(path)

    def discard(self, path: str) -> None:
        self._by_name.get(os.path.basename(path), set()).discard(path)

    def candidates(self, segments: list[str]) -> list[str]:
        """The files named like the URL's last segment, most trailing segments alike first."""
        found = set(self._by_name.get(segments[-1], ()))
        if not found:  # new since the last walk: the URL's path under the root, as it is
            for start in range(len(segments)):
                path = os.path.join(self.root, *segments[start:])
                if os.path.isfile(path):
                    found.add(path)
        return sorted(found, key=lambda p: (-in_common(p, segments), p))[:MAX_CANDIDATES]
