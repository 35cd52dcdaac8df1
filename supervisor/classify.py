"""Decide what a batch of file changes means: restart, swap templates, refresh assets, or nothing.

A pure function of (batch, config), so it is tested without a file system:

    plan = classify({(Change.modified, "/app/templates/page.html")}, config)
    plan.action      # "swap"
    plan.templates   # ("/app/templates/page.html",)

The filter order is air's: a file one of ``[[build.rules]]`` matches (the first that does) goes
to that rule and nowhere else, so it never restarts or swaps anything. Every other file also
restarts the ``[[process]]`` entries whose own include_* patterns match it, and counts for the
app when the app's own filter (``counts``, air's include/exclude keys) accepts it. A batch that
holds any source change restarts: a restart reloads templates and assets too.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal, Protocol

from .config import Config


class Change(enum.IntEnum):
    """The kind of a file event (the same values as watchfiles')."""

    added = 1
    modified = 2
    deleted = 3


FileChange = tuple[Change, str]
Action = Literal["restart", "swap", "assets", "ignore"]

# Files that are served as they are when they sit under a static directory.
ASSET_EXTS = frozenset(
    {
        *("css", "js", "mjs", "map", "json", "webmanifest", "wasm"),
        *("png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico"),
        *("woff", "woff2", "ttf", "otf", "eot"),
        *("html", "htm", "txt", "xml", "mp4", "webm", "mp3", "pdf"),
    }
)
STATIC_DIR_NAMES = frozenset({"static", "public", "assets", "dist"})


@dataclass(frozen=True)
class Plan:
    """What to do about one debounced batch.

    ``action`` is the app's; ``rules`` maps the index of each ``[[build.rules]]`` entry that
    matched to its paths; ``processes`` names the ``[[process]]`` entries whose own files
    changed.
    """

    action: Action
    sources: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    assets: tuple[str, ...] = ()
    rules: tuple[tuple[int, tuple[str, ...]], ...] = ()
    processes: tuple[str, ...] = ()

    @property
    def paths(self) -> tuple[str, ...]:
        return (*self.sources, *self.templates, *self.assets)

    @property
    def css_only(self) -> bool:
        return bool(self.assets) and all(_ext(p) == "css" for p in self.assets)

    def describe(self, root: str | os.PathLike[str] | None = None) -> str:
        """``app.py, templates/page.html (+3 more)`` relative to ``root``; "" for no paths."""
        shown = [_relative(p, root) for p in self.paths[:3]]
        more = len(self.paths) - len(shown)
        return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")


def _ext(path: str) -> str:
    return PurePath(path).suffix.lstrip(".").lower()


def _relative(path: str, root: str | os.PathLike[str] | None) -> str:
    if root is None:
        return path
    prefix = os.fspath(root).rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def _under_any(path: str, root: str, dirs: Iterable[str]) -> bool:
    """Is ``path`` inside one of ``dirs`` (root-relative, or absolute)?"""
    rel = _relative(path, root)
    for entry in dirs:
        if os.path.isabs(entry):
            base, probe = entry.rstrip("/"), path
        else:
            base, probe = entry.strip("/"), rel
            if base in ("", "."):
                if not os.path.isabs(rel):  # the root itself: anything under root
                    return True
                continue
        if probe == base or probe.startswith(base + "/"):
            return True
    return False


def _in_static_dir(path: str, config: Config) -> bool:
    parts = PurePath(_relative(path, config.root)).parts[:-1]
    return any(part in STATIC_DIR_NAMES for part in parts)


def is_template(path: str, config: Config) -> bool:
    """A template by ``[templates]`` include_ext / include_dir / exclude_dir.

    Without an include_dir, an html file under a static directory (``static/index.html``)
    is served as it is, so it is an asset, not a template.
    """
    templates = config.templates
    root = str(config.root)
    if _ext(path) not in templates.include_ext:
        return False
    if templates.include_dir:
        if not _under_any(path, root, templates.include_dir):
            return False
    elif _ext(path) in ASSET_EXTS and _in_static_dir(path, config):
        return False
    return not _under_any(path, root, templates.exclude_dir)


def is_asset(path: str, config: Config) -> bool:
    """A stylesheet anywhere, or a static file (js, images, fonts, html) under a static dir."""
    ext = _ext(path)
    if ext == "css":
        return True
    return ext in ASSET_EXTS and _in_static_dir(path, config)


class FilePatterns(Protocol):
    """A rule's or a process's own files: air's include/exclude keys of ``[[build.rules]]``."""

    @property
    def include_dir(self) -> tuple[str, ...]: ...
    @property
    def include_ext(self) -> tuple[str, ...]: ...
    @property
    def include_file(self) -> tuple[str, ...]: ...
    @property
    def exclude_regex(self) -> tuple[str, ...]: ...


def matches(patterns: FilePatterns, path: str, root: str) -> bool:
    """Whether ``path`` (absolute) is one of ``patterns``' files, as air's rules match one.

    Under an include_dir when there is one; not matched by an exclude_regex (searched in the
    absolute path); then its extension in include_ext (``"*"``: any) or its root-relative
    path in include_file; with neither, every file of the include_dir.
    """
    if patterns.include_dir and not _under_any(path, root, patterns.include_dir):
        return False
    if any(re.search(pattern, path) for pattern in patterns.exclude_regex if pattern):
        return False
    if not patterns.include_ext and not patterns.include_file:
        return True
    ext = _ext_as_written(path)
    if any(e == "*" or e == ext for e in patterns.include_ext):
        return True
    rel = _relative(path, root)
    return any(os.path.normpath(f) == rel for f in patterns.include_file)


def _ext_as_written(path: str) -> str:
    name = path.rpartition("/")[2]
    return name.rpartition(".")[2] if "." in name else ""


def rule_for(path: str, config: Config) -> int | None:
    """The index of the first ``[[build.rules]]`` entry that matches ``path``, if any."""
    root = str(config.root)
    for index, rule in enumerate(config.build.rules):
        if matches(rule, path, root):
            return index
    return None


def classify(
    batch: Iterable[FileChange],
    config: Config,
    *,
    counts: Callable[[Change, str], bool] | None = None,
) -> Plan:
    """Turn a debounced batch into a :class:`Plan`.

    Rules first: a file a rule matches goes to that rule only. Then the processes whose own
    patterns match a file. For the app, only files ``counts`` accepts (None: all of them):
    any source change restarts (and the restart picks up the batch's templates and assets
    too); else templates swap (the batch's assets ride along); else assets refresh; else
    the app ignores the batch.
    """
    sources: set[str] = set()
    templates: set[str] = set()
    assets: set[str] = set()
    rules: dict[int, list[str]] = {}
    processes: set[str] = set()
    root = str(config.root)
    watchers = [p for p in config.process if p.has_patterns]
    for change, path in batch:
        rule = rule_for(path, config) if config.build.rules else None
        if rule is not None:
            rules.setdefault(rule, []).append(path)
            continue
        processes.update(p.name for p in watchers if matches(p, path, root))
        if counts is not None and not counts(change, path):
            continue
        if is_template(path, config):
            templates.add(path)
        elif is_asset(path, config):
            assets.add(path)
        else:
            sources.add(path)
    found = (tuple(sorted(sources)), tuple(sorted(templates)), tuple(sorted(assets)))
    action: Action = (
        "restart" if sources else "swap" if templates else "assets" if assets else "ignore"
    )
    return Plan(
        action,
        *found,
        rules=tuple((index, tuple(sorted(paths))) for index, paths in sorted(rules.items())),
        processes=tuple(p.name for p in watchers if p.name in processes),
    )
