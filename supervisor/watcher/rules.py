"""air's watch rules for one config, on plain path strings: no file system access.

    rules = Rules(config)
    rules.dir_state("src/gen")            # (watch it, walk into it), given its parent was walked
    rules.accept(Change.modified, "/app/templates/page.html")   # True

Both backends ask the same questions: which directories are watched (an excluded tree is never
walked, so it costs no watch and no scan), which file changes count, and which basenames are
editors' scratch files.

The files of ``[[build.rules]]`` and of ``[[process]]`` entries with include_* patterns are
watched as well (``accept``), also where the app's own keys would not watch them: a rule's
include_dir is watched even when exclude_dir names it (as in air). ``accept_app`` is the app's
own filter, which the router uses so a rule's ``.scss`` never counts for the app.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Callable, Iterable

from ..classify import Change, FilePatterns, matches
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
        # the rules' and the processes' own files
        self.patterns: tuple[FilePatterns, ...] = (
            *build.rules,
            *(p for p in config.process if p.has_patterns),
        )
        self.pattern_dirs = tuple(
            dict.fromkeys(d for p in self.patterns for d in self._rel_entries(p.include_dir))
        )
        self.pattern_files = frozenset(
            f for p in self.patterns for f in self._rel_entries(p.include_file)
        )
        self.dir_state = functools.lru_cache(maxsize=8192)(self._dir_state)
        self.reachable = functools.lru_cache(maxsize=8192)(self._reachable)
        self.app_dir_state = functools.lru_cache(maxsize=8192)(self._app_dir_state)
        self.app_reachable = functools.lru_cache(maxsize=8192)(self._app_reachable)

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
        """(watch it, walk into it) for one directory, given that its parent was walked: the
        app's rules, plus the pattern dirs (and what is under them, hidden and always-excluded
        directories aside), plus walking towards them."""
        watch, walk = self.app_dir_state(rel)
        if rel == "." or (watch and walk):
            return watch, walk
        base = rel.rpartition("/")[2]
        for inc in self.pattern_dirs:
            if rel == inc:
                return True, True
            if rel.startswith(inc + "/"):
                skipped = base.startswith(".") or base in ALWAYS_EXCLUDED_DIRS
                return (False, False) if skipped else (True, True)
            if inc.startswith(rel + "/"):
                walk = True
        return watch, walk

    def _app_dir_state(self, rel: str) -> tuple[bool, bool]:
        """(watch it, walk into it) by the app's own keys alone."""
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

    def _app_reachable(self, rel: str) -> bool:
        if rel == ".":
            return True
        if not self.app_dir_state(rel)[1]:
            return False
        return self.app_reachable(rel.rpartition("/")[0] or ".")

    def dir_kept(self, rel: str) -> bool:
        """This directory is watched."""
        return self.dir_state(rel)[0] and self.reachable(rel)

    def accept(self, change: Change, path: str) -> bool:
        """Whether a change to the file ``path`` (absolute) is watched: the app's, a rule's
        or a process's."""
        if self.accept_app(change, path):
            return True
        if not self.patterns:
            return False
        rel = self.rel(path)
        parent, _, name = rel.rpartition("/")
        if rel not in self.pattern_files and not self.dir_kept(parent or "."):
            return False
        if is_editor_junk(name):
            return False
        return any(matches(p, path, self.root) for p in self.patterns)

    def accept_app(self, change: Change, path: str) -> bool:
        """Whether a change to the file ``path`` (absolute) counts for the app (air's keys)."""
        rel = self.rel(path)
        if rel in self.include_file:  # air: watched even if the ext or the dir says no
            return not self._excluded(rel, path)
        parent, _, name = rel.rpartition("/")
        parent = parent or "."
        if not (self.app_dir_state(parent)[0] and self.app_reachable(parent)):
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
        """include_file entries (the app's, the rules' and the processes') as absolute paths
        (watched even inside an excluded tree)."""
        return [self.abs(rel) for rel in sorted(self.include_file | self.pattern_files)]


def build_filter(config: Config) -> Callable[[Change, str], bool]:
    """air's file rules as a predicate on (change, absolute path); pure, no file system access.

    include_ext (``"*"`` = all), include_file (root-relative, passes whatever its extension
    or directory), exclude_file (fnmatch globs on the root-relative path), exclude_regex
    (``re.search`` on the absolute path), include_dir / exclude_dir (root-relative, exact),
    hidden directories, tmp_dir, testdata_dir and ALWAYS_EXCLUDED_DIRS at any depth, and
    editors' scratch files.
    """
    return Rules(config).accept


def app_filter(config: Config) -> Callable[[Change, str], bool]:
    """The app's own part of :func:`build_filter`: what a rule's or a process's files are
    not (classify's ``counts``)."""
    return Rules(config).accept_app
