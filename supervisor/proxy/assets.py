"""Asset versions: the app's static files get content ETags, versioned URLs and 304s from pyair.

    assets = AssetTable(config.root)
    tg.start_soon(assets.keep_index)                 # the project's files, by name
    asset = assets.request(b"GET", target, headers)  # one browser request
    asset.not_modified()                             # a 304's headers, or None: ask the app
    asset.target, asset.forwarded(headers)           # what the app is asked
    tracking = await asset.track(200, headers)       # None: relay the response untouched
    status, headers, body = await tracking.finish(body)
    page = await assets.version_page(page, target)   # <script src>, <link href>, <img src>
    page.body, page.preload                          # the page; Link: rel=preload values
    assets.changed(paths); assets.versions(paths)    # the engine's events; the CSS refresh
    assets.fresh_urls(paths)                         # what a tab fetches before it reloads

An app's own caching (``max-age=3600`` on its JS) would let a reload run yesterday's script
against today's page. Through the proxy, a response whose bytes are a project file (decoded when
gzip'd) gets ``ETag: W/"sha256-<hex>"``, the hash of that file's content, and its freshness is
pyair's to give:

- ``Cache-Control: no-cache``: the browser asks on every load, and while the file is unchanged
  pyair answers ``304`` itself, from this table, without the app;
- or, for a URL that names the version (``?__pyair=<hex>``, the parameter taken off before the
  app sees the request), ``max-age=31536000, immutable`` when the body has that very hash. Pages
  name them: each ``<script src>`` (classic), ``<link href>`` (stylesheet, icon, preload) and
  ``<img src>`` of a page that gets the live-reload script carries its file's current version,
  so a reload after one file changed fetches that file (a new URL) and takes every other one
  from the cache without a request, and the page and its assets always come from the same
  version. The page's response also names the files whose version changed since a page last
  named them in a ``Link: <url>; rel=preload`` header: the browser fetches them as soon as
  the headers arrive instead of once its parser reaches them (a changed script at the top of
  the page held the cached ones behind it). ES modules are left as they are (a second URL
  would be a second module instance); their imports, CSS ``url()``s and ``fetch``es
  revalidate: 304s.

How a URL finds its file: the files named like its last segment are the candidates, most
trailing path segments in common first, and the one whose content hash equals the body's is it.
Only bytes decide: a route that renders, minifies or compiles on the way out matches no file and
is relayed untouched, and so is any URL no file is named like (an API, a page), unbuffered. The
table keeps what it learned while the file is unchanged (its stat signature, and the engine's
change events) and until the app restarts (its code maps URLs to files). A page names only
versions of files the running app was seen serving at that URL (never a guess from names: a
URL is cached for good), so the first page after a start or a restart names none, and its
assets revalidate. A body that equals several candidates (copies, such as collected static
files) keeps its tag but is never remembered: the app is asked each time. The cost: the first
response of each URL (and after each change) is buffered, up to ``MAX_VERSIONED``, and hashed
(and its candidates, once); a 304 costs a ``stat``; a page, one scan.

Decisions: the tag is weak since it names the file's content, not one encoding of it (the same
for a gzip'd and a plain body), and it can be computed from the file alone: the CSS refresh and
page versions use the same hash. The app's ETag and Last-Modified are replaced: usually
mtime-based, and an mtime can go back (a checkout, ``cp -p``) while content is what the page
runs. Bigger files, byte ranges (206) and HEADs the table knows nothing of keep the app's
validators and lose their freshness (``no-cache``). ``no-store`` and ``Vary: *`` are left alone.
"""

from __future__ import annotations

import html
import os
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin

import anyio

from ..classify import ASSET_EXTS
from .files import (
    MAX_VERSIONED,
    Digests,
    FileIndex,
    Signature,
    is_racy,
    sha256,
    signature,
    url_segments,
)
from .headers import Headers, get_header, tokens

