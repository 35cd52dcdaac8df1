"""Reading a parsed ``.air.toml`` table by table into checked values, errors at the key's line.

    reader = DocumentReader(path, text)
    reader.section("build", BuildConfig, {"delay": "2s"})   # {'delay': 2000}
    reader.section("build", BuildConfig, {"dealy": 5})
    # ConfigError: .air.toml:2:1: unknown key 'dealy' in [build]; did you mean 'delay'?

What each key accepts comes from the schema's field metadata (:class:`Key`); this module
knows where a key sits in the text and which keys came from a flag, and words the error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .environment import check_env_name
from .keys import Key, RowProblem
from .locator import KeyLines
from .schema import (
    OS_OVERRIDE_KEYS,
    OS_SECTIONS,
    UNUSED_KEYS,
    BuildConfig,
    known_keys,
    section_keys,
)
from .values import ENVIRONMENT, BadValue, suggest, type_name

_SYNTAX_HINTS = (
    ("cannot overwrite", "a key or table is defined twice; keep only one"),
    ("cannot declare", "merge the two into one table"),
    ("unterminated string", "close the string with the same quote it starts with"),
    ("unclosed '['", "close the list with ]"),
    ("unclosed '{'", "close the inline table with } on the same line"),
    ("illegal character '\\n'", 'a "string" ends on its line; use """ for multi-line text'),
    ("expected '=' after a key", 'write key = value; strings need quotes: key = "text"'),
    ("invalid value", 'strings need quotes ("..."), lists need [ ], booleans are true/false'),
    ("invalid initial character for a key", "keys are letters, digits, _ and -; quote others"),
)


def syntax_error(path: Path, exc: Exception, text: str = "") -> ConfigError:
    """tomllib's error as one line at its line and column, with a hint for the usual slips."""
    message = str(exc)
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
    line: int | None = None
    col: int | None = None
    if match:
        line, col = int(match.group(1)), int(match.group(2))
    what = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
    if "(at end of document)" in message:
        unclosed = KeyLines(text).unclosed
        if unclosed is not None:
            line, col, kind = unclosed
            what = "unterminated string" if kind == "string" else f"unclosed '{kind}'"
        else:  # the end of the last line that has anything on it
            lines = text.rstrip().split("\n")
            line, col = len(lines), len(lines[-1]) + 1
    # tomllib names tables as tuples: "Cannot declare ('a', 'b') twice" -> [a.b]
    what = re.sub(
        r"\(((?:'[^']*'(?:, )?)+),?\)",
        lambda m: "[" + ".".join(re.findall(r"'([^']*)'", m[1])) + "]",
        what,
    )
    what = " ".join(what.split()) or "invalid TOML"
    hint = next(
        (h for needle, h in _SYNTAX_HINTS if needle in what.lower()),
        "fix the TOML at that spot",
    )
    return ConfigError(
        f"TOML syntax error: {what[0].lower() + what[1:]}",
        path=path,
        line=line,
        col=col,
        hint=hint,
    )


