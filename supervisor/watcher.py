"""Watch the project tree and emit debounced batches of file changes.

    watcher = Watcher(config, notice=console.warning)
    await tg.start(watcher.run, send)   # returns once the OS watches are really in place
    watcher.watched_dirs                # [PosixPath('/app'), PosixPath('/app/templates'), ...]
    # send receives lists of (Change, absolute path), sorted by path, one list per burst

The only module that imports watchfiles. How it works:

* **What is watched.** The tree is walked by hand with air's rules and every kept directory is
  watched *non-recursively*, so an excluded directory (``node_modules``, ``.git``, ``tmp``...)
  never costs a single inotify watch. A directory created at run time is picked up by starting
  a new ``awatch`` over the new set (the old one keeps running until the new one is armed and has
  flushed), then scanning the new directory: files already in it are reported as ``added``.
* **Debounce.** ``awatch`` runs with a 3 ms step in its own task and feeds raw batches through a
  memory object stream. The debouncer emits one merged batch once nothing new was seen for a
  quiet window after the last raw batch, or ``max(1000, 10 * delay)`` ms after the first change
  at the latest. The window adapts: while at most three paths are pending it is a save, and
  the window is ``build.delay`` (10 ms); more pending paths are a burst (a checkout, a
  formatter) whose writer may pause between files, so the window grows to
  ``max(3 * delay, 50 ms)``. "Nothing new" is proven by watchfiles' own checks of its pending
  set (the Rust loop calls our stop event's ``is_set()`` at each one), not by when batches
  happen to reach this task, so a burst is not split when the CPU is busy. A save is emitted
  about 18 ms after it was written. Changes the engine acts on in place (a template swap, a
  stylesheet refresh: cheap, and harmless to repeat) are ``eager``: while only a few of them
  are pending they are emitted as soon as watchfiles reports them, about 5 ms after the save.
* **Merging.** watchfiles' raw batches are *sets*, so the order of events inside one is lost.
  A path's final change is therefore settled from whether it existed before the batch (known
  to the watcher, or reported without ``added``) and whether it exists now: a temp file added
  and deleted again disappears, an atomic save (deleted/added, or a bare rename onto a known
  file) is ``modified``, anything else keeps its last meaning.
* **Polling.** ``build.poll`` polls; so does the watcher, after a one-line notice, when the native
  watcher cannot start because an inotify limit is reached. notify's poller keeps whole-second
  mtimes (watchfiles #319: a second save within the same second is never seen), so known files
  are also stat'ed with nanosecond mtimes each poll interval.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import functools
import hashlib
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from watchfiles import Change as WatchfilesChange
from watchfiles import awatch

from .classify import Change, FileChange
from .config import ALWAYS_EXCLUDED_DIRS, Config

__all__ = ["Watcher", "build_filter", "is_editor_junk", "merge_changes"]

logger = logging.getLogger("pyair.watcher")

STEP_MS = 3  # watchfiles' step: how often its Rust loop looks at the pending set
SMALL_BATCH = 3  # up to this many paths pending looks like a save, more like a burst
BURST_QUIET_MS = 50  # a burst (checkout, formatter) must be quiet at least this long
RUST_TIMEOUT_MS = 1000  # an idle awatch call returns (and yields) this often
MIN_POLL_MS = 500  # air's floor for poll_interval
MIN_CAP_MS = 1000  # a burst is emitted after max(MIN_CAP_MS, 10 * delay) ms at the latest
EMPTY_READ_RETRIES = 5  # exclude_unchanged: an empty read is retried 5 x 20 ms (air #924)
EMPTY_READ_WAIT = 0.02
RUNTIME_FAILURES = 3  # awatch dying this often while running: poll instead (twice: give up)

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


# --------------------------------------------------------------------------- the rules


class _Rules:
    """air's watch rules for one config, on plain path strings (no file system access)."""

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

    # -- walking (blocking; run in a worker thread) ----------------------------------------

    def walk_roots(self) -> list[str]:
        """The root, plus include_dir entries outside it (air #820)."""
        roots = [self.root]
        for inc in self.include_dir:
            if inc == ".." or inc.startswith("../"):
                roots.append(self.abs(inc))
        return roots

    def walk(self, starts: Iterable[str]) -> _Walk:
        """Kept directories and accepted files under ``starts`` (each must be reachable)."""
        result = _Walk()
        seen: set[tuple[int, int]] = set()
        stack = list(starts)
        while stack:
            directory = stack.pop()
            rel = self.rel(directory)
            watch, descend = self.dir_state(rel)
            if not descend:
                result.skipped.append(rel)
                continue
            try:
                scanner = os.scandir(directory)
                if self.follow_symlinks:  # a symlink loop must not walk forever
                    st = os.stat(directory)
                    if (st.st_dev, st.st_ino) in seen:
                        scanner.close()
                        continue
                    seen.add((st.st_dev, st.st_ino))
            except OSError as exc:
                result.errors.append(f"cannot list {directory}: {exc.strerror or exc}")
                continue
            if watch:
                result.dirs.append(directory)
            with scanner:
                for entry in scanner:
                    try:
                        if entry.is_dir(follow_symlinks=self.follow_symlinks):
                            stack.append(entry.path)
                        elif watch and self.accept(Change.added, entry.path):
                            result.files.append(entry.path)
                    except OSError:
                        continue
        return result

    def initial_walk(self) -> _Walk:
        result = self.walk(self.walk_roots())
        kept = set(result.dirs)
        for rel in sorted(self.include_file):  # watched even inside an excluded dir
            path = self.abs(rel)
            parent = os.path.dirname(path)
            if parent not in kept and os.path.isdir(parent):
                kept.add(parent)
                result.dirs.append(parent)
            if os.path.isfile(path) and path not in result.files:
                result.files.append(path)
        return result