__all__ = [
    "IMMUTABLE",
    "NO_CACHE",
    "VERSION_PARAM",
    "AssetRequest",
    "AssetTable",
    "Tracking",
    "VersionedPage",
    "entity_tags",
    "no_store",
    "split_version",
    "with_caching",
]

VERSION_PARAM = "__pyair"  # ?__pyair=<sha256>: the version a URL asks for
IMMUTABLE = b"max-age=31536000, immutable"
NO_CACHE = b"no-cache"
HASH_INLINE = 256 * 1024  # a bigger body is hashed in a worker thread, off the event loop
WALK_INTERVAL_S = 5.0  # at most one walk of the project this often (a miss asks for one)
MAX_PAGE_ASSETS = 500  # URLs versioned per page; the rest revalidate
MAX_PRELOADS = 16  # changed files named in one page's Link header
MAX_NAMED = 10_000  # URLs whose last named version is kept (then the record starts over)

FRESHNESS = frozenset({b"cache-control", b"expires", b"pragma", b"age"})
VALIDATORS = frozenset({b"etag", b"last-modified"})
_GZIP = 16 + zlib.MAX_WBITS
_CODINGS = {b"": None, b"identity": None, b"gzip": _GZIP, b"x-gzip": _GZIP}
_ENTITY_TAG = re.compile(rb'(?:W/)?"[^"]*"|\*')
_ELEMENT = re.compile(rb"<(script|link|img)(\s[^>]*)>", re.IGNORECASE)
_ATTRIBUTE = re.compile(rb"""([^\s=/>"']+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?""")
_URL_ATTRIBUTE = {b"script": b"src", b"link": b"href", b"img": b"src"}
# what a preload of the element's URL is "as" (a mismatch would fetch it twice)
_PRELOAD_AS = {b"script": "script", b"stylesheet": "style", b"img": "image"}
_VERSIONED_RELS = frozenset({b"stylesheet", b"icon", b"preload", b"apple-touch-icon"})
_CLASSIC_SCRIPT = frozenset({b"", b"text/javascript", b"application/javascript"})
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")


# --------------------------------------------------------------------------- header rules


def entity_tags(value: bytes | None) -> list[bytes]:
    """The tags of an If-None-Match value, each without ``W/`` (weak comparison); ``*`` too.

    >>> entity_tags(b'W/"a", "b"')
    [b'"a"', b'"b"']
    """
    return [tag.removeprefix(b"W/") for tag in _ENTITY_TAG.findall(value or b"")]


def with_caching(headers: Headers, cache: bytes, tag: bytes | None = None) -> Headers:
    """``headers`` with pyair's ``Cache-Control``; ``tag`` replaces the app's validators.

    Without a tag (a file pyair does not hash) the app's own validators stay.
    """
    drop = FRESHNESS | (VALIDATORS if tag is not None else frozenset())
    out = [(k, v) for k, v in headers if k.lower() not in drop]
    out.append((b"cache-control", cache))
    if tag is not None:
        out.append((b"etag", tag))
    return out


def no_store(headers: Headers) -> Headers:
    """``headers`` of a page served with pyair's script: never stored, it is per request."""
    out = [(k, v) for k, v in headers if k.lower() not in FRESHNESS]
    out.append((b"cache-control", b"no-store"))
    return out


def split_version(target: str) -> tuple[str, str | None]:
    """``target`` without pyair's version parameter, and the version it asked for.

    >>> split_version("/static/app.js?v=2&__pyair=ab12")
    ('/static/app.js?v=2', 'ab12')
    """
    path, _, query = target.partition("?")
    if VERSION_PARAM + "=" not in query:
        return target, None
    kept, version = [], None
    for part in query.split("&"):
        if part.startswith(VERSION_PARAM + "="):
            version = part[len(VERSION_PARAM) + 1 :]
        else:
            kept.append(part)
    return (f"{path}?{'&'.join(kept)}" if kept else path), version


