"""The live-reload script: its source, its tag, and which responses get it.

    script = Script(instance="3f2a9c0d1e7b")
    script.source                                   # what /__pyair/client.js serves
    if should_inject(request_headers, b"GET", 200, response_headers):
        page = inject_script(decode_body(body, b"gzip"), script.tag(Served("2", 0, 0), b"GET"))

The script is ``static/morph.js`` and ``static/client.js`` in one file, cached for good under a
version taken from its content. Each tag carries what its page was served with, so a tab can
tell which events it missed.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from .headers import Headers, get_header, wants_document

__all__ = [
    "RESERVED",
    "Script",
    "Served",
    "decode_body",
    "inject_script",
    "is_page",
    "should_inject",
]

RESERVED = "/__pyair/"  # everything under it is pyair's own, never the app's
STATIC = Path(__file__).parent.parent / "static"

_DECODABLE = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": 0}
_BODY_CLOSE = re.compile(rb"</body", re.IGNORECASE)
_DOCUMENT = re.compile(rb"<!doctype|<html|<head|<body", re.IGNORECASE)


@dataclass
class Served:
    """What a page was served with, for its tag: app generation, template and CSS revisions."""

    gen: str
    rev: int
    css: int


class Script:
    """The browser side of live reload, and the tag that loads it into a page."""

    def __init__(self, instance: str) -> None:
        self.instance = instance  # which pyair served the page: a new one means reload
        self.source = (
            (STATIC / "morph.js").read_bytes() + b"\n" + (STATIC / "client.js").read_bytes()
        )
        self.version = hashlib.sha256(self.source).hexdigest()[:12]

    def tag(self, served: Served, method: bytes) -> bytes:
        return (
            f'<script data-pyair src="{RESERVED}client.js?v={self.version}" '
            f'data-instance="{self.instance}" data-gen="{served.gen}" data-rev="{served.rev}" '
            f'data-css="{served.css}" data-method="{method.decode("latin-1")}"></script>'
        ).encode()


def should_inject(request: Headers, method: bytes, status: int, response: Headers) -> bool:
    """Is this response a page the script belongs in (not a fragment, a download, a HEAD)?"""
    if method == b"HEAD" or status in (204, 206, 304) or status < 200:  # 206: a byte range
        return False
    content_type = get_header(response, b"content-type") or b""
    if not content_type.lower().startswith(b"text/html"):
        return False
    if b"attachment" in (get_header(response, b"content-disposition") or b"").lower():
        return False
    # htmx and friends fetch fragments: a script there would start a second client
    return get_header(request, b"hx-request") is None


def is_page(request: Headers, body: bytes) -> bool:
    """A whole document (not a fragment that happens to be text/html)."""
    if _BODY_CLOSE.search(body) or wants_document(request):
        return True
    return _DOCUMENT.search(body[:4096]) is not None


def inject_script(body: bytes, tag: bytes) -> bytes:
    """``tag`` before the last ``</body>`` (any case), else at the end.

    >>> inject_script(b"<body>x</body></html>", b"<s>")
    b'<body>x<s></body></html>'
    """
    last = None
    for last in _BODY_CLOSE.finditer(body):  # noqa: B007 - the last match is the one we want
        pass
    if last is None:
        return body + tag
    return body[: last.start()] + tag + body[last.start() :]


def decode_body(body: bytes, coding: bytes) -> bytes | None:
    """``body`` without its Content-Encoding (gzip or deflate), None when that is impossible."""
    coding = coding.strip().lower()
    if coding in (b"", b"identity"):
        return body
    if coding not in _DECODABLE:
        return None
    try:
        if coding == b"deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
        return zlib.decompress(body, _DECODABLE[coding])
    except zlib.error:
        return None
