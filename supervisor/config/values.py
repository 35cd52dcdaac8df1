"""Reading values: Go-style durations, booleans and lists from TOML or from flags.

    parse_duration_ms("1m30s")                       # 90000
    parse_bool("yes", from_flag=True)                # True (a file needs a real boolean)
    parse_str_list(" a , b ", from_flag=True)        # ('a', 'b')

A value that cannot be used raises :class:`BadValue`, optionally with the hint that fixes it.
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from collections.abc import Iterable
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
    if bare and nanos_if_large and ms >= _NANOS_THRESHOLD:
        ms = ms / _NANOS_THRESHOLD
    return math.floor(ms)


def type_name(value: object) -> str:
    if isinstance(value, list) and value:
        inner = next((v for v in value if not isinstance(v, str)), None)
        if inner is not None:
            return f"a list containing {type_name(inner)}"
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


_TRUE = ("true", "1", "yes", "on", "t")
_FALSE = ("false", "0", "no", "off", "f")


def parse_bool(value: object, *, from_flag: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_flag and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise BadValue(f"expected true or false, got {type_name(value)} {value!r}")


def parse_str_list(value: object, *, from_flag: bool) -> tuple[str, ...]:
    if from_flag and isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BadValue(f"expected a list of strings, got {type_name(value)}")


def parse_entrypoint(value: object, *, from_flag: bool) -> tuple[str, ...]:
    """air: a string or an array. pyair also splits a string shell-style: "python app.py"."""
    if isinstance(value, str) and not (from_flag and "," in value):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise BadValue(f"cannot split {value!r} into arguments ({exc})") from None
    return parse_str_list(value, from_flag=from_flag)


PRELOAD_HINT = 'write preload = "auto", preload = false or preload = ["flask", "jinja2"]'


def parse_preload(value: object, *, from_flag: bool) -> str | tuple[str, ...]:
    """``"auto"``, ``false`` (→ ``()``), ``true`` (→ ``"auto"``) or a list of module names."""
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
    names = parse_str_list(value, from_flag=from_flag)
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise BadValue(f"{name!r} is not a module name", PRELOAD_HINT)
    return names


def suggest(name: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
