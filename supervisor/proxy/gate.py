"""What the proxy refuses before it answers or forwards anything: foreign hosts, bad framing.

    gate = Gate(allowed=("dev.test", ".dev.test"), bind="127.0.0.1")
    gate.host_refusal(request)     # None, or why a 403: a Host pyair was not told about
    gate.origin_refusal(request)   # None, or why a 403: another site's page (WebSocket, events)
    framing_refusal(request)       # None, or (400, why): framing a proxy must refuse (RFC 9112)
    request_line_refusal(b"GET /\\r\\n")   # (400, why): HTTP/0.9, which h11 would wait on

Any web page the developer visits can make the browser send requests to 127.0.0.1. A page
can only read the answers if its own name resolves there (DNS rebinding), and then the
browser's ``Host`` is that name: so the proxy answers only ``localhost``, ``*.localhost``,
IP addresses (a rebinding page always has a name, never an address), the bind address and
``[proxy] allowed_hosts``. A WebSocket or the events stream opened by another site's page
carries that page's ``Origin``, whatever its Host: those are checked too.

Pure functions on h11 events and bytes (the gate remembers which refusals it reported).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import h11

from .headers import get_header, tokens

__all__ = ["Gate", "framing_refusal", "host_name", "request_line_refusal"]

HINT_KEY = "[proxy] allowed_hosts"
REPORTED = 20  # distinct refusals said on the console; an attack must not flood it
_NAME = re.compile(r"[a-z0-9_.-]+")


def host_name(authority: str) -> str | None:
    """The host of ``host[:port]`` (``[v6]:port`` too), lower case; None when malformed."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        end = authority.find("]")
        rest = authority[end + 1 :]
        if end < 0 or (rest and not re.fullmatch(r":\d*", rest)):
            return None
        return authority[1:end] or None
    name, _, port = authority.partition(":")
    if port and not port.isdigit():
        return None
    name = name.removesuffix(".")  # "localhost." is localhost
    return name if name and _NAME.fullmatch(name) else None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Gate:
    """Which Host and Origin names the proxy answers (see the module docstring)."""

    def __init__(self, allowed: tuple[str, ...] = (), bind: str = "127.0.0.1") -> None:
        self._reported: set[str] = set()
        self.any = "*" in allowed
        self.names = {name for name in allowed if not name.startswith(".")}
        self.domains = tuple(name for name in allowed if name.startswith("."))
        bound = host_name(f"[{bind}]" if ":" in bind else bind)
        if bound:
            self.names.add(bound)

    def allows(self, name: str) -> bool:
        """Does the proxy answer requests for the host ``name`` (lower case, no port)?"""
        if self.any or name == "localhost" or name.endswith(".localhost"):
            return True
        if name in self.names or _is_address(name):
            return True
        return any(name == domain[1:] or name.endswith(domain) for domain in self.domains)

    def first_time(self, refusal: str) -> bool:
        """Is this refusal new (worth one console line)? At most REPORTED distinct ones."""
        if refusal in self._reported or len(self._reported) >= REPORTED:
            return False
        self._reported.add(refusal)
        return True

    def host_refusal(self, request: h11.Request) -> str | None:
        """Why ``request`` is refused for its Host (or its absolute-form target), else None."""
        raw = get_header(request.headers, b"host")
        if raw is None:  # HTTP/1.0 (h11 already refused an HTTP/1.1 request without one)
            return f"a request without a Host header is not answered; see {HINT_KEY}"
        host = raw.decode("latin-1")
        named = [("Host", host)]
        target = request.target.decode("latin-1")
        if "://" in target:  # absolute-form: its authority is the host the client means
            named.append(("target's host", urlsplit(target).netloc.rpartition("@")[2]))
        for what, authority in named:
            name = host_name(authority)
            if name is None or not self.allows(name):
                return (
                    f"the {what} {authority!r} is not allowed; add {name or authority!r} to "
                    f"{HINT_KEY} to open pyair under that name"
                )
        return None

    def origin_refusal(self, request: h11.Request) -> str | None:
        """Why a page of another site may not have ``request`` (a WebSocket or the events
        stream), else None. No Origin: not a cross-site page (browsers always send it then)."""
        raw = get_header(request.headers, b"origin")
        if raw is None:
            return None
        origin = raw.decode("latin-1").strip()
        parts = urlsplit(origin)
        name = host_name(parts.netloc) if parts.scheme in ("http", "https") else None
        if name is None or not self.allows(name):
            return f"the Origin {origin!r} is not allowed; add its host to {HINT_KEY}"
        return None


def framing_refusal(request: h11.Request) -> tuple[int, str] | None:
    """(status, why) for a request whose body framing a proxy must not pass on, else None.

    h11 already refuses differing Content-Lengths and codings other than chunked (a 501 from
    it is answered 400 here: the body's length cannot be known). What it accepts and RFC 9112
    still calls ambiguous: Transfer-Encoding with Content-Length (the classic smuggling pair),
    and Transfer-Encoding in HTTP/1.0.
    """
    coding = get_header(request.headers, b"transfer-encoding")
    if coding is None:
        return None
    if request.http_version == b"1.0":
        return 400, "Transfer-Encoding in an HTTP/1.0 request"
    if get_header(request.headers, b"content-length") is not None:
        return 400, "both Content-Length and Transfer-Encoding"
    if tokens(coding) != {b"chunked"}:
        return 400, "a Transfer-Encoding other than chunked"
    return None


def request_line_refusal(start: bytes) -> tuple[int, str] | None:
    """(status, why) for a request whose first line (the start of ``start``) h11 would take
    or wait on but pyair must refuse: HTTP/0.9 (no version), HTTP/2 and later in HTTP/1 form.
    None while the line is incomplete, and for anything h11 judges itself."""
    end = start.find(b"\n")
    if end <= 0:
        return None
    parts = start[:end].rstrip(b"\r").split(b" ")
    if len(parts) == 2 and parts[1]:
        return 400, "HTTP/0.9 requests are not supported"
    if len(parts) == 3 and re.fullmatch(rb"HTTP/[02-9](\.\d)?", parts[2]):
        return 505, f"{parts[2].decode('latin-1')} is not supported here: use HTTP/1.1"
    return None