@dataclass
class _Walk:
    dirs: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def build_filter(config: Config) -> Callable[[Change, str], bool]:
    """air's file rules as a predicate on (change, absolute path); pure, no file system access.

    include_ext (``"*"`` = all), include_file (root-relative, passes whatever its extension
    or directory), exclude_file (fnmatch globs on the root-relative path), exclude_regex
    (``re.search`` on the absolute path), include_dir / exclude_dir (root-relative, exact),
    hidden directories, tmp_dir, testdata_dir and ALWAYS_EXCLUDED_DIRS at any depth, and
    editors' scratch files.
    """
    return _Rules(config).accept


# --------------------------------------------------------------------------- merging


def _settle(path: str, saw_added: bool, known: Container[str], exists: bool) -> Change | None:
    """The net change of one path over a batch, from before/after existence.

    It existed before when the watcher knew it, or when the batch never said ``added``
    (a bare ``modified``/``deleted`` proves it was there).
    """
    existed = path in known or not saw_added
    if existed and exists:
        return Change.modified
    if exists:
        return Change.added
    if existed:
        return Change.deleted
    return None  # added, then deleted again: a temp file


def merge_changes(
    events: Iterable[FileChange],
    *,
    known: Container[str] = frozenset(),
    exists: Callable[[str], bool] = os.path.isfile,
) -> list[FileChange]:
    """Merge raw events into one change per path, sorted by path.

    Added-then-deleted disappears, deleted-then-added is ``modified``, otherwise the last
    meaning wins; since watchfiles' raw batches are unordered sets, the outcome is settled from
    ``known`` (paths that existed before) and ``exists`` (whether the path is there now).
    """
    seen: dict[str, bool] = {}
    for change, path in events:
        seen[path] = seen.get(path, False) or change == Change.added
    out: list[FileChange] = []
    for path, saw_added in seen.items():
        settled = _settle(path, saw_added, known, exists(path))
        if settled is not None:
            out.append((settled, path))
    return sorted(out, key=lambda c: (c[1], c[0]))


