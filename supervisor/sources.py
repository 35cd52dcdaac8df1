"""The project's files, and the last good text of its templates.

    for path in project_files(config): ...         # under root, templates/ dirs first
    last_good = LastGood(config)
    last_good.remember_all()                        # at start (blocking: run it in a thread)
    fallbacks, now = last_good.for_swap(paths)      # what to send with a swap; what it holds now
    last_good.compiled(now)                         # after the app swapped them all

Why pyair keeps them: when a saved template does not compile, the running app must keep the
old one. The agent keeps what it has loaded, but a template the app has not rendered yet would
be read from disk, broken, on its first request; its last good text is known only here, from
before the edit. So pyair reads the project's templates once when it starts, keeps each file's
text while the app swaps it, and sends the last good text with every swap. Bounded: files over
``MAX_FILE`` bytes are not kept, nor more than ``MAX_TOTAL`` bytes in all, and a swap carries at
most ``MAX_SENT`` bytes of them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .classify import is_template
from .config import ALWAYS_EXCLUDED_DIRS, Config

__all__ = ["MAX_FILE", "WALK_LIMIT", "LastGood", "project_files"]

WALK_LIMIT = 20_000  # files looked at in one walk of the project
MAX_FILE = 256 * 1024
MAX_TOTAL = 16 * 1024 * 1024
MAX_SENT = 512 * 1024  # well inside the control socket's frame


def project_files(config: Config, limit: int = WALK_LIMIT) -> Iterator[Path]:
    """Files under root, ``templates/`` directories first, skipping what is never watched
    (hidden and always-excluded directories, ``exclude_dir``, ``tmp_dir``); at most ``limit``."""
    root = config.root
    skipped = {os.path.normpath(d) for d in (*config.build.exclude_dir, config.tmp_dir) if d}
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(
            (
                name
                for name in dirnames
                if not name.startswith(".")
                and name not in ALWAYS_EXCLUDED_DIRS
                and os.path.normpath(os.path.join(rel, name)) not in skipped
            ),
            key=lambda name: (name != "templates", name),
        )
        for name in sorted(filenames):
            seen += 1
            if seen > limit:
                return
            yield Path(dirpath, name)


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as source:
            data = source.read(MAX_FILE + 1)
    except OSError:
        return None
    if len(data) > MAX_FILE:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class LastGood:
    """The last text of each template file that compiled in the app (see the module doc).

    Thread-safe: the first reading runs in a worker thread while swaps may already happen.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._texts: dict[str, str] = {}
        self._size = 0
        self._lock = threading.Lock()

    def remember_all(self) -> int:
        """Read every template of the project as it is now; how many were kept."""
        for path in project_files(self.config):
            if is_template(str(path), self.config):
                text = _read(str(path))
                if text is not None:
                    self._keep(str(path), text, replace=False)
        return len(self._texts)

    def for_swap(self, paths: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
        """(the last good text of these files, as far as known and as much as one swap
        carries; their text now, to call ``compiled`` with once the app swapped them)."""
        fallbacks: dict[str, str] = {}
        now: dict[str, str] = {}
        sent = 0
        for path in paths:
            text = _read(path)
            if text is not None:
                now[path] = text
            with self._lock:
                good = self._texts.get(path)
            if good is not None and good != text and sent + len(good) <= MAX_SENT:
                fallbacks[path] = good
                sent += len(good)
        return fallbacks, now

    def compiled(self, texts: Mapping[str, str]) -> None:
        """These texts compiled in the app: they are the last good ones now."""
        for path, text in texts.items():
            self._keep(path, text, replace=True)

    def _keep(self, path: str, text: str, *, replace: bool) -> None:
        with self._lock:
            old = self._texts.get(path)
            if old is not None and not replace:
                return  # a swap was quicker than the first reading: it knows better
            grown = len(text) - (len(old) if old is not None else 0)
            if self._size + grown > MAX_TOTAL:
                return
            self._texts[path] = text
            self._size += grown
