"""Asset versions: the project's static files get content ETags, and 304s from pyair itself.

    assets = AssetTable(config.root)
    tg.start_soon(assets.keep_index)                     # the project's files, by name
    headers = assets.answer(b"GET", target, request)     # a 304's headers, or None: forward it
    tracking = assets.track(b"GET", target, request, 200, response)   # None: relay untouched
    status, headers, body = await tracking.finish(body)  # the app's body, buffered
    assets.changed(paths)                                # the engine saw these files change
    assets.versions(paths)                               # their tokens, for the CSS refresh

An app's own caching headers (``max-age=3600`` on its JS) would let a reload run yesterday's
script against today's page. So a response whose bytes are a file of the project (decoded when
gzip'd) is relayed with ``Cache-Control: no-cache`` and ``ETag: W/"sha256-<hex>"``, the hash
of that file's content: the browser asks again on every load, and pyair answers ``304`` from
this table, without the app, for as long as the file is unchanged.

How a URL finds its file: the project's files are indexed by name (walked in a worker thread,
hidden and vendored directories skipped); the files named like the URL's last segment are the
candidates, most trailing path segments in common first, and the one whose content hash equals
the body's hash is the file. Only the bytes decide, never the URL: a route that renders, minifies
or compiles on the way out matches no file and is relayed untouched, and so is anything no file
is named like (an API, a page), without being buffered. The table maps the URL to that file
until the file changes (its stat signature, and the engine's change events), or the app
restarts (its code maps URLs to files). The cost: the first response for each URL (and the first
after each change) is buffered, up to ``MAX_VERSIONED``, and hashed; a 304 costs one ``stat``.

Decisions: the tag is weak because it names the file's content, not one encoding of it (the
same tag for a gzip'd and a plain body, and it can be computed from the file alone, which is
what the CSS refresh does: the ``?__pyair=`` token of a refreshed ``<link>`` is this hash). The
app's own ETag and Last-Modified are replaced: they are usually mtime-based, and an mtime can go
back (a checkout, ``cp -p``) while content is what the page runs. A file written in the last
``RACY_S`` is versioned but not remembered, as its stat signature may not yet tell a second write
within the same timestamp tick. Larger files, byte ranges (206) and HEADs the table knows nothing
of keep the app's validators and only lose their freshness (``no-cache``). ``no-store`` from the
app, and ``Vary: *``, are left alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

import anyio

from ..classify import ASSET_EXTS
from ..config import ALWAYS_EXCLUDED_DIRS
from .headers import Headers, get_header, tokens

__all__ = [
    "MAX_VERSIONED",
    "AssetTable",
    "FileIndex",
    "Tracking",
    "entity_tags",
    "no_store",
    "revalidated",
]

MAX_VERSIONED = 8 * 1024 * 1024  # bigger bodies stream as they are: no hash, no buffering
HASH_INLINE = 256 * 1024  # bigger ones are hashed in a worker thread, off the event loop
RACY_S = 2.0  # coarse timestamps (FAT: 2 s) may not tell two writes apart this long
MAX_CANDIDATES = 8  # files of the URL's name hashed to find the one it serves
MAX_INDEXED = 200_000  # files; a bigger tree is indexed this far
WALK_INTERVAL_S = 5.0  # at most one walk of the project this often (a miss asks for one)

FRESHNESS = frozenset({b"cache-control", b"expires", b"pragma", b"age"})
VALIDATORS = frozenset({b"etag", b"last-modified"})
_GZIP = 16 + zlib.MAX_WBITS
_CODINGS = {b"": None, b"identity": None, b"gzip": _GZIP, b"x-gzip": _GZIP}
_ENTITY_TAG = re.compile(rb'(?:W/)?"[^"]*"|\*')

Signature = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns


# --------------------------------------------------------------------------- header rules


def entity_tags(value: bytes | None) -> list[bytes]:
    """The tags of an If-None-Match value, each without ``W/`` (weak comparison); ``*`` too.

    >>> entity_tags(b'W/"a", "b"')
    [b'"a"', b'"b"']
    """
    return [tag.removeprefix(b"W/") for tag in _ENTITY_TAG.findall(value or b"")]


def revalidated(headers: Headers, tag: bytes | None) -> Headers:
    """``headers`` asking the browser to revalidate every time; ``tag`` replaces the validators.

    Without a tag (a file pyair does not hash) the app's own validators stay.
    """
    drop = FRESHNESS | (VALIDATORS if tag is not None else frozenset())
    out = [(k, v) for k, v in headers if k.lower() not in drop]
    out.append((b"cache-control", b"no-cache"))
    if tag is not None:
        out.append((b"etag", tag))
    return out


def no_store(headers: Headers) -> Headers:
    """``headers`` of a page served with pyair's script: never stored, it is per request."""
    out = [(k, v) for k, v in headers if k.lower() not in FRESHNESS]
    out.append((b"cache-control", b"no-store"))
    return out