def _if_none_match(headers: Headers) -> bytes | None:
    values = [v for k, v in headers if k.lower() == b"if-none-match"]
    return b", ".join(values) if values else None


def _tag(digest: str) -> bytes:
    return f'W/"sha256-{digest}"'.encode()


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


def _vary(request: Headers, vary: bytes | None) -> tuple[tuple[bytes, bytes | None], ...]:
    # the tag names the content, whatever its encoding: Accept-Encoding does not split it
    names = sorted(tokens(vary) - {b"accept-encoding"})
    return tuple((name, get_header(request, name)) for name in names)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Entry:
    """A URL known to serve a file: the file's version, and what the response varied on."""

    file: str
    signature: Signature
    digest: str
    vary: tuple[tuple[bytes, bytes | None], ...]  # request header values the response varied on
    vary_header: bytes | None

    @property
    def tag(self) -> bytes:
        return _tag(self.digest)

    def not_modified(self, cache: bytes) -> Headers:
        """The headers of a 304 for it: what a 200 would say about caching."""
        headers = [(b"etag", self.tag), (b"cache-control", cache)]
        if self.vary_header is not None:
            headers.append((b"vary", self.vary_header))
        return headers


class AssetTable:
    """URLs of the app known to serve project files, and their versions (see the module doc)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index = FileIndex(root)
        self.digests = Digests()
        self.entries: dict[str, Entry] = {}  # the URL as the app gets it → what it serves
        self.routes: dict[str, str] = {}  # the URL → the file it served, whatever its version
        self.answered = 0  # 304s given without asking the app
        self.named: dict[str, str] = {}  # the URL → the version a page named last
        self._walk_due = True
        self._wake: anyio.Event | None = None
        self._indexed: anyio.Event | None = None  # set once the first walk is done

    async def keep_index(self) -> None:
        """Walk the project now and whenever a walk is asked for, at most every few seconds."""
        self._indexed = anyio.Event()
        while True:
            if not self._walk_due:
                self._wake = anyio.Event()
                await self._wake.wait()
            self._walk_due = False
            try:
                await anyio.to_thread.run_sync(self.index.walk, abandon_on_cancel=True)
            finally:
                self._indexed.set()  # a walk cut short: what it found, never a held request
            await anyio.sleep(WALK_INTERVAL_S)

    async def indexed(self) -> None:
        """Until the first walk is done (long before the app answers, but a big tree...)."""
        if self._indexed is not None and not self._indexed.is_set():
            await self._indexed.wait()

    def ask_for_walk(self) -> None:
        self._walk_due = True
        if self._wake is not None:
            self._wake.set()

    # -- the engine's events ---------------------------------------------------------------

    def changed(self, paths: Iterable[str]) -> None:
        """These files changed (or appeared, or went): forget what was known of them.

        A URL matched to an identical copy of a changed file is forgotten too: only bytes told
        the two apart.
        """
        files, digests = set(), set()
        for path in paths:
            old = self.digests.forget(path)
            if old is not None:
                digests.add(old)
            files.add(path)
            if os.path.isfile(path):
                self.index.add(path)
            else:
                self.index.discard(path)
        for key, entry in list(self.entries.items()):
            if entry.file in files:  # the URL still serves the file: its route stays
                del self.entries[key]
            elif entry.digest in digests:  # a copy changed: the URL may have served it
                del self.entries[key]
                self.routes.pop(key, None)

    def restarted(self) -> None:
        """A new app (or none) answers now: its URLs are learned again; new files indexed."""
        self.entries.clear()
        self.routes.clear()
        self.ask_for_walk()

    def fresh_urls(self, paths: Iterable[str]) -> list[str]:
        """The URLs, version included, under which pages will name the changed ``paths``: the
        URLs the app served them at. A tab fetches these before it reloads, so the reloaded
        page finds the new files in the browser's cache instead of fetching each one once the
        parser reaches it (and the cached files behind it wait)."""
        wanted = set(paths)
        urls = []
        for key, file in self.routes.items():
            if file not in wanted:
                continue
            sig = signature(file)
            known = self.digests.now(file) if sig is not None and sig[2] <= HASH_INLINE else None
            if known is not None:
                urls.append(_with_version(key, known[1]))
            if len(urls) >= MAX_PRELOADS:
                break
        return urls

    def versions(self, paths: Iterable[str]) -> dict[str, str]:
        """The version of each file (the hash its ETag carries), for the CSS refresh."""
        found = {}
        for path in paths:
            known = self.digests.now(path)
            if known is not None:
                found[path] = known[1]
        return found

    # -- requests and pages -------------------------------------------------------------------

    def request(self, method: bytes, target: bytes, headers: Headers) -> AssetRequest:
        return AssetRequest(self, method, target, headers)

    async def version_page(self, page: bytes, target: bytes) -> VersionedPage:
        """``page`` with the version of each project file it loads in that file's URL, and
        the preloads of those whose version changed since a page named them."""
        await self.indexed()
        base = split_version(target.decode("latin-1"))[0].split("?", 1)[0]
        found: list[_Found] = []
        for element in _ELEMENT.finditer(page):
            where = _versionable(element)
            if where is not None:
                start, end, preload_as = where
                value = page[start:end]
                key = _page_url(base, value)
                if key is not None:
                    found.append(_Found(end, value, key, preload_as))
            if len(found) >= MAX_PAGE_ASSETS:
                break
        versions: dict[str, str | None] = {}
        for asset in found:
            if asset.key not in versions:
                versions[asset.key] = await self._version_of(asset.key)
        previous = {key: self.named.get(key) for key in versions}
        out: list[bytes] = []
        preload: list[bytes] = []
        preloaded: set[str] = set()
        last = 0
        if len(self.named) > MAX_NAMED:
            self.named.clear()
        for asset in found:
            version = versions[asset.key]
            if version is None:
                continue
            joiner = b"&amp;" if b"?" in asset.value else b"?"  # the page's own escaping
            out += [page[last : asset.end], joiner, f"{VERSION_PARAM}={version}".encode()]
            last = asset.end
            before = previous.get(asset.key)
            self.named[asset.key] = version
            if (
                asset.preload_as
                and before not in (None, version)
                and asset.key not in preloaded
                and len(preload) < MAX_PRELOADS
            ):
                preloaded.add(asset.key)
                url = _with_version(html.unescape(asset.value.decode("ascii")).strip(), version)
                preload.append(f"<{url}>; rel=preload; as={asset.preload_as}".encode())
        body = b"".join(out) + page[last:] if out else page
        return VersionedPage(body, preload)

    async def _version_of(self, key: str) -> str | None:
        """The current version of the file ``key`` served, if this app served it already.

        Never a guess from names alone: a URL is cached for good under the version it names,
        so naming one for a file the app does not serve there would be a stale asset for good.
        """
        file = self.routes.get(key)
        if file is None:
            return None
        known = await self.digests.get(file)
        return known[1] if known is not None else None

    def learn(self, key: str, entry: Entry) -> None:
        """``key`` served ``entry.file``, as it is now."""
        self.routes[key] = entry.file
        if is_racy(entry.signature):  # its signature may not show the next write yet
            self.entries.pop(key, None)
        else:
            self.entries[key] = entry

    def unlearn(self, key: str) -> None:
        """``key`` served no one file as it is on disk."""
        self.entries.pop(key, None)
        self.routes.pop(key, None)


def _with_version(url: str, version: str) -> str:
    """``url`` (a plain one, not HTML-escaped) naming ``version``."""
    return f"{url}{'&' if '?' in url else '?'}{VERSION_PARAM}={version}"


@dataclass(frozen=True)
class VersionedPage:
    body: bytes
    preload: list[bytes]  # values of a Link header: the files whose version changed


@dataclass(frozen=True)
class _Found:
    end: int  # where the URL ends in the page
    value: bytes  # the URL as written
    key: str  # the URL as requested
    preload_as: str | None  # what a preload of it is (None: not preloaded)


def _versionable(element: re.Match[bytes]) -> tuple[int, int, str | None] | None:
    """Where the URL of a ``<script>``, ``<link>`` or ``<img>`` worth versioning sits, and
    what a preload of it would be "as" (None for one a preload could not stand in for: a
    cross-origin or integrity-checked fetch, an icon)."""
    name = element.group(1).lower()
    attributes = {}
    for attribute in _ATTRIBUTE.finditer(element.group(2)):
        attributes[attribute.group(1).lower()] = attribute
    wanted = attributes.get(_URL_ATTRIBUTE[name])
    if wanted is None or wanted.group(2) is None:
        return None

    def value(attr: bytes) -> bytes:
        found = attributes.get(attr)
        return (found.group(2) or b"").strip(b"\"'").strip().lower() if found else b""

    if name == b"script" and value(b"type") not in _CLASSIC_SCRIPT:
        return None  # a module: another URL would be another instance of it
    rels = set(value(b"rel").split())
    if name == b"link" and not (rels & _VERSIONED_RELS):
        return None
    start, end = element.start(2) + wanted.start(2), element.start(2) + wanted.end(2)
    raw = wanted.group(2)
    if raw[:1] in (b'"', b"'"):
        start, end = start + 1, end - 1
    kind = b"stylesheet" if name == b"link" and b"stylesheet" in rels else name
    plain = b"crossorigin" not in attributes and b"integrity" not in attributes
    return start, end, _PRELOAD_AS.get(kind) if plain else None


def _page_url(base: str, value: bytes) -> str | None:
    """The target a page's ``value`` (an attribute, as written) is requested as; None if it
    is not one of the app's own URLs this table could version."""
    if not value or not value.isascii():
        return None
    url = html.unescape(value.decode("ascii")).strip()
    if not url or any(c in url for c in "# \t\n") or VERSION_PARAM in url or url.startswith("//"):
        return None
    if url.startswith("/"):
        key = url if "/." not in url else urljoin(base, url)  # the usual case, without urljoin
    elif _SCHEME.match(url):
        return None  # another origin, data:, javascript:
    else:
        key = urljoin(base, url)
    return key if key.startswith("/") else None