EMPTY_DIGEST = hashlib.sha256(b"").digest()


def _digest(path: str) -> bytes | None:
    """SHA-256 of a file's contents, or None if it cannot be read."""
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                sha.update(chunk)
    except OSError:
        return None
    return sha.digest()


_Signature = tuple[int, int, int]  # (st_mtime_ns, st_size, st_ino)


def _signature(path: str) -> _Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


@dataclass(frozen=True)
class _Facts:
    exists: bool
    digest: bytes | None = None
    signature: _Signature | None = None


def _probe(
    paths: list[str], *, digests: bool, signatures: bool, had_content: Container[str] = ()
) -> dict[str, _Facts]:
    """What the file system says about each path now (blocking; a worker thread).

    With ``digests``, a file that had content and now reads empty is read again, up to
    5 x 20 ms for the whole batch (air #924: an editor that truncates, then writes).
    """
    facts = {}
    for path in paths:
        if not os.path.isfile(path):
            facts[path] = _Facts(False)
            continue
        digest = _digest(path) if digests else None
        facts[path] = _Facts(True, digest, _signature(path) if signatures else None)
    retry = [p for p, f in facts.items() if f.digest == EMPTY_DIGEST and p in had_content]
    for _round in range(EMPTY_READ_RETRIES):
        if not retry:
            break
        time.sleep(EMPTY_READ_WAIT)
        for path in retry:
            facts[path] = _Facts(os.path.isfile(path), _digest(path), facts[path].signature)
        retry = [p for p in retry if facts[p].digest == EMPTY_DIGEST]
    return facts


def _changed_signatures(items: list[tuple[str, _Signature | None]]) -> list[str]:
    """Paths whose (ns mtime, size, inode) differ from the recorded one (a worker thread)."""
    changed = []
    for path, recorded in items:
        current = _signature(path)
        if current is not None and current != recorded:
            changed.append(path)
    return changed


def _is_limit_error(exc: BaseException) -> bool:
    """The native watcher could not start because an inotify limit was reached."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EMFILE, errno.ENFILE):
        return True
    text = str(exc)
    return isinstance(exc, OSError | RuntimeError) and any(
        marker in text
        for marker in (
            "OS file watch limit reached",
            "Too many open files",
            "No space left on device",
            "os error 24",
            "os error 28",
        )
    )


def _short_error(exc: BaseException) -> str:
    text = str(exc).split(" (Error {", 1)[0].strip()
    return text or type(exc).__name__


# --------------------------------------------------------------------------- awatch plumbing


class _Arm(threading.Event):
    """awatch's ``stop_event``, and a window into watchfiles' Rust loop.

    The Rust loop calls ``is_set()`` once per step from awatch's worker thread, first only
    after its constructor has added every OS watch: the first call is the moment the watcher
    is armed. Each call is also a check of the pending set (right after it the loop returns
    if it holds changes), so the times of the checks since the last yield tell how long the
    set has provably been empty. Setting the event stops that awatch within a step.
    """

    def __init__(self, on_armed: Callable[[], None]) -> None:
        super().__init__()
        self._on_armed: Callable[[], None] | None = on_armed
        self.checks: list[float] = []  # monotonic times of the last 3 checks since a yield

    def is_set(self) -> bool:
        checks = self.checks
        checks.append(time.monotonic())
        if len(checks) > 3:
            del checks[0]
        on_armed, self._on_armed = self._on_armed, None
        if on_armed is not None:
            try:
                anyio.from_thread.run_sync(on_armed)
            except Exception:  # not in an anyio worker thread, or the loop is gone
                logger.debug("could not report the armed watcher", exc_info=True)
        return super().is_set()

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for (without counting as a check)."""
        return super().is_set()

    def empty_since(self) -> float | None:
        """A time before which nothing is pending in the Rust loop, or None if unknown.

        A change seen at one check is returned at the next one at the latest (debounce ==
        step). Three checks without a yield in between therefore prove the set was empty at
        the first of them; the last two may already be returning changes.
        """
        checks = self.checks
        return checks[-3] if len(checks) >= 3 else None

    def expected_quiet_at(self, since: float) -> float:
        """When ``empty_since() >= since`` should become true if the loop keeps its pace."""
        checks = list(self.checks)
        step = STEP_MS / 1000
        if not checks:
            return time.monotonic() + 3 * step
        later = [c for c in checks if c >= since]
        if later:
            missing = 3 - (len(checks) - checks.index(later[0]))
            return checks[-1] + max(0, missing) * step
        first = checks[-1] + math.ceil((since - checks[-1]) / step) * step
        return first + 2 * step

    def new_call(self) -> float:
        """awatch yielded: the Rust call ended at its last check; the next one starts afresh."""
        ended = self.checks[-1] if self.checks else time.monotonic()
        self.checks = []
        return ended