def _if_none_match(headers: Headers) -> bytes | None:
    values = [v for k, v in headers if k.lower() == b"if-none-match"]
    return b", ".join(values) if values else None


def _tag(digest: str) -> bytes:
    return f'W/"sha256-{digest}"'.encode()


def _ours(tag: bytes) -> bool:
    return tag.startswith(b'"sha256-')


def _inflate(body: bytes, coding: bytes, limit: int) -> bytes | None:
    """``body`` without its Content-Encoding, at most ``limit`` bytes; None if it cannot be."""
    coding = coding.strip().lower()
    if coding == b"deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
        wrapped = _inflate_with(body, zlib.MAX_WBITS, limit)
        return wrapped if wrapped is not None else _inflate_with(body, -zlib.MAX_WBITS, limit)
    if coding not in _CODINGS:
        return None
    wbits = _CODINGS[coding]
    return body if wbits is None else _inflate_with(body, wbits, limit)


def _inflate_with(body: bytes, wbits: int, limit: int) -> bytes | None:
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        return None
    if len(data) > limit or inflater.unconsumed_tail or not inflater.eof:
        return None  # a bomb, or a truncated stream
    return data


# --------------------------------------------------------------------------- files


def signature(path: str) -> Signature | None:
    """What changes whenever a file's content does (None: no such regular file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _racy(sig: Signature) -> bool:
    return time.time_ns() - sig[3] < RACY_S * 1e9


def _read_digest(path: str) -> tuple[Signature, str] | None:
    """(signature, sha256) of a file of at most MAX_VERSIONED bytes; None if it is not one."""
    sig = signature(path)
    if sig is None or sig[2] > MAX_VERSIONED:
        return None
    try:
        with open(path, "rb") as source:
            data = source.read(MAX_VERSIONED + 1)
    except OSError:
        return None
    if signature(path) != sig:  # written while it was read: no version to remember
        return None
    return sig, _sha256(data)


class Digests:
    """Content hashes of files, remembered per stat signature (never for racy files)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[Signature, str]] = {}

    def cached(self, path: str) -> tuple[Signature, str] | None:
        sig = signature(path)
        known = self._known.get(path)
        return known if known is not None and sig == known[0] else None

    def now(self, path: str) -> tuple[Signature, str] | None:
        """The file's (signature, hash), hashing it on the event loop if need be."""
        return self.cached(path) or self._remember(path, _read_digest(path))

    async def get(self, path: str) -> tuple[Signature, str] | None:
        """The same; a big file is hashed in a worker thread."""
        known = self.cached(path)
        if known is not None:
            return known
        sig = signature(path)
        if sig is not None and sig[2] > HASH_INLINE:
            return self._remember(path, await anyio.to_thread.run_sync(_read_digest, path))
        return self._remember(path, _read_digest(path))

    def forget(self, path: str) -> None:
        self._known.pop(path, None)

    def _remember(
        self, path: str, found: tuple[Signature, str] | None
    ) -> tuple[Signature, str] | None:
        if found is not None and not _racy(found[0]):
            self._known[path] = found
        return found


def url_segments(target: str) -> list[str] | None:
    """The decoded path segments of a request target; None for one no file can answer."""
    path = unquote(target.split("?", 1)[0].split("#", 1)[0])
    segments = [s for s in path.split("/") if s]
    if not segments or path.endswith("/") or any(s in (".", "..") or "\0" in s for s in segments):
        return None
    return segments