class AssetRequest:
    """One browser request as the table sees it: its URL without pyair's version parameter."""

    def __init__(self, table: AssetTable, method: bytes, target: bytes, headers: Headers) -> None:
        self.table = table
        self.method = method
        self.key, self.version = split_version(target.decode("latin-1"))
        self.target = self.key.encode("latin-1")  # what the app is asked for
        self.headers = headers
        self.tags = entity_tags(_if_none_match(headers))

    def cache_control(self, digest: str) -> bytes:
        """Long freshness for a URL that names the very version it gets, else revalidation."""
        return IMMUTABLE if self.version == digest else NO_CACHE

    def has(self, digest: str) -> bool:
        """Does the browser already hold this version (If-None-Match)?"""
        return b"*" in self.tags or _tag(digest).removeprefix(b"W/") in self.tags

    def not_modified(self) -> Headers | None:
        """The headers of a 304 when the browser has the file's current version, else None."""
        if self.method not in (b"GET", b"HEAD") or not self.tags:
            return None
        entry = self.table.entries.get(self.key)
        if get_header(self.headers, b"range") is not None or entry is None:
            return None
        if entry.vary != _vary(self.headers, entry.vary_header):
            return None
        if signature(entry.file) != entry.signature:
            self.table.changed([entry.file])
            return None
        if not self.has(entry.digest):
            return None
        self.table.answered += 1
        return entry.not_modified(self.cache_control(entry.digest))

    def forwarded(self, headers: Headers) -> Headers:
        """The request's headers for the app: pyair's own validators are pyair's to check.

        The app cannot match a tag it never made; asked unconditionally it sends the body, and
        pyair answers the browser's condition itself (``Tracking.finish``).
        """
        if not any(t.startswith(b'"sha256-') for t in self.tags):
            return headers
        drop = {b"if-none-match", b"if-modified-since"}
        return [(k, v) for k, v in headers if k.lower() not in drop]

    async def track(self, status: int, response: Headers) -> Tracking | None:
        """How to relay the app's response if it may be a project file; None: untouched."""
        await self.table.indexed()
        cache = tokens(get_header(response, b"cache-control"))
        vary = get_header(response, b"vary")
        if self.method not in (b"GET", b"HEAD") or b"no-store" in cache or b"*" in tokens(vary):
            return None
        segments = url_segments(self.key.split("?", 1)[0])
        if segments is None:
            return None
        if self.method == b"HEAD" or status == 206:
            return self._headers_only(segments, status, response)
        if status != 200 or get_header(self.headers, b"range") is not None:
            return None
        candidates = self.table.index.candidates(segments)
        if not candidates:
            if PurePosixPath(segments[-1]).suffix.lstrip(".").lower() in ASSET_EXTS:
                self.table.ask_for_walk()  # a static file the index has not seen yet
            return None
        return Tracking(self, candidates, response)

    def _headers_only(self, segments: list[str], status: int, response: Headers) -> Tracking | None:
        """A HEAD, or a byte range: nothing to hash, so only what is known already counts."""
        if status not in (200, 206):
            return None
        entry = self.table.entries.get(self.key)
        if entry is not None and signature(entry.file) != entry.signature:
            entry = None
        if self.method == b"HEAD" and status == 200 and entry is not None:
            settled = with_caching(response, self.cache_control(entry.digest), entry.tag)
        elif entry is not None or self.table.index.candidates(segments):
            settled = with_caching(response, NO_CACHE)  # the app's validators stay
        else:
            return None
        return Tracking(self, [], response, settled)


