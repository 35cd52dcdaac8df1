"""Decide what a batch of file changes means: restart, swap templates, refresh assets, or nothing.

A pure function of (batch, config), so it is tested without a file system:

    plan = classify({(Change.modified, "/app/templates/page.html")}, config)
    plan.action      # "swap"
    plan.templates   # ("/app/templates/page.html",)

A batch that holds any source change restarts: a restart reloads templates and assets too.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

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
    """What to do about one debounced batch."""

    action: Action
    sources: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    assets: tuple[str, ...] = ()

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


def classify(batch: Iterable[FileChange], config: Config) -> Plan:
    """Turn a debounced batch into a :class:`Plan`.

    Any source change restarts (and the restart picks up the batch's templates and assets
    too); else templates swap (the batch's assets ride along); else assets refresh; an
    empty batch is ignored.
    """
    sources: set[str] = set()
    templates: set[str] = set()
    assets: set[str] = set()
    for _change, path in batch:
        if is_template(path, config):
            templates.add(path)
        elif is_asset(path, config):
            assets.add(path)
        else:
            sources.add(path)
    found = (tuple(sorted(sources)), tuple(sorted(templates)), tuple(sorted(assets)))
    if sources:
        return Plan("restart", *found)
    if templates:
        return Plan("swap", *found)
    if assets:
        return Plan("assets", *found)
    return Plan("ignore")