class FileIndex:
    """The project's files by name, to find which file a URL might be serving.

    index = FileIndex(root)
    index.walk()                                     # blocking: run it in a worker thread
    index.candidates(["static", "js", "app.js"])    # best first: most trailing segments alike
    """

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
        self._by_name = by_name

    def add(self, path: str) -> None:
        self._by_name.setdefault(os.path.basename(path), set()).add(path)

    def discard(self, path: str) -> None:
        self._by_name.get(os.path.basename(path), set()).discard(path)

    def candidates(self, segments: list[str]) -> list[str]:
        found = set(self._by_name.get(segments[-1], ()))
        if not found:  # new since the last walk: the URL's path under the root, as it is
            for start in range(len(segments)):
                path = os.path.join(self.root, *segments[start:])
                if os.path.isfile(path):
                    found.add(path)
        return sorted(found, key=lambda p: (-_in_common(p, segments), p))[:MAX_CANDIDATES]


def _in_common(path: str, segments: list[str]) -> int:
    parts = PurePosixPath(path).parts
    n = 0
    while n < min(len(parts), len(segments)) and parts[-1 - n] == segments[-1 - n]:
        n += 1
    return n


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Entry:
    """A URL known to serve a file: its version, and what the response varied on."""

    file: str
    signature: Signature
    tag: bytes
    vary: tuple[tuple[bytes, bytes | None], ...]  # request header values the response varied on
    vary_header: bytes | None

    def not_modified(self) -> Headers:
        """The headers of a 304 for it: what a 200 would say about caching."""
        headers = [(b"etag", self.tag), (b"cache-control", b"no-cache")]
        if self.vary_header is not None:
            headers.append((b"vary", self.vary_header))
        return headers


def _vary(request: Headers, vary: bytes | None) -> tuple[tuple[bytes, bytes | None], ...]:
    # the tag names the content, whatever its encoding: Accept-Encoding does not split it
    names = sorted(tokens(vary) - {b"accept-encoding"})
    return tuple((name, get_header(request, name)) for name in names)


class AssetTable:
    """URLs of the app known to serve project files, and their versions (see the module doc)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index = FileIndex(root)
        self.digests = Digests()
        self.entries: dict[str, Entry] = {}
        self.answered = 0  # 304s given without asking the app
        self._walk_due = True
        self._wake: anyio.Event | None = None

    async def keep_index(self) -> None:
        """Walk the project now and whenever a walk is asked for, at most every few seconds."""
        while True:
            if not self._walk_due:
                self._wake = anyio.Event()
                await self._wake.wait()
            self._walk_due = False
            await anyio.to_thread.run_sync(self.index.walk, abandon_on_cancel=True)
            await anyio.sleep(WALK_INTERVAL_S)

    def _ask_for_walk(self) -> None:
        self._walk_due = True
        if self._wake is not None:
            self._wake.set()

    # -- the engine's events ---------------------------------------------------------------

    def changed(self, paths: Iterable[str]) -> None:
        """These files changed (or appeared, or went): forget what was known of them."""
        gone = set()
        for path in paths:
            self.digests.forget(path)
            gone.add(path)
            if os.path.isfile(path):
                self.index.add(path)
            else:
                self.index.discard(path)
        for key in [k for k, e in self.entries.items() if e.file in gone]:
            del self.entries[key]

    def restarted(self) -> None:
        """A new app (or none) answers now: its URLs are learned again; new files indexed."""
        self.entries.clear()
        self._ask_for_walk()

    def versions(self, paths: Iterable[str]) -> dict[str, str]:
        """The version token of each file (the hash its ETag carries), for the CSS refresh."""
        found = {}
        for path in paths:
            known = self.digests.now(path)
            if known is not None:
                found[path] = known[1]
        return found

    # -- requests and responses --------------------------------------------------------------

    def answer(self, method: bytes, target: bytes, request: Headers) -> Headers | None:
        """The headers of a 304 when the browser already has this file's version, else None."""
        if method not in (b"GET", b"HEAD") or get_header(request, b"range") is not None:
            return None
        tags = entity_tags(_if_none_match(request))
        entry = self.entries.get(target.decode("latin-1"))
        if entry is None or not tags or entry.vary != _vary(request, entry.vary_header):
            return None
        if signature(entry.file) != entry.signature:
            self.changed([entry.file])
            return None
        if b"*" not in tags and entry.tag.removeprefix(b"W/") not in tags:
            return None
        self.answered += 1
        return entry.not_modified()

    @staticmethod
    def forwarded(headers: Headers) -> Headers:
        """A request's headers for the app: pyair's own validators are pyair's to check.

        The app cannot match a tag it never made; asked unconditionally, it sends the body,
        and pyair answers the browser's condition itself (``Tracking.finish``).
        """
        if not any(_ours(t) for t in entity_tags(_if_none_match(headers))):
            return headers
        drop = {b"if-none-match", b"if-modified-since"}
        return [(k, v) for k, v in headers if k.lower() not in drop]

    def track(
        self, method: bytes, target: bytes, request: Headers, status: int, response: Headers
    ) -> Tracking | None:
        """How to relay a response that may be a project file; None: relay it untouched."""
        cache = tokens(get_header(response, b"cache-control"))
        vary = get_header(response, b"vary")
        if method not in (b"GET", b"HEAD") or b"no-store" in cache or b"*" in tokens(vary):
            return None
        key = target.decode("latin-1")
        segments = url_segments(key)
        if segments is None:
            return None
        if method == b"HEAD" or status == 206:
            return self._track_headers_only(method, key, segments, request, status, response)
        if status != 200 or get_header(request, b"range") is not None:
            return None
        candidates = self.index.candidates(segments)
        if not candidates:
            if PurePosixPath(segments[-1]).suffix.lstrip(".").lower() in ASSET_EXTS:
                self._ask_for_walk()  # a static file the index has not seen yet
            return None
        return Tracking(self, key, candidates, request, response)

    def _track_headers_only(
        self,
        method: bytes,
        key: str,
        segments: list[str],
        request: Headers,
        status: int,
        response: Headers,
    ) -> Tracking | None:
        """A HEAD, or a byte range: nothing to hash, so only what is already known counts."""
        if status not in (200, 206):
            return None
        entry = self.entries.get(key)
        if entry is not None and signature(entry.file) != entry.signature:
            entry = None
        if method == b"HEAD" and status == 200 and entry is not None:
            settled = revalidated(response, entry.tag)
        elif entry is not None or self.index.candidates(segments):
            settled = revalidated(response, None)  # the app's validators, without freshness
        else:
            return None
        return Tracking(self, key, [], request, response, settled)

    def _learn(self, key: str, entry: Entry) -> None:
        if _racy(entry.signature):
            self.entries.pop(key, None)
        else:
            self.entries[key] = entry


