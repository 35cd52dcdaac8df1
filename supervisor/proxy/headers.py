"""The proxy's header rules: pure functions on ``[(name, value), ...]`` lists, no I/O.

    get_header(headers, b"content-type")          # the first value, or None
    end_to_end(headers)                           # without hop-by-hop headers
    upstream_headers(headers, client_ip="::1")    # what the app gets for a browser's request
    downstream_headers(headers)                   # what the browser gets of the app's response
    wants_document(headers)                       # a navigation, not a fetch or an asset

Names are compared in lower case; h11 hands them over that way.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "HOP_BY_HOP",
    "Headers",
    "connection_tokens",
    "downstream_headers",
    "end_to_end",
    "get_header",
    "is_upgrade",
    "tokens",
    "upstream_headers",
    "wants_document",
]

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# set by pyair from what it sees; a client's own would let it pose as someone else to the app
FORWARDED = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip"}
)
# what pyair can take off a page to inject its script
DECODABLE_CODINGS = frozenset({b"gzip", b"deflate"})


def get_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case), None when there is none."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def tokens(value: bytes | None) -> set[bytes]:
    """The comma-separated tokens of a header value, lower case."""
    return {t.strip().lower() for t in (value or b"").split(b",") if t.strip()}


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Every token of every Connection header."""
    return tokens(b",".join(v for k, v in headers if k.lower() == b"connection"))


def end_to_end(headers: Iterable[tuple[bytes, bytes]], keep: Iterable[bytes] = ()) -> Headers:
    """Headers without the hop-by-hop ones (and those the Connection header names)."""
    headers = list(headers)
    drop = (HOP_BY_HOP | connection_tokens(headers)) - set(keep)
    return [(k, v) for k, v in headers if k.lower() not in drop]


def is_upgrade(headers: Headers) -> bool:
    """Does the request ask to switch protocols (a WebSocket, say)?"""
    return get_header(headers, b"upgrade") is not None and b"upgrade" in connection_tokens(headers)


def wants_document(headers: Headers) -> bool:
    """Is this request a navigation (a page for the tab), not a fetch or an asset?"""
    mode = get_header(headers, b"sec-fetch-mode")
    if mode is not None:
        return mode == b"navigate"
    return b"text/html" in (get_header(headers, b"accept") or b"")


def upstream_headers(headers: Headers, client_ip: str) -> Headers:
    """The headers of a browser's request as the app gets them, from ``client_ip``."""
    upgrade = is_upgrade(headers)
    out = end_to_end(headers, keep=(b"upgrade",) if upgrade else ())
    out = [(k, v) for k, v in out if k not in (b"expect", b"accept-encoding")]
    if upgrade:
        out.append((b"connection", b"upgrade"))
    if get_header(headers, b"transfer-encoding") is not None:
        out.append((b"transfer-encoding", b"chunked"))
    # a page is decoded here to inject the script: ask for it plain, and otherwise only
    # for codings pyair can decode
    if wants_document(headers):
        out.append((b"accept-encoding", b"identity"))
    else:
        wanted = tokens(get_header(headers, b"accept-encoding")) & DECODABLE_CODINGS
        if wanted:
            out.append((b"accept-encoding", b", ".join(sorted(wanted))))
    return _forwarded(out, headers, client_ip)


def _forwarded(out: Headers, request: Headers, client_ip: str) -> Headers:
    """``out`` with the X-Forwarded-* headers pyair sets (the browser's own are dropped:
    pyair is the first hop, nothing before it can vouch for them)."""
    out = [(k, v) for k, v in out if k not in FORWARDED]
    out.append((b"x-forwarded-for", client_ip.encode()))
    out.append((b"x-forwarded-proto", b"http"))
    if host := get_header(request, b"host"):
        out.append((b"x-forwarded-host", host))
    return out


def downstream_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """The end-to-end headers of the app's response, framed as pyair re-encodes it: a
    Content-Length that came with a Transfer-Encoding meant nothing (RFC 9112 6.3) and goes."""
    headers = list(headers)
    out = end_to_end(headers)
    if get_header(headers, b"transfer-encoding") is not None:
        out = [(k, v) for k, v in out if k.lower() != b"content-length"]
    return out