@dataclass(eq=False)
class _Generation:
    """One ``awatch`` over one fixed set of directories."""

    number: int
    dirs: frozenset[str]
    polling: bool
    armed: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    yielded: anyio.Event = field(default_factory=anyio.Event)
    yields: int = 0
    error: BaseException | None = None
    stop: _Arm = field(init=False)

    def __post_init__(self) -> None:
        self.stop = _Arm(self.armed.set)

    def note_yield(self) -> float:
        """Count a yield; returns when the Rust call that produced it ended."""
        ended = self.stop.new_call()
        self.yields += 1
        event, self.yielded = self.yielded, anyio.Event()
        event.set()
        return ended

    def quiet_since(self, since: float) -> bool:
        """Nothing can be pending in this awatch from before ``since``."""
        if self.done.is_set() or self.stop.requested:
            return True
        empty = self.stop.empty_since()
        return empty is not None and empty >= since

    def expected_quiet_at(self, since: float) -> float:
        if self.quiet_since(since):
            return 0.0
        return self.stop.expected_quiet_at(since)


@dataclass(eq=False)
class _RawBatch:
    generation: _Generation | None  # None: from the poll-mode signature check
    changes: list[FileChange]
    stamp: float  # time.monotonic() when the changes were seen


_Message = _RawBatch | _Generation  # a generation on the stream: its awatch failed


# --------------------------------------------------------------------------- the watcher


def _log_notice(message: str) -> None:
    logger.warning(message)