class Tracking:
    """One app response that may be a project file, on its way to the browser.

    ``settled`` set: the headers are decided already (a HEAD, a byte range), stream the body.
    Else buffer the body up to ``limit`` and ``finish(body)``; past it, ``oversized(length)``.
    """

    def __init__(
        self,
        table: AssetTable,
        key: str,
        candidates: list[str],
        request: Headers,
        response: Headers,
        settled: Headers | None = None,
    ) -> None:
        self.table = table
        self.key = key
        self.candidates = candidates
        self.request = request
        self.response = response
        self.settled = settled
        self.limit = MAX_VERSIONED
        length = get_header(response, b"content-length")
        self.length = int(length) if length is not None and length.isdigit() else None

    def oversized(self, length: int | None) -> Headers:
        """The headers of a body too big to hash: ``no-cache`` if a candidate has its size."""
        coding = get_header(self.response, b"content-encoding") or b""
        if length is not None and coding.strip().lower() in (b"", b"identity"):
            for path in self.candidates:
                sig = signature(path)
                if sig is not None and sig[2] == length:
                    return revalidated(self.response, None)
        return self.response

    async def finish(self, body: bytes) -> tuple[int, Headers, bytes]:
        """(status, headers, body) for the browser, once the whole body is in."""
        coding = get_header(self.response, b"content-encoding") or b""
        plain = _inflate(body, coding, self.limit)
        if plain is None:
            return 200, self.response, body
        if len(plain) > HASH_INLINE:
            digest = await anyio.to_thread.run_sync(_sha256, plain)
        else:
            digest = _sha256(plain)
        for path in self.candidates:
            known = await self.table.digests.get(path)
            if known is not None and known[1] == digest:
                sig = known[0]
                break
        else:
            return 200, self.response, body  # not a file as it is on disk: the app's own
        vary = get_header(self.response, b"vary")
        entry = Entry(path, sig, _tag(digest), _vary(self.request, vary), vary)
        self.table._learn(self.key, entry)
        tags = entity_tags(_if_none_match(self.request))
        if entry.tag.removeprefix(b"W/") in tags or b"*" in tags:
            return 304, entry.not_modified(), b""
        return 200, revalidated(self.response, entry.tag), body


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