def _short(name: str, limit: int = 60) -> str:
    """A name as an error line shows it: long ones cut (the line and column say where)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


class DocumentReader:
    """Validates one parsed document section by section; knows where each key came from."""

    def __init__(self, path: Path | None, text: str) -> None:
        self.path = path
        self.keys = KeyLines(text)
        self.unused: list[str] = []
        self.flags: set[str] = set()  # dotted keys set by a CLI override

    def error(self, where: str, message: str, hint: str) -> ConfigError:
        """An error located at the key ``where`` in the file (no location without a file)."""
        line, col = self.keys.find(where) if self.path else (None, None)
        return ConfigError(message, path=self.path, line=line, col=col, hint=hint)

    def problem(
        self, dotted: str, what: str, hint: str, *, where: str | None = None
    ) -> ConfigError:
        """``--dotted: what`` when the value came from a flag, else ``file:line: dotted: what``."""
        if dotted in self.flags:
            return ConfigError(f"--{dotted}: {what}", hint=hint)
        return self.error(where or dotted, f"{dotted}: {what}", hint)

    def unknown(
        self, dotted: str, candidates: Iterable[str], where: str, *, table: bool = False
    ) -> ConfigError:
        """An unknown key or table, with where it belongs or the closest known name."""
        leaf = dotted.rpartition(".")[2]
        candidates = list(candidates)
        known = known_keys()
        elsewhere = [k for k in known if k.rpartition(".")[2] == leaf and k != dotted]
        guess = suggest(leaf, candidates)
        if elsewhere:
            home = elsewhere[0].rpartition(".")[0]
            hint = f"'{leaf}' belongs in [{home}]" if home else f"'{leaf}' is a top-level key"
            if not home:
                hint += " (put it above the first [table])"
        elif guess:
            hint = f"did you mean '{guess}'?"
        else:
            far = suggest(leaf, [k.rpartition(".")[2] for k in known if "." in k])
            home = next((k.rpartition(".")[0] for k in known if k.endswith(f".{far}")), "")
            if far and home:
                hint = f"did you mean '{far}' in [{home}]?"
            else:
                hint = "remove it (see the config reference in the README)"
        what = (
            f"unknown table [{_short(dotted)}]"
            if table
            else f"unknown key '{_short(leaf)}' {where}"
        )
        return self.error(dotted, what, hint)

    def section(self, name: str, cls: type[Any], table: object) -> dict[str, Any]:
        """The values of the table ``[name]`` for the section dataclass ``cls``."""
        if not isinstance(table, dict):
            raise self.error(name, f"'{name}' must be a table", f"write it as [{name}]")
        keys = section_keys(cls)
        values: dict[str, Any] = {}
        for key, value in table.items():
            dotted = f"{name}.{key}"
            if dotted in UNUSED_KEYS:
                self.unused.append(dotted)
                continue
            if name == "build" and key in OS_SECTIONS:
                self.os_block(key, value)
                continue  # applied by load_config, for this OS only
            if key not in keys:
                raise self.unknown(dotted, keys, f"in [{name}]")
            values[key] = self.value(dotted, keys[key], value)
        return values

    def os_block(self, os_name: str, block: object) -> dict[str, Any]:
        """Validate a ``[build.<os>]`` block (every OS's, not only this one's)."""
        name = f"build.{os_name}"
        if not isinstance(block, dict):
            raise self.error(name, f"'{name}' must be a table", f"write it as [{name}]")
        keys = section_keys(BuildConfig)
        values: dict[str, Any] = {}
        for key, value in block.items():
            if key not in OS_OVERRIDE_KEYS:
                if key in keys:
                    raise self.error(
                        f"{name}.{key}",
                        f"'{key}' cannot be set per OS in [{name}]",
                        f"only {', '.join(OS_OVERRIDE_KEYS)} can; set {key} in [build]",
                    )
                raise self.unknown(f"{name}.{key}", OS_OVERRIDE_KEYS, f"in [{name}]")
            values[key] = self.value(f"build.{key}", keys[key], value, where=f"{name}.{key}")
        return values

    def value(self, dotted: str, key: Key, value: object, *, where: str | None = None) -> object:
        """One key's value from the file, or an error at ``where`` (default: the key)."""
        if key.kind is ENVIRONMENT:
            return self.env_table(value, where or dotted)
        try:
            result = key.read(value, from_flag=False)
        except BadValue as exc:
            hint = exc.hint or key.file_hint(dotted.rpartition(".")[2], value)
            if key.row is not None:
                hint = f"write each entry as a [[{dotted}]] table"
            raise self.error(where or dotted, f"{dotted}: {exc}", hint) from None
        if key.row is not None:
            assert isinstance(result, list)
            return self.rows(dotted, key.row, result)
        return result

    def rows(self, dotted: str, row: type[Any], entries: list[dict[str, Any]]) -> tuple[Any, ...]:
        """An array of tables: each entry's keys checked and read, then ``row.finish``."""
        keys = section_keys(row)
        done: list[Any] = []
        for index, entry in enumerate(entries):
            at = f"{dotted}[{index}]"
            values: dict[str, Any] = {}
            for name, item in entry.items():
                if name not in keys:
                    raise self.unknown(f"{at}.{name}", keys, f"in [[{dotted}]]")
                values[name] = self.value(f"{at}.{name}", keys[name], item)
            try:
                done.append(row.finish(index, values))
            except RowProblem as problem:
                where = f"{at}.{problem.key}" if problem.key else at
                raise self.error(where, f"{at}: {problem.message}", problem.hint) from None
        unique = getattr(row, "UNIQUE_KEY", None)  # a key no two entries may share
        if unique is not None:
            seen = [getattr(item, unique) for item in done]
            for index, taken in enumerate(seen):
                if seen.index(taken) != index:
                    raise self.error(
                        f"{dotted}[{index}].{unique}",
                        f"{dotted}[{index}]: {unique} {taken!r} is taken by an earlier entry",
                        f"give each entry its own {unique}",
                    )
        return tuple(done)

    def env_table(self, value: object, where: str = "env") -> dict[str, str]:
        """``[env]`` (or a process's ``env``): names to strings (numbers and booleans are
        written out)."""
        if not isinstance(value, dict):
            leaf = where.rpartition(".")[2]
            how = (
                '[env] with NAME = "value"' if where == "env" else f'{leaf} = {{ NAME = "value" }}'
            )
            raise self.error(where, f"'{where}' must be a table", f"write it as {how}")
        env: dict[str, str] = {}
        for name, item in value.items():
            at = f"{where}.{name}"
            bad_name = check_env_name(name)
            if bad_name:
                raise self.error(at, f"{where}: {bad_name}", "use letters, digits and _")
            if isinstance(item, bool):
                env[name] = "true" if item else "false"
            elif isinstance(item, int | float | str):
                env[name] = str(item)
            else:
                raise self.error(
                    at, f"{at}: expected a string, got {type_name(item)}", f'write {name} = "value"'
                )
            if "\0" in env[name]:
                raise self.error(at, f"{at}: a value cannot contain NUL", "remove the \\u0000")
        return env
