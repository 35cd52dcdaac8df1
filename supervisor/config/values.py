"""Reading values from TOML (typed) or from flags (strings): durations, booleans, lists.

    parse_duration_ms("1m30s")                 # 90000
    DURATION.read("2s", from_flag=False)       # 2000
    BOOLEAN.read("yes", from_flag=True)        # True; in the file it must be a real boolean
    STRINGS.read(" a , b ", from_flag=True)    # ('a', 'b'): a flag's list is comma-separated

Each kind of value also says how it is written, so an error can show the fix:
``BOOLEAN.file_hint("rerun", "yes")`` is ``write rerun = true or rerun = false (no quotes)``.
A value that cannot be used raises :class:`BadValue`, optionally with a more specific hint.
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)[ \t]*(ns|us|µs|μs|ms|s|m|h)[ \t]*")
_UNIT_MS = {
    "ns": Fraction(1, 1_000_000),
    "us": Fraction(1, 1000),
    "µs": Fraction(1, 1000),  # U+00B5 micro sign
    "μs": Fraction(1, 1000),  # U+03BC greek mu; Go accepts both
    "ms": Fraction(1),
    "s": Fraction(1000),
    "m": Fraction(60_000),
    "h": Fraction(3_600_000),
}
_NANOS_THRESHOLD = 1_000_000  # a millisecond's worth of nanoseconds
_ABSURD_MS = 10**24  # refused before any arithmetic: past every key's bound even as nanoseconds


def parse_duration_ms(value: object, *, nanos_if_large: bool = False) -> int:
    """Milliseconds from ``500``, ``"500ms"``, ``"2s"``, ``"1m30s"`` or ``"250"``.

    Strings use Go's ``time.ParseDuration`` units (ns, us/µs, ms, s, m, h); a bare number
    is milliseconds. Sub-millisecond remainders are dropped, as Go's ``Milliseconds()`` does.
    ``nanos_if_large`` is air's ``kill_delay`` rule: a bare number of a millisecond's worth of
    nanoseconds or more (>= 1_000_000) is nanoseconds, so ``500000000`` is 500 ms.
    Raises ValueError for anything else, for a negative value, and for inf/nan.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    bare = False
    if isinstance(value, int):
        ms, bare = Fraction(value), True
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be a finite number, got {value!r}")
        ms, bare = Fraction(value), True
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)", text):
            ms, bare = Fraction(text), True
        else:
            negative = text.startswith("-")
            body = text[1:] if text[:1] in "+-" else text
            pos, total = 0, Fraction(0)
            for match in _DURATION.finditer(body):
                if match.start() != pos:
                    break
                total += Fraction(match.group(1)) * _UNIT_MS[match.group(2)]
                pos = match.end()
            if pos != len(body) or not body:
                raise ValueError(f"cannot read {value!r} as a duration")
            ms = -total if negative else total
    else:
        raise ValueError(f"expected a duration, got {type_name(value)}")
    if ms < 0:
        raise ValueError(f"a duration cannot be negative ({value!r})")
    if ms > _ABSURD_MS:  # 1e308 is an exact integer of 309 digits: not worth printing
        raise ValueError(f"{str(value)[:40]!r} is far too long for a duration")
    if bare and nanos_if_large and ms >= _NANOS_THRESHOLD:
        ms = ms / _NANOS_THRESHOLD
    return math.floor(ms)


def type_name(value: object) -> str:
    """How an error names a TOML value: "an integer", "a list containing a table" (one level:
    a list of lists of lists is "a list containing a list")."""
    if isinstance(value, list) and value:
        inner = next((v for v in value if not isinstance(v, str)), None)
        if inner is not None:
            return f"a list containing {_plain_type_name(inner)}"
    return _plain_type_name(value)


