r"""Where each key of a TOML text is: ``KeyLines(text).find("build.delay") -> (line, col)``.

    lines = KeyLines('[build]\ndealy = 5\n')
    lines.find("build.dealy")     # (2, 1): an unknown key is reported at its own line
    lines.find("build.nothing")   # (1, 2): else at its closest recorded parent
    KeyLines('[[build.rules]]\n[[build.rules]]\ncmd = 1\n').find("build.rules[1].cmd")  # (3, 1)
    lines.unclosed                # None, or where a never-closed string or bracket opens
    lines.too_deep                # None, or where arrays/inline tables nest past MAX_NESTING

``tomllib`` gives no positions for a document it parsed, so semantic errors (an unknown key, a
wrong type) need this scanner to say ``file:line:col``. Each ``[[array.of.tables]]`` entry is
also recorded by its 0-based index (``build.rules[1]``), with the keys under it.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

MAX_NESTING = 64  # arrays and inline tables in one another: tomllib recurses (~500 ends it)
_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class KeyLines:
    """Maps dotted key paths of a TOML text to (line, column), both 1-based.

    A scanner, not a parser: it never reads values, it only tracks where each key, table
    header and inline-table key starts. It follows strings (including multi-line ones that
    span lines inside arrays), comments, arrays and inline tables, so text inside a string
    is never mistaken for a key or a ``[table]`` header. It never raises, whatever the text.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[str, tuple[int, int]] = {}
        # (line, col, what) of the first string or bracket that never closes: a syntax error
        # "at end of document" really starts there
        self.unclosed: tuple[int, int, str] | None = None
        self.too_deep: tuple[int, int] | None = None  # (line, col) of the first too deep
        self._text = text
        self._i = 0
        self._line = 1
        self._line_start = 0
        self._starts: list[int] = []
        with contextlib.suppress(IndexError):  # malformed text: keep what was found
            self._scan()

    def find(self, dotted: str) -> tuple[int | None, int | None]:
        """The position of ``dotted``, else of its closest recorded parent, else (None, None)."""
        probe = dotted
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe.rpartition(".")[0]
        return None, None

    # -- scanning -------------------------------------------------------------------------

    def _record(self, path: list[str], pos: int) -> None:
        if path:
            self.lines.setdefault(".".join(path), (self._line, pos - self._line_start + 1))

    def _record_key(self, prefix: list[str], key: list[str]) -> None:
        for n, start in enumerate(self._starts[: len(key)], start=1):
            self._record([*prefix, *key[:n]], start)

    def _pos(self, at: int) -> tuple[int, int]:
        return self._line, at - self._line_start + 1

    def _mark_unclosed(self, line: int, col: int, what: str) -> None:
        if self.unclosed is None:
            self.unclosed = (line, col, what)

    def _newline(self, at: int) -> None:
        self._line += 1
        self._line_start = at + 1

    def _skip_blanks(self) -> None:
        text = self._text
        while self._i < len(text) and text[self._i] in " \t\r":
            self._i += 1

    def _skip_comment(self) -> None:
        end = self._text.find("\n", self._i)
        self._i = len(self._text) if end < 0 else end

    def _skip_string(self) -> None:
        text, i = self._text, self._i
        quote = text[i]
        opened = self._pos(i)
        if text.startswith(quote * 3, i):
            i += 3
            while i < len(text):
                char = text[i]
                if char == "\\" and quote == '"':
                    if i + 1 < len(text) and text[i + 1] == "\n":
                        self._newline(i + 1)
                    i += 2
                    continue
                if char == "\n":
                    self._newline(i)
                elif text.startswith(quote * 3, i):
                    i += 3
                    extra = 0  # up to two quotes may end the content: """a""""
                    while extra < 2 and i < len(text) and text[i] == quote:
                        i += 1
                        extra += 1
                    self._i = i
                    return
                i += 1
            self._i = i
            self._mark_unclosed(*opened, "string")
            return
        i += 1
        while i < len(text) and text[i] != "\n":
            if text[i] == "\\" and quote == '"':
                i += 2
                continue
            if text[i] == quote:
                self._i = i + 1
                return
            i += 1
        self._i = i
        self._mark_unclosed(*opened, "string")

    def _read_key(self) -> list[str]:
        """A (dotted) key at the cursor; leaves the cursor after it.

        Each part's start is kept in ``self._starts`` so a dotted key can be located by its
        last part (``build.dealy = 5`` points at ``dealy``).
        """
        text = self._text
        parts: list[str] = []
        self._starts = []
        while self._i < len(text):
            self._skip_blanks()
            if self._i >= len(text):
                break
            char = text[self._i]
            self._starts.append(self._i)
            if char in "\"'":
                start = self._i
                self._skip_string()
                raw = text[start + 1 : self._i - 1]
                parts.append(_unescape_key(raw) if char == '"' else raw)
            elif char in _BARE_KEY_CHARS:
                start = self._i
                while self._i < len(text) and text[self._i] in _BARE_KEY_CHARS:
                    self._i += 1
                parts.append(text[start : self._i])
            else:
                self._starts.pop()
                break
            self._skip_blanks()
            if self._i < len(text) and text[self._i] == ".":
                self._i += 1
                continue
            break
        return parts

    def _scan(self) -> None:
        text = self._text
        table: list[str] = []
        indexed: list[str] = []  # the table's path with an [[array]] entry's index, or []
        entries: dict[str, int] = {}  # [[array]] path -> entries seen so far
        # open arrays ("[") and inline tables ("{"), each with the key path it belongs to
        stack: list[tuple[str, list[str], tuple[int, int]]] = []
        current: list[str] = []  # the key path of the value being read
        expect_key = False  # right after "{" or "," inside an inline table
        line_begin = True  # at the start of a top-level statement
        while self._i < len(text):
            char = text[self._i]
            if char == "\n":
                self._newline(self._i)
                self._i += 1
                if not stack:
                    line_begin = True
                continue
            if char in " \t\r":
                self._i += 1
                continue
            if char == "#":
                self._skip_comment()
                continue
            if not stack and line_begin:
                line_begin = False
                if char == "[":
                    array = text.startswith("[[", self._i)
                    self._i += 2 if array else 1
                    self._skip_blanks()
                    start = self._i
                    table = self._read_key()
                    for n in range(1, len(table) + 1):
                        self._record(table[:n], start)
                    if array and table:
                        dotted = ".".join(table)
                        entries[dotted] = entries.get(dotted, -1) + 1
                    indexed = _indexed(table, entries)
                    if indexed:
                        self._record(indexed, start)
                    self._skip_comment()  # the rest of a header line: "]", "]]", a comment
                    continue
                key = self._read_key()
                if not key:
                    self._skip_comment()
                    continue
                current = [*table, *key]
                self._record_key(table, key)
                if indexed:
                    self._record_key(indexed, key)
                self._skip_blanks()
                if self._i < len(text) and text[self._i] == "=":
                    self._i += 1
                continue
            if expect_key:
                expect_key = False
                if char == "}":
                    stack.pop()
                    self._i += 1
                    current = stack[-1][1] if stack else current
                    continue
                key = self._read_key()
                if key:
                    current = [*stack[-1][1], *key]
                    self._record_key(stack[-1][1], key)
                    self._skip_blanks()
                    if self._i < len(text) and text[self._i] == "=":
                        self._i += 1
                    continue
            if char in "\"'":
                self._skip_string()
            elif char in "[{":
                stack.append((char, current, self._pos(self._i)))
                if len(stack) > MAX_NESTING and self.too_deep is None:
                    self.too_deep = self._pos(self._i)
                expect_key = char == "{"
                self._i += 1
            elif char in "]}":
                if stack:
                    stack.pop()
                current = stack[-1][1] if stack else current
                self._i += 1
            elif char == ",":
                if stack:
                    current = stack[-1][1]
                    expect_key = stack[-1][0] == "{"
                self._i += 1
            else:
                self._i += 1
        if stack:
            self._mark_unclosed(*stack[0][2], stack[0][0])


def _indexed(table: list[str], entries: dict[str, int]) -> list[str]:
    """``table`` with its innermost ``[[array]]`` part indexed by the current entry
    (``[process.env]`` after the second ``[[process]]`` is ``process[1].env``); [] if none."""
    for n in range(len(table), 0, -1):
        index = entries.get(".".join(table[:n]))
        if index is not None:
            return [*table[: n - 1], f"{table[n - 1]}[{index}]", *table[n:]]
    return []


def _unescape_key(raw: str) -> str:
    try:
        loaded: dict[str, Any] = tomllib.loads(f'"{raw}" = 0')
    except tomllib.TOMLDecodeError:
        return raw
    return next(iter(loaded), raw)
