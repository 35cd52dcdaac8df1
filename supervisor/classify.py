"""Decide what a batch of file changes means: restart, swap templates, refresh assets, or nothing.

A pure function of (batch, config), so it is tested without a file system:

    plan = classify({(Change.modified, "/app/templates/page.html")}, config)
    plan.action      # "swap"
    plan.templates   # ("/app/templates/page.html",)

A batch that holds any source change restarts: a restart reloads templates and assets too.
"""

from __future__ import annotations

import enum
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

ASSET_EXTS = frozenset(
    {"css", "js", "mjs", "map", "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "woff", "woff2"}
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

    def describe(self, root: str | None = None) -> str:
        """``app.py, templates/page.html (+3 more)`` relative to ``root``."""
        shown = [_relative(p, root) for p in self.paths[:3]]
        more = len(self.paths) - len(shown)
        return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")


def _ext(path: str) -> str:
    return PurePath(path).suffix.lstrip(".").lower()


def _relative(path: str, root: str | None) -> str:
    if root and path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1 :]
    return path


def _under_any(path: str, root: str, dirs: Iterable[str]) -> bool:
    rel = _relative(path, root)
    return any(rel == d.strip("/") or rel.startswith(d.strip("/") + "/") for d in dirs)


def is_template(path: str, config: Config) -> bool:
    """A template by ``[templates]`` include_ext / include_dir / exclude_dir."""
    templates = config.templates
    root = str(config.root)
    if _ext(path) not in templates.include_ext:
        return False
    if templates.include_dir and not _under_any(path, root, templates.include_dir):
        return False
    return not _under_any(path, root, templates.exclude_dir)


def is_asset(path: str, config: Config) -> bool:
    """A stylesheet anywhere, or a static file (js, images, fonts) under a static directory."""
    ext = _ext(path)
    if ext == "css":
        return True
    if ext not in ASSET_EXTS:
        return False
    parts = PurePath(_relative(path, str(config.root))).parts[:-1]
    return any(part in STATIC_DIR_NAMES for part in parts)


def classify(batch: Iterable[FileChange], config: Config) -> Plan:
    """Turn a debounced batch into a :class:`Plan`."""
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
    if sources:
        return Plan("restart", tuple(sorted(sources)), tuple(sorted(templates)), tuple(sorted(assets)))
    if templates:
        return Plan("swap", (), tuple(sorted(templates)), tuple(sorted(assets)))
    if assets:
        return Plan("assets", (), (), tuple(sorted(assets)))
    return Plan("ignore")