def _plain_type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class BadValue(ValueError):
    """A value that cannot be used; optionally with a specific hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def without_nul(text: str) -> str:
    """``text``, or BadValue if it holds a NUL (no path, command or name can)."""
    if "\0" in text:
        raise BadValue(f"{text!r} contains a NUL character", "remove the \\u0000")
    return text


_TRUE = ("true", "1", "yes", "on", "t")
_FALSE = ("false", "0", "no", "off", "f")


class Kind(ABC):
    """One kind of value: how it is read from the file or from a flag, and how it is written.

    File values must have the right TOML type (``enabled = "yes"`` is an error); flag values
    are strings and are converted.
    """

    flag_example = "a value"  # completes "pass --build.cmd ..."

    @abstractmethod
    def read(self, value: object, *, from_flag: bool) -> object:
        """The Python value, or BadValue."""

    @abstractmethod
    def file_hint(self, leaf: str, value: object) -> str:
        """How to write a value of this kind for the key ``leaf`` (``value`` was refused)."""


@dataclass(frozen=True)
class Text(Kind):
    """A string, as it is."""

    def read(self, value: object, *, from_flag: bool) -> str:
        if not isinstance(value, str):
            raise BadValue(f"expected a string, got {type_name(value)} {value!r}")
        return without_nul(value)

    def file_hint(self, leaf: str, value: object) -> str:
        return f'write a quoted string, e.g. {leaf} = "..."'


@dataclass(frozen=True)
class Boolean(Kind):
    """``true``/``false``; a flag also takes yes/no, on/off, 1/0, t/f."""

    flag_example = "true or false"

    def read(self, value: object, *, from_flag: bool) -> bool:
        if isinstance(value, bool):
            return value
        if from_flag and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        raise BadValue(f"expected true or false, got {type_name(value)} {value!r}")

    def file_hint(self, leaf: str, value: object) -> str:
        return f"write {leaf} = true or {leaf} = false (no quotes)"


@dataclass(frozen=True)
class WholeNumber(Kind):
    """An integer (a float is refused, not rounded)."""

    flag_example = "a whole number, e.g. 8000"

    def read(self, value: object, *, from_flag: bool) -> int:
        if isinstance(value, str) and from_flag and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadValue(f"expected a whole number, got {type_name(value)} {value!r}")
        return value

    def file_hint(self, leaf: str, value: object) -> str:
        return f"write a whole number, e.g. {leaf} = 8000"


@dataclass(frozen=True)
class Duration(Kind):
    """Milliseconds, from an integer or a Go duration string; see :func:`parse_duration_ms`."""

    flag_example = "milliseconds or a duration, e.g. 500 or 2s"

    nanos_if_large: bool = False  # air's kill_delay rule

    def read(self, value: object, *, from_flag: bool) -> int:
        try:
            return parse_duration_ms(value, nanos_if_large=self.nanos_if_large)
        except ValueError as exc:
            raise BadValue(str(exc)) from None

    def file_hint(self, leaf: str, value: object) -> str:
        return f'write milliseconds or a duration, e.g. {leaf} = 500 or {leaf} = "2s"'


@dataclass(frozen=True)
class Strings(Kind):
    """A list of strings; a flag gives it comma-separated."""

    flag_example = "comma-separated values, e.g. a,b"

    def read(self, value: object, *, from_flag: bool) -> tuple[str, ...]:
        if from_flag and isinstance(value, str):
            return tuple(without_nul(p.strip()) for p in value.split(",") if p.strip())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(without_nul(v) for v in value)
        raise BadValue(f"expected a list of strings, got {type_name(value)}")

    def file_hint(self, leaf: str, value: object) -> str:
        if isinstance(value, str):
            return f"write a list: {leaf} = [{toml_str(value)}]"
        return f'write a list of strings, e.g. {leaf} = ["a", "b"]'


@dataclass(frozen=True)
class Argv(Strings):
    """A command's arguments: a list, or (pyair) a string split shell-style: "python app.py"."""

    def read(self, value: object, *, from_flag: bool) -> tuple[str, ...]:
        if isinstance(value, str) and not (from_flag and "," in value):
            try:
                return tuple(shlex.split(without_nul(value)))
            except ValueError as exc:
                raise BadValue(f"cannot split {value!r} into arguments ({exc})") from None
        return super().read(value, from_flag=from_flag)

    def file_hint(self, leaf: str, value: object) -> str:
        return f'write {leaf} = ["./bin/app", "--flag"] or {leaf} = "python app.py"'


PRELOAD_HINT = 'write preload = "auto", preload = false or preload = ["flask", "jinja2"]'


@dataclass(frozen=True)
class Preload(Kind):
    """``"auto"``, ``false`` (→ ``()``), ``true`` (→ ``"auto"``) or a list of module names."""

    def read(self, value: object, *, from_flag: bool) -> str | tuple[str, ...]:
        if isinstance(value, bool):
            return "auto" if value else ()
        if isinstance(value, str):
            word = value.strip().lower()
            if word == "auto":
                return "auto"
            if from_flag and word in _TRUE:
                return "auto"
            if from_flag and word in _FALSE:
                return ()
            if not from_flag:
                raise BadValue(
                    f'expected "auto", false or a list of modules, got {value!r}', PRELOAD_HINT
                )
        names = STRINGS.read(value, from_flag=from_flag)
        for name in names:
            if not all(part.isidentifier() for part in name.split(".")):
                raise BadValue(f"{name!r} is not a module name", PRELOAD_HINT)
        return names

    def file_hint(self, leaf: str, value: object) -> str:
        return PRELOAD_HINT


@dataclass(frozen=True)
class Tables(Kind):
    """An array of tables, ``[[build.rules]]``: a list of tables (the reader reads each one)."""

    def read(self, value: object, *, from_flag: bool) -> list[dict[str, object]]:
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return value
        raise BadValue(f"expected an array of tables, got {type_name(value)}")

    def file_hint(self, leaf: str, value: object) -> str:
        return f"write each entry as a [[{leaf}]] table"


@dataclass(frozen=True)
class Environment(Kind):
    """A table of environment variables (the reader checks the names and the values)."""

    def read(self, value: object, *, from_flag: bool) -> dict[str, object]:
        if isinstance(value, dict):
            return value
        raise BadValue(f"expected a table, got {type_name(value)}")

    def file_hint(self, leaf: str, value: object) -> str:
        return f'write {leaf} = {{ NAME = "value" }}'


TEXT = Text()
BOOLEAN = Boolean()
WHOLE_NUMBER = WholeNumber()
DURATION = Duration()
STRINGS = Strings()
ARGV = Argv()
PRELOAD = Preload()
TABLES = Tables()
ENVIRONMENT = Environment()


def suggest(name: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``name``, for a did-you-mean; None if none is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def toml_str(value: str) -> str:
    """``value`` as a TOML basic string, for a hint that shows the fix."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