class Watcher:
    """Watches ``config.root`` with air's rules; see the module docstring."""

    def __init__(
        self,
        config: Config,
        *,
        notice: Callable[[str], None] = _log_notice,
        debug: Callable[[str], None] | None = None,
        eager: Callable[[str], bool] | None = None,
    ) -> None:
        """``eager(path)``: changes that are cheap and harmless to act on twice (a template
        swap, a stylesheet refresh) are emitted without waiting for quiet while only a few
        such paths are pending; anything else still waits for the quiet window."""
        self.config = config
        self._eager = eager
        self._rules = _Rules(config)
        self._notice = notice
        self._debug = debug
        build = config.build
        # A save is acted on after ``delay`` ms of quiet; once more than a few files are
        # pending it is a burst, whose writer may pause longer between files.
        self._save_delay_s = max(0, build.delay) / 1000
        self._burst_delay_s = max(3 * self._save_delay_s, BURST_QUIET_MS / 1000)
        self._cap_s = max(MIN_CAP_MS, 10 * build.delay) / 1000
        self._poll_ms = max(MIN_POLL_MS, build.poll_interval)
        self._polling = build.poll
        self._exclude_unchanged = build.exclude_unchanged
        self._dirs: set[str] = set()
        self._known: set[str] = set()
        self._hashes: dict[str, bytes] = {}
        self._signatures: dict[str, _Signature] = {}  # poll mode: ns mtimes (watchfiles #319)
        self._stat_poller = False
        self._generations: list[_Generation] = []
        self._current: _Generation | None = None
        self._numbers = 0
        self._failures = 0
        self._raw_send: MemoryObjectSendStream[_Message] | None = None

    @property
    def watched_dirs(self) -> list[Path]:
        """The directories currently watched (each one non-recursively)."""
        return [Path(d) for d in sorted(self._dirs)]

    @property
    def polling(self) -> bool:
        """True when the watcher polls (``build.poll``, or after falling back)."""
        return self._polling

    def _say(self, message: str) -> None:
        if self._debug is not None:
            self._debug(message)

    # -- lifetime ------------------------------------------------------------------------

    async def run(
        self,
        send: MemoryObjectSendStream[list[FileChange]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Watch until cancelled, sending one sorted list of changes per debounced burst.

        ``task_status.started()`` is called once the OS watches are in place: a write after it
        is seen. ``send`` is closed on the way out.
        """
        raw_send, raw_recv = anyio.create_memory_object_stream[_Message](math.inf)
        async with send, raw_send, raw_recv, anyio.create_task_group() as tg:
            self._raw_send = raw_send
            tg.start_soon(self._stop_all_on_exit)
            walk = await anyio.to_thread.run_sync(self._rules.initial_walk)
            for message in walk.errors:
                self._say(message)
            for rel in walk.skipped:
                self._say(f"!exclude {rel}")
            self._known = set(walk.files)
            if self._exclude_unchanged:
                self._hashes = await anyio.to_thread.run_sync(self._hash_all, walk.files)
            generation = await self._arm(tg, set(walk.dirs), initial=True)
            assert generation is not None
            self._adopt(generation)
            await self._start_stat_poller(tg)
            self._say(f"watching {len(self._dirs)} directories, {len(self._known)} files")
            task_status.started()
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self._debounce(tg, raw_recv, send)  # returns when nobody listens any more
            tg.cancel_scope.cancel()

    async def _stop_all_on_exit(self) -> None:
        """On the way out, stop every awatch through its stop event (within one step)."""
        try:
            await anyio.sleep_forever()
        finally:
            for generation in self._generations:
                generation.stop.set()

    def _hash_all(self, files: list[str]) -> dict[str, bytes]:
        hashes = {}
        for path in files:
            digest = _digest(path)
            if digest is not None:
                hashes[path] = digest
        return hashes

    # -- generations ---------------------------------------------------------------------

    async def _arm(self, tg: TaskGroup, dirs: set[str], *, initial: bool) -> _Generation | None:
        """Start an awatch over ``dirs`` and wait until its watches are in place."""
        wanted = set(dirs)
        for _attempt in range(10):
            self._numbers += 1
            generation = _Generation(self._numbers, frozenset(wanted), self._polling)
            self._generations.append(generation)
            tg.start_soon(self._pump, generation)
            await generation.armed.wait()
            error = generation.error
            if error is None:
                return generation
            if isinstance(error, FileNotFoundError):  # a directory went away meanwhile
                wanted = {d for d in wanted if os.path.isdir(d)}
                continue
            if _is_limit_error(error) and not self._polling:
                self._polling = True
                self._notice(
                    f"file watch limit reached ({_short_error(error)}); falling back to polling "
                    f"every {self._poll_ms} ms (raise fs.inotify.max_user_watches / "
                    "max_user_instances to watch natively)"
                )
                continue
            if initial:
                raise error
            self._notice(f"cannot watch new directories: {_short_error(error)}")
            return None
        if initial:
            raise RuntimeError("the watched directories keep disappearing")
        return None

    async def _pump(self, generation: _Generation) -> None:
        """Run one awatch, forwarding its raw batches; never cancelled except at shutdown."""
        assert self._raw_send is not None
        raw_send = self._raw_send
        rules = self._rules

        def watch_filter(change: WatchfilesChange, path: str) -> bool:
            # files by air's rules, plus any directory event (new or gone directories)
            return (
                rules.accept(Change(int(change)), path)
                or path in self._dirs
                or (change != WatchfilesChange.deleted and os.path.isdir(path))
            )

        try:
            async for changes in awatch(
                *sorted(generation.dirs),
                watch_filter=watch_filter,
                debounce=STEP_MS,
                step=STEP_MS,
                stop_event=generation.stop,
                rust_timeout=RUST_TIMEOUT_MS,
                yield_on_timeout=True,
                force_polling=True if generation.polling else None,
                poll_delay_ms=self._poll_ms,
                recursive=False,
                ignore_permission_denied=False,
            ):
                ended = generation.note_yield()
                if changes:
                    batch = [(Change(int(change)), path) for change, path in changes]
                    raw_send.send_nowait(_RawBatch(generation, batch, ended))
        except Exception as exc:
            generation.error = exc
            if generation.armed.is_set():  # it failed while running: tell the debouncer
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    raw_send.send_nowait(generation)
        finally:
            generation.armed.set()
            generation.done.set()
            generation.note_yield()
            if generation in self._generations:
                self._generations.remove(generation)

    async def _retire(self, old: _Generation, since: float) -> None:
        """Stop a superseded awatch once it has delivered what it saw before ``since`` (when
        its successor was armed): after its next yield, or once its checks prove it empty."""
        seen = old.yields
        with anyio.move_on_after(1.0):
            while old.yields == seen and not old.quiet_since(since):
                await anyio.sleep(max(0.001, old.expected_quiet_at(since) - time.monotonic()))
        old.stop.set()

    def _adopt(self, generation: _Generation) -> None:
        self._current = generation
        self._dirs = set(generation.dirs)

    # -- debouncing ----------------------------------------------------------------------

    async def _debounce(
        self,
        tg: TaskGroup,
        raw_recv: MemoryObjectReceiveStream[_Message],
        send: MemoryObjectSendStream[list[FileChange]],
    ) -> None:
        """Merge raw batches; emit once quiet for ``delay`` (or at the cap).

        Quiet is judged from watchfiles' own checks, not from when raw batches happen to reach
        this task: under CPU load the Rust thread or the event loop may run late, and a burst
        must not be split because of that.
        """
        pending: dict[str, bool] = {}  # path -> an `added` was seen in this burst
        first_at = last_at = 0.0  # time.monotonic() of the burst's first and last change
        while True:
            message: _Message | None = None
            if pending:
                try:
                    message = raw_recv.receive_nowait()
                except anyio.WouldBlock:
                    now = time.monotonic()
                    cap_at = first_at + self._cap_s
                    eager = self._all_eager(pending)
                    quiet_s, delay_s = self._quiet_window(len(pending), eager)
                    if now >= cap_at or (
                        now >= last_at + quiet_s and (eager or self._all_quiet(last_at + delay_s))
                    ):
                        batch = await self._settle_all(pending)
                        pending = {}
                        if batch:
                            self._say(f"batch of {len(batch)} after {self._age(first_at)} ms")
                            await send.send(batch)
                        continue
                    quiet_at = max(
                        [last_at + quiet_s]
                        + [
                            g.expected_quiet_at(last_at + delay_s)
                            for g in self._generations
                            if not eager
                        ]
                    )
                    wake_at = min(cap_at, max(quiet_at + 0.0005, now + 0.001))
                    with anyio.move_on_after(wake_at - now):
                        message = await raw_recv.receive()
                    if message is None:
                        continue
            else:
                message = await raw_recv.receive()
            was_empty = not pending
            stamp = await self._absorb(tg, message, pending)
            if pending and (stamp is not None or was_empty):
                stamp = time.monotonic() if stamp is None else stamp
                if was_empty:
                    first_at = last_at = stamp
                last_at = max(last_at, stamp)
            await anyio.lowlevel.checkpoint()

    def _all_eager(self, pending: Mapping[str, bool]) -> bool:
        eager = self._eager
        return eager is not None and len(pending) <= SMALL_BATCH and all(map(eager, pending))

    def _quiet_window(self, pending: int, eager: bool = False) -> tuple[float, float]:
        """(seconds of quiet after the last change, the time the watchers must prove empty).

        Proving a watcher empty takes two of its steps; for a save those count towards
        ``delay`` (a save is one burst of writes within a millisecond or two), for a burst they
        come on top, since its writer may pause between files. Eager changes wait only for
        two steps of quiet, without the proof: an editor's truncate and its write, seen a step
        apart, stay one change.
        """
        steps = 2 * STEP_MS / 1000
        if eager:
            return steps, 0.0
        if pending <= SMALL_BATCH:
            return max(self._save_delay_s, steps), max(0.0, self._save_delay_s - steps)
        return self._burst_delay_s + steps, self._burst_delay_s

    def _all_quiet(self, since: float) -> bool:
        return all(g.quiet_since(since) for g in self._generations)

    @staticmethod
    def _age(since: float) -> int:
        return round((time.monotonic() - since) * 1000)

    async def _absorb(
        self, tg: TaskGroup, message: _Message, pending: dict[str, bool]
    ) -> float | None:
        """Fold one raw message into ``pending``; re-arm for new or gone directories.

        Returns when the latest change folded in was seen, or None if nothing was.
        """
        before = len(pending)
        stamp: float | None = None
        if isinstance(message, _Generation):
            if message is self._current:
                await self._recover(tg, message, pending)
            return time.monotonic() if len(pending) != before else None
        new_dirs: list[str] = []
        gone_dirs: list[str] = []
        for change, path in message.changes:
            if path in self._dirs:
                if change == Change.deleted or not os.path.isdir(path):
                    gone_dirs.append(path)
                continue
            if change != Change.deleted and os.path.isdir(path):
                if (self._rules.follow_symlinks or not os.path.islink(path)) and (
                    self._rules.reachable(self._rules.rel(path))
                ):
                    new_dirs.append(path)
                continue
            parent = os.path.dirname(path)
            if parent not in self._dirs and self._rules.rel(path) not in self._rules.include_file:
                continue  # from a directory no longer watched (moved away, being re-armed)
            if not self._rules.accept(change, path):
                continue
            self._say(f"{change.name} {self._rules.rel(path)}")
            pending[path] = pending.get(path, False) or change == Change.added
            stamp = message.stamp
        if gone_dirs:
            self._drop_dirs(gone_dirs, pending)
            stamp = message.stamp
        if new_dirs or gone_dirs:
            count = len(pending)
            await self._rearm(tg, new_dirs, gone_dirs, pending)
            if len(pending) != count:
                stamp = time.monotonic()  # files found in the new directories
        return stamp

    async def _recover(self, tg: TaskGroup, failed: _Generation, pending: dict[str, bool]) -> None:
        """The current awatch died while running: start a new one (polling after 3 failures,
        giving up after 6)."""
        error = failed.error or RuntimeError("the file watcher stopped")
        self._failures += 1
        if self._failures > 2 * RUNTIME_FAILURES:
            raise error
        switch = self._failures >= RUNTIME_FAILURES and not self._polling
        self._polling = self._polling or switch
        how = f"polling every {self._poll_ms} ms from now on" if switch else "restarting it"
        self._notice(f"the file watcher failed ({_short_error(error)}); {how}")
        await self._rearm(tg, [], [], pending)

    def _drop_dirs(self, gone: list[str], pending: dict[str, bool]) -> None:
        """Forget removed directories (and their subdirectories); their files are deleted."""
        prefixes = tuple(d.rstrip("/") + "/" for d in gone)
        dropped = {d for d in self._dirs if d in gone or d.startswith(prefixes)}
        self._dirs -= dropped
        for path in [p for p in self._known if os.path.dirname(p) in dropped]:
            pending.setdefault(path, False)
        for d in sorted(dropped):
            self._say(f"unwatch {self._rules.rel(d)}")

    async def _rearm(
        self, tg: TaskGroup, new_dirs: list[str], gone_dirs: list[str], pending: dict[str, bool]
    ) -> None:
        """Swap in an awatch over the updated directory set; report files in new dirs."""
        old = self._current
        while True:
            walk = await anyio.to_thread.run_sync(self._rules.walk, new_dirs)
            wanted = self._dirs | set(walk.dirs)
            generation = await self._arm(tg, wanted, initial=False)
            if generation is None:
                return  # notice given; keep the old awatch
            armed_at = time.monotonic()
            self._say(
                f"re-armed: {len(generation.dirs)} directories"
                f" (+{len(walk.dirs)} -{len(gone_dirs)})"
            )
            # files (and directories) that appeared before the new watches were in place
            rescan = await anyio.to_thread.run_sync(self._rules.walk, new_dirs)
            vanished = self._dirs - generation.dirs
            self._adopt(generation)
            await self._start_stat_poller(tg)
            if vanished:
                self._drop_dirs(sorted(vanished), pending)
            for path in rescan.files:
                pending[path] = True
            if old is not None and old is not generation:
                tg.start_soon(self._retire, old, armed_at)
            missing = [d for d in rescan.dirs if d not in generation.dirs]
            if not missing:
                return
            old, new_dirs, gone_dirs = generation, missing, []

    async def _settle_all(self, pending: Mapping[str, bool]) -> list[FileChange]:
        """Settle each path's net change; apply exclude_unchanged and poll-mode dedup.

        The file system is probed in a worker thread; the watcher's own state (known files,
        hashes, signatures) is only touched here, in the event loop thread.
        """
        had_content = {p for p in pending if self._hashes.get(p, EMPTY_DIGEST) != EMPTY_DIGEST}
        facts = await anyio.to_thread.run_sync(
            functools.partial(
                _probe,
                list(pending),
                digests=self._exclude_unchanged,
                signatures=self._stat_poller,
                had_content=had_content,
            )
        )
        out: list[FileChange] = []
        for path, saw_added in pending.items():
            fact = facts[path]
            change = _settle(path, saw_added, self._known, fact.exists)
            if change is None:
                continue
            if change == Change.deleted:
                self._known.discard(path)
                self._hashes.pop(path, None)
                self._signatures.pop(path, None)
                out.append((change, path))
                continue
            self._known.add(path)
            if fact.signature is not None:
                seen = self._signatures.get(path) == fact.signature
                self._signatures[path] = fact.signature
                if seen and change == Change.modified:
                    continue  # both pollers saw the same write; it was reported already
            if fact.digest is not None:
                if self._hashes.get(path) == fact.digest:
                    continue  # contents unchanged
                self._hashes[path] = fact.digest
            out.append((change, path))
        return sorted(out, key=lambda c: (c[1], c[0]))

    # -- poll mode -----------------------------------------------------------------------

    async def _start_stat_poller(self, tg: TaskGroup) -> None:
        if self._polling and not self._stat_poller:
            self._stat_poller = True
            paths = list(self._known)
            recorded = await anyio.to_thread.run_sync(lambda: {p: _signature(p) for p in paths})
            for path, signature in recorded.items():
                if signature is not None:
                    self._signatures.setdefault(path, signature)
            tg.start_soon(self._poll_signatures)

    async def _poll_signatures(self) -> None:
        """notify's PollWatcher compares whole-second mtimes, so a save in the same second as
        the one before is never seen (watchfiles #319). Alongside it, stat the known files
        with nanosecond mtimes, size and inode, and report what changed as ``modified``."""
        assert self._raw_send is not None
        while True:
            await anyio.sleep(self._poll_ms / 1000)
            items = [(p, self._signatures.get(p)) for p in self._known]
            changed = await anyio.to_thread.run_sync(_changed_signatures, items)
            if changed:
                batch = [(Change.modified, path) for path in changed]
                self._raw_send.send_nowait(_RawBatch(None, batch, time.monotonic()))
