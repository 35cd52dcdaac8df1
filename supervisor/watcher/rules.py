"""air's watch rules for one config, on plain path strings: no file system access.

    rules = Rules(config)
    rules.dir_state("src/gen")            # (watch it, walk into it), given its parent was walked
    rules.accept(Change.modified, "/app/templates/page.html")   # True

Both backends ask the same questions: which directories are watched (an excluded tree is never
walked, so it costs no watch and no scan), which file changes count, and which basenames are
editors' scratch files.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Callable, Iterable

from ..classify import Change
from ..config import ALWAYS_EXCLUDED_DIRS, Config

# Editors' scratch files, matched on the basename: backups (x~), emacs locks and autosaves
# (.#x, #x#), vim swap files (.x.swp ... .x.swa, .swx), *.tmp, JetBrains safe-write files
# (x.___jb_tmp___), macOS' .DS_Store, bytecode, flycheck, kate and Chrome scratch files.
_JUNK = re.compile(
    r"~$|^\.#|^#.*#$|\.sw[a-px]$|\.tmp$|\.___jb_\w+___$|^\.DS_Store$|\.py[co]$"
    r"|^flycheck_|\.kate-swp$|\.crswap$"
)
_VIM_PROBE_FIRST, _VIM_PROBE_STEP = 4913, 123  # vim tries 4913, 5036, 5159, ... until free


def is_editor_junk(name: str) -> bool:
    """Whether a basename is an editor's scratch file (always ignored)."""
    if name.isdigit():
        number = int(name)
        return number >= _VIM_PROBE_FIRST and (number - _VIM_PROBE_FIRST) % _VIM_PROBE_STEP == 0
    return _JUNK.search(name) is not None


def _ext(name: str) -> str:
    """Go's filepath.Ext without the dot: ``.env`` -> ``env``, ``Makefile`` -> ``""``."""
    return name.rpartition(".")[2] if "." in name else ""


class Rules:
    """air's watch rules: include_ext, include_file, include_dir, exclude_dir/file/regex."""

    def __init__(self, config: Config) -> None:
        build = config.build
        self.root = os.path.normpath(str(config.root))
        self._prefix = self.root if self.root.endswith("/") else self.root + "/"
        self.follow_symlinks = build.follow_symlink
        exts = {e.strip().lstrip(".") for e in build.include_ext if e.strip()}
        self.all_exts = "*" in exts
        self.exts = frozenset(exts)
        self.include_file = frozenset(self._rel_entries(build.include_file))
        self.include_dir = tuple(self._rel_entries(build.include_dir))
        self.exclude_dir = frozenset(self._rel_entries(build.exclude_dir))
        self.exclude_file = tuple(p.strip() for p in build.exclude_file if p.strip())
        self.exclude_regex = tuple(re.compile(p) for p in build.exclude_regex if p)
        self.skip_dirs = frozenset(
            self.rel(os.path.normpath(os.path.join(self.root, d)))
            for d in (config.tmp_dir, config.testdata_dir)
            if d.strip()
        )
        self.dir_state = functools.lru_cache(maxsize=8192)(self._dir_state)
        self.reachable = functools.lru_cache(maxsize=8192)(self._reachable)

    def _rel_entries(self, entries: Iterable[str]) -> list[str]:
        out = []
        for entry in entries:
            entry = entry.strip()
            if entry:
                out.append(self.rel(os.path.normpath(os.path.join(self.root, entry))))
        return out

    def rel(self, path: str) -> str:
        """Root-relative, ``/``-separated; ``.`` for the root, ``../x`` outside it."""
        if path.startswith(self._prefix):
            return path[len(self._prefix) :]
        if path == self.root:
            return "."
        return os.path.relpath(path, self.root)

    def abs(self, rel: str) -> str:
        return self.root if rel == "." else os.path.normpath(os.path.join(self.root, rel))

    def _dir_state(self, rel: str) -> tuple[bool, bool]:
        """(watch it, walk into it) for one directory, given that its parent was walked."""
        if rel == ".":
            return not self.include_dir or "." in self.include_dir, True
        outside = rel == ".." or rel.startswith("../")
        base = rel.rpartition("/")[2]
        if base != "..":
            if rel in self.skip_dirs or rel in self.exclude_dir:
                return False, False
            if base.startswith(".") or base in ALWAYS_EXCLUDED_DIRS:
                return False, False
        if self.include_dir:
            walk = False
            for inc in self.include_dir:
                if rel == inc or rel.startswith(inc + "/") or (inc == "." and not outside):
                    return True, True
                if inc.startswith(rel + "/"):
                    walk = True
            return False, walk
        return (False, False) if outside else (True, True)

    def _reachable(self, rel: str) -> bool:
        """The walk gets into this directory (it and all its ancestors are walked)."""
        if rel == ".":
            return True
        if not self.dir_state(rel)[1]:
            return False
        return self.reachable(rel.rpartition("/")[0] or ".")

    def dir_kept(self, rel: str) -> bool:
        """This directory is watched."""
        return self.dir_state(rel)[0] and self.reachable(rel)

    def accept(self, change: Change, path: str) -> bool:
        """Whether a change to the file ``path`` (absolute) counts."""
        rel = self.rel(path)
        if rel in self.include_file:  # air: watched even if the ext or the dir says no
            return not self._excluded(rel, path)
        parent, _, name = rel.rpartition("/")
        if not self.dir_kept(parent or "."):
            return False
        if is_editor_junk(name):
            return False
        if not self.all_exts and _ext(name) not in self.exts:
            return False
        return not self._excluded(rel, path)

    def _excluded(self, rel: str, path: str) -> bool:
        if any(fnmatch.fnmatchcase(rel, pattern) for pattern in self.exclude_file):
            return True
        return any(regex.search(path) for regex in self.exclude_regex)

    def walk_roots(self) -> list[str]:
        """Where walking starts: the root, plus include_dir entries outside it (air #820)."""
        roots = [self.root]
        for inc in self.include_dir:
            if inc == ".." or inc.startswith("../"):
                roots.append(self.abs(inc))
        return roots

    def include_file_paths(self) -> list[str]:
        """include_file entries as absolute paths (watched even inside an excluded tree)."""
        return [self.abs(rel) for rel in sorted(self.include_file)]


def build_filter(config: Config) -> Callable[[Change, str], bool]:
    """air's file rules as a predicate on (change, absolute path); pure, no file system access.

    include_ext (``"*"`` = all), include_file (root-relative, passes whatever its extension
    or directory), exclude_file (fnmatch globs on the root-relative path), exclude_regex
    (``re.search`` on the absolute path), include_dir / exclude_dir (root-relative, exact),
    hidden directories, tmp_dir, testdata_dir and ALWAYS_EXCLUDED_DIRS at any depth, and
    editors' scratch files.
    """
    return Rules(config).accept
