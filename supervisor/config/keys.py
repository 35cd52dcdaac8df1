"""Keys: what a config field accepts, how it is cleaned, where it may be set (its metadata).

A section is a frozen dataclass whose fields are declared with these helpers. Each one puts a
:class:`Key` in the field's metadata; reading the file and the flags, the hints of an error
and ``known_keys()`` all read it, so a key's whole behaviour is on its line:

    @dataclass(frozen=True)
    class BuildConfig:
        cmd: str = text(per_os=True)                           # may be set in [build.linux]
        delay: int = duration(10, at_most=MINUTE)              # ms: 10, "250ms", "2s"
        kill_delay: int = duration(500, at_most=MINUTE, nanos_if_large=True)  # air's ns rule
        include_ext: tuple[str, ...] = extensions(("py",))     # ".py" is cleaned to "py"

    Key.of(fields(BuildConfig)[1]).read("2s", from_flag=True)  # 2000
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import Field, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .values import (
    ARGV,
    BOOLEAN,
    DURATION,
    ENVIRONMENT,
    PRELOAD,
    STRINGS,
    TABLES,
    TEXT,
    WHOLE_NUMBER,
    BadValue,
    Duration,
    Kind,
    suggest,
)

_KEY = "pyair.key"

SECOND, MINUTE, HOUR = 1000, 60_000, 3_600_000  # in milliseconds, for durations' bounds
COLOR_NAMES = ("red", "green", "yellow", "blue", "magenta", "cyan", "white", "raw", "")
READY_URL_PREFIXES = ("http://", "https://", "/")

T = TypeVar("T")


@dataclass(frozen=True)
class Key:
    """What one config key accepts; the metadata of its dataclass field."""

    kind: Kind
    choices: tuple[str, ...] = ()  # the only values allowed ("" is allowed, never offered)
    clean: Callable[[Any], Any] | None = None  # after reading: normalise, or raise BadValue
    per_os: bool = False  # may also be set in [build.<os>]
    unused: str | None = None  # an air key pyair accepts and ignores, and why
    row: type[Any] | None = None  # an array of tables ([[build.rules]]): each entry's dataclass

    @property
    def flag(self) -> bool:
        """Whether a command-line flag may set it (an array of tables may not, as in air)."""
        return self.row is None

    @staticmethod
    def of(f: Field[Any]) -> Key | None:
        """The key declared on a dataclass field; None for a field that is not a config key."""
        key = f.metadata.get(_KEY)
        return key if isinstance(key, Key) else None

    def read(self, value: object, *, from_flag: bool) -> object:
        """The field's value from a TOML value (or a flag's string), else BadValue."""
        result = self.kind.read(value, from_flag=from_flag)
        if self.choices and result not in self.choices:
            offered = [c for c in self.choices if c]
            guess = suggest(str(result), offered)
            raise BadValue(
                f"expected one of {_listed(offered)}, got {result!r}",
                f"did you mean {guess!r}?" if guess else f"use one of {_listed(offered)}",
            )
        return result if self.clean is None else self.clean(result)

    def file_hint(self, leaf: str, value: object) -> str:
        """How to write this key in the file, after ``value`` was refused."""
        if self.choices:
            return f"use one of {_listed(c for c in self.choices if c)}"
        return self.kind.file_hint(leaf, value)

    def flag_hint(self, dotted: str) -> str:
        """How to pass this key as a flag."""
        return f"pass --{dotted} {self.kind.flag_example}"


def _listed(choices: Iterable[str]) -> str:
    return ", ".join(repr(c) for c in choices)


def _key(default: T, key: Key) -> T:
    return field(default=default, metadata={_KEY: key})


# --------------------------------------------------------------------------- the helpers


def text(default: str = "", *, per_os: bool = False, blank_means_default: bool = False) -> str:
    """A string. ``blank_means_default``: ``""`` (or spaces) gives the default, as in air."""

    def clean(value: str) -> str:
        return value if value.strip() else default

    return _key(default, Key(TEXT, clean=clean if blank_means_default else None, per_os=per_os))


def optional_text() -> str | None:
    """A string that is None when it is not set (TOML has no null)."""
    return _key(None, Key(TEXT))


def path(default_factory: Callable[[], Path]) -> Path:
    """A path written as a string (loading resolves it): ``root = "."``."""
    return field(default_factory=default_factory, metadata={_KEY: Key(TEXT)})


def boolean(default: bool) -> bool:
    """``true`` or ``false`` in the file; a flag also takes yes/no, on/off, 1/0."""
    return _key(default, Key(BOOLEAN))


def port(default: int = 0) -> int:
    """A TCP port, 0..65535 (0: none, or any free one)."""

    def clean(value: int) -> int:
        if not 0 <= value <= 65535:
            raise BadValue(f"a port is 0..65535, got {value}")
        return value

    return _key(default, Key(WHOLE_NUMBER, clean=clean))


def duration(
    ms: int,
    *,
    at_most: int,
    at_least: int = 0,
    zero_means_default: bool = False,
    nanos_if_large: bool = False,
) -> int:
    """Milliseconds: ``500``, ``"500ms"``, ``"2s"``, ``"1m30s"``; the default is ``ms``.

    ``at_most``: larger values are refused (a typo of a few digits, not a wish to wait a
    century). ``at_least``: smaller values are raised to it. ``zero_means_default``: 0 gives
    ``ms``. ``nanos_if_large``: air's ``kill_delay`` rule (a bare 500000000 is nanoseconds).
    """

    def clean(value: int) -> int:
        if value > at_most:
            limit = written_ms(at_most)
            raise BadValue(
                f"{value} ms is more than the maximum of {limit}",
                f"write at most {at_most} (or {limit!r})",
            )
        if zero_means_default and value == 0:
            return ms
        return max(value, at_least)

    kind = Duration(nanos_if_large=True) if nanos_if_large else DURATION
    return _key(ms, Key(kind, clean=clean))


def written_ms(ms: int) -> str:
    """A whole number of milliseconds as a duration string: ``"5m"``, ``"1h"``, ``"250ms"``."""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def choice(default: str, *others: str) -> str:
    """One of a few words; the first is the default: ``choice("restart", "ignore")``."""
    return _key(default, Key(TEXT, choices=(default, *others)))


def colour(default: str, *, unused: str | None = None) -> str:
    """A colour name (any case): red, green, yellow, blue, magenta, cyan, white, or raw."""
    return _key(default, Key(TEXT, clean=_colour_name, unused=unused))


def _colour_name(value: str) -> str:
    name = value.strip().lower()
    if name not in COLOR_NAMES:
        guess = suggest(name, [c for c in COLOR_NAMES if c])
        names = ", ".join(c for c in COLOR_NAMES if c)
        hint = f"did you mean {guess!r}?" if guess else f"use one of {names}"
        raise BadValue(f"unknown colour {value!r}", hint)
    return name


def app_url() -> str:
    """The URL that says the app is up: ``http(s)://...``, or a ``/path`` on the app."""
    return _key("", Key(TEXT, clean=_ready_url))