class Tracking:
    """An app response that may be a project file, on its way to the browser.

    ``settled``: its headers are decided already (a HEAD, a byte range); stream the body. Else
    buffer the body up to ``limit`` and ``finish(body)``; past it, ``oversized(length)``.
    """

    def __init__(
        self,
        request: AssetRequest,
        candidates: list[str],
        response: Headers,
        settled: Headers | None = None,
    ) -> None:
        self.request = request
        self.candidates = candidates
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
                    return with_caching(self.response, NO_CACHE)
        return self.response

    async def finish(self, body: bytes) -> tuple[int, Headers, bytes]:
        """(status, headers, body) for the browser, once the whole body is in."""
        coding = get_header(self.response, b"content-encoding") or b""
        plain = _inflate(body, coding, self.limit)
        if plain is None:
            return 200, self.response, body
        if len(plain) > HASH_INLINE:
            digest = await anyio.to_thread.run_sync(sha256, plain)
        else:
            digest = sha256(plain)
        request, table = self.request, self.request.table
        matches = []
        for path in self.candidates:
            known = await table.digests.get(path)
            if known is not None and known[1] == digest:
                matches.append((path, known[0]))
        if not matches:
            table.unlearn(request.key)
            return 200, self.response, body  # not a file as it is on disk: the app's own
        vary = get_header(self.response, b"vary")
        entry = Entry(*matches[0], digest, _vary(request.headers, vary), vary)
        if len(matches) == 1:
            table.learn(request.key, entry)
            cache = request.cache_control(digest)
        else:  # copies (collected static files): which one it serves, no byte can tell
            table.unlearn(request.key)
            cache = NO_CACHE  # the tag stays right; the app is asked every time
        if request.has(digest):
            return 304, entry.not_modified(cache), b""
        return 200, with_caching(self.response, cache, entry.tag), body