def _ready_url(value: str) -> str:
    if value and not value.startswith(READY_URL_PREFIXES):
        raise BadValue(
            f"ready_url must be an http(s):// URL or a /path on the app, got {value!r}",
            'e.g. ready_url = "/healthz" or "http://127.0.0.1:8000/healthz"',
        )
    return value


def strings(default: tuple[str, ...] = (), *, per_os: bool = False) -> tuple[str, ...]:
    """A list of strings; a flag gives them comma-separated."""
    return _key(default, Key(STRINGS, per_os=per_os))


def argv(*, per_os: bool = False) -> tuple[str, ...]:
    """A command as arguments: ``["./bin/app", "--flag"]``, or ``"python app.py"`` split."""
    return _key((), Key(ARGV, per_os=per_os))


def extensions(default: tuple[str, ...], *, lower: bool = False) -> tuple[str, ...]:
    """File extensions, written ``"py"`` or ``".py"``; blanks are dropped."""

    def clean(value: tuple[str, ...]) -> tuple[str, ...]:
        exts = (v.strip().lstrip(".") for v in value)
        return tuple(e.lower() if lower else e for e in exts if e)

    return _key(default, Key(STRINGS, clean=clean))


def paths(default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Root-relative paths, normalised: ``"./tmp/"`` is ``"tmp"``; blanks are dropped."""
    return _key(default, Key(STRINGS, clean=_normalised_paths))


def _normalised_paths(value: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(os.path.normpath(v.strip()) for v in value if v.strip())


def host_names() -> tuple[str, ...]:
    """Host names the proxy answers besides loopback: ``"dev.test"``, ``".dev.test"`` (that
    domain and every subdomain), ``"*"`` (any: no protection from DNS rebinding)."""
    return _key((), Key(STRINGS, clean=_host_names))


_HOST_NAME = re.compile(r"\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
_HOSTS_HINT = 'write names only, e.g. allowed_hosts = ["dev.test", ".dev.test"]'


def _host_names(value: tuple[str, ...]) -> tuple[str, ...]:
    names: list[str] = []
    for raw in value:
        name = raw.strip().lower()
        if not name:
            continue
        if len(name) > 1:
            name = name.removesuffix(".")  # "dev.test." is the same name
        if name == "*" or _HOST_NAME.fullmatch(name):
            names.append(name)
            continue
        bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
        try:
            names.append(str(ipaddress.ip_address(bare)))
            continue
        except ValueError:
            pass
        if "://" in name:
            raise BadValue(f"{raw!r} is a URL, not a host name", _HOSTS_HINT)
        if name.startswith("*."):
            raise BadValue(
                f"{raw!r}: a domain and its subdomains are written {name[1:]!r}", _HOSTS_HINT
            )
        if re.fullmatch(r"[^:]+:\d+", name):
            raise BadValue(f"{raw!r}: a host name without its port", _HOSTS_HINT)
        raise BadValue(f"{raw!r} is not a host name", _HOSTS_HINT)
    return tuple(dict.fromkeys(names))


def preload(default: str | tuple[str, ...]) -> str | tuple[str, ...]:
    """``"auto"``, ``false`` or a list of module names (see supervisor/zygote.py)."""
    return _key(default, Key(PRELOAD))


def environment() -> dict[str, str]:
    """A table of environment variables: ``env = { DEBUG = "1" }`` (names checked)."""
    return field(default_factory=dict, metadata={_KEY: Key(ENVIRONMENT)})


def tables(row: type[T]) -> tuple[T, ...]:
    """An array of tables (``[[build.rules]]``), each entry read into a ``row`` dataclass
    whose fields are declared with these helpers; its ``finish(index, values)`` classmethod
    completes and checks one entry (raising :class:`RowProblem`). Never a flag."""
    return _key((), Key(TABLES, row=row))


class RowProblem(Exception):
    """An entry of an array of tables that cannot be used: at its key ``key`` (None: the
    entry itself), what is wrong and how to fix it."""

    def __init__(self, key: str | None, message: str, hint: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.hint = hint
