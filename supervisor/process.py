"""Processes: build steps, the app's process tree, and the orphan guard.

    result = await run_step("pip install -e .", cwd=root, env=env, on_output=console.build)
    app = await AppProcess.start(cfg.app_command(), cwd=root, env=env, token=f"{session}/app-1")
    report = await app.stop(interrupt=cfg.build.send_interrupt, kill_delay_ms=cfg.build.kill_delay)
    guardian = Guardian.start(session)  # once: kills every tree of the session if pyair dies
    guardian.close()                    # normal exit

Every process pyair starts carries ``PYAIR_TREE=<token>`` in its environment and inherits it to
its own children, so a tree can be found even where the parent links are gone (a grandchild that
called ``setsid`` and whose parent already exited). A token matches its own value and every value
nested under it with ``/``: ``tree_pids("s1")`` finds ``s1``, ``s1/app-3`` and ``s1/step-ab12``.

This is the only module that imports psutil. The ``/proc`` scan is Linux's (its readers are in
:mod:`supervisor.childside`, shared with the zygote and the guardian); elsewhere psutil is used
(slower) and the guardian cannot find the tree.
"""

from __future__ import annotations

import codecs
import contextlib
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import psutil

from .childside import (
    DEAD_STATES,
    PROC,
    carries_token,
    encode_frame,
    read_proc,
    start_ticks,
    stat_fields,
    token_needles,
)
from .childside import TREE_ENV as TREE_ENV  # re-exported: the engine reads it here
from .config import AppCommand

GUARDIAN_MAIN = str(Path(__file__).resolve().with_name("guardian_main.py"))

POLL_S = 0.005  # how often the rest of a tree is checked while it shuts down
GIVE_UP_S = 3.0  # after SIGKILL, how long to wait for the tree to vanish before reporting
STEP_EXIT_POLL_S = 0.05  # a step's shell may exit while a background process holds its pipe
STEP_DRAIN_S = 0.1  # then read what is left for this long, and stop reading

_SHELL = "/bin/sh"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class StepResult:
    """One build step: its exit code (negative: killed by that signal) and merged output."""

    command: str
    returncode: int
    output: str
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class StopReport:
    """How a tree went: ``graceful`` if all of it exited within kill_delay, without SIGKILL.

    ``killed`` counts the processes that were SIGKILLed; ``survivors`` lists the pids still
    alive when pyair gave up (normally empty).
    """

    graceful: bool
    duration_ms: float
    killed: int
    survivors: tuple[int, ...] = ()


# --------------------------------------------------------------------------- finding a tree


def _check_token(token: str) -> None:
    if not token or "\0" in token:
        raise ValueError(f"bad tree token {token!r}: it must be non-empty, without NUL")


def _value_matches(value: str, token: str) -> bool:
    return value == token or value.startswith(token + "/")


class _Entry(NamedTuple):
    ppid: int
    pgrp: int
    marked: bool  # carries the token


def _table(token: str | None, *, since: int | None = None) -> dict[int, _Entry]:
    """Every live (non-zombie) process: parent, process group, and whether it has the token.

    ``since`` (a start time in clock ticks): older processes cannot carry the token, so their
    environment is not read (most of a busy machine's processes, and half of the cost).
    """
    if not os.path.isdir(PROC):  # pragma: no cover - not Linux
        return _table_psutil(token)
    needles = token_needles(token) if token else None
    table: dict[int, _Entry] = {}
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        try:
            fields = stat_fields(name, 20)
        except OSError:  # gone, or not ours to read
            continue
        if len(fields) < 20 or fields[0] in DEAD_STATES:
            continue
        marked = False
        if needles is not None and (since is None or int(fields[19]) >= since):
            marked = carries_token(name, needles)
        table[int(name)] = _Entry(int(fields[1]), int(fields[2]), marked)
    return table


def _table_psutil(token: str | None) -> dict[int, _Entry]:  # pragma: no cover - not Linux
    table: dict[int, _Entry] = {}
    for proc in psutil.process_iter(["ppid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            value = proc.environ().get(TREE_ENV) if token else None
            marked = value is not None and token is not None and _value_matches(value, token)
            table[proc.pid] = _Entry(proc.info["ppid"], os.getpgid(proc.pid), marked)
        except (psutil.Error, OSError):
            continue
    return table


def tree_pids(token: str) -> set[int]:
    """Live pids (not zombies) whose environment carries ``PYAIR_TREE=<token>`` (or nested)."""
    _check_token(token)
    return {pid for pid, entry in _table(token).items() if entry.marked}


def belongs_to_tree(pid: int, token: str) -> bool:
    """Whether ``pid`` carries ``PYAIR_TREE=<token>`` (or a token nested under it).

    Cheap enough for every control-socket connection: one read of ``/proc/PID/environ``.
    """
    _check_token(token)
    return carries_token(pid, token_needles(token))


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Leader(Protocol):
    """A tree's leader: an anyio Process, or a warm app the zygote forked (its exit comes
    over the zygote's socket). It leads its own session, so its pid is the process group."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


class _Tree:
    """The processes of one tree: the leader, its process group, every descendant, the token."""

    def __init__(self, leader: Leader, token: str) -> None:
        self.leader = leader
        self.pgid = leader.pid  # the leader is started in a new session
        self.token = token
        self.members: dict[int, psutil.Process] = {}
        self.group_live = True  # whether the last scan saw a live member of the group
        self.since: int | None = None  # the leader's start time: no part of the tree is older

    def scan(self) -> list[psutil.Process]:
        """Look at every process; add the tree's new ones to ``members`` and return them."""
        if self.since is None and self.leader.returncode is None:
            self.since = start_ticks(self.leader.pid)
        table = _table(self.token, since=self.since)
        known = {pid for pid, proc in self.members.items() if pid in table and _alive(proc)}
        if self.leader.returncode is None:  # once reaped, its pid may be someone else's
            known.add(self.leader.pid)
        roots = {
            pid
            for pid, entry in table.items()
            if entry.marked or entry.pgrp == self.pgid or pid in known
        }
        self.group_live = any(table[pid].pgrp == self.pgid for pid in roots)
        children: dict[int, list[int]] = {}
        for pid, entry in table.items():
            children.setdefault(entry.ppid, []).append(pid)
        tree: set[int] = set()
        todo = list(roots)
        while todo:
            pid = todo.pop()
            if pid in tree:
                continue
            tree.add(pid)
            todo.extend(children.get(pid, ()))
        tree -= {0, 1, os.getpid()}
        found: list[psutil.Process] = []
        for pid in tree - known:
            try:
                proc = psutil.Process(pid)
            except psutil.Error:
                continue
            self.members[pid] = proc
            found.append(proc)
        return found

    def alive(self) -> list[psutil.Process]:
        return [proc for proc in self.members.values() if _alive(proc)]

    def send(self, sig: int, procs: Iterable[psutil.Process]) -> set[int]:
        """Signal the group (atomically, forks included) and each of ``procs``; the pids hit."""
        hit: set[int] = set()
        if self.group_live:
            try:
                os.killpg(self.pgid, sig)
            except (ProcessLookupError, PermissionError):
                self.group_live = False
        for proc in procs:
            try:
                proc.send_signal(sig)
                hit.add(proc.pid)
            except (psutil.Error, OSError):
                continue
        return hit

    async def settle(
        self,
        deadline: float,
        sig: int,
        *,
        leader_wait: bool,
        hit: set[int] | None = None,
    ) -> bool:
        """Wait until no process of the tree is left (True) or ``deadline`` passed (False).

        Event-driven on the leader (``leader_wait``; else its exit is polled, for a step whose
        pipe may be held open), then the rest is polled every POLL_S and confirmed by a full
        scan. Processes the scan finds late get ``sig`` too (their pids are added to ``hit``).
        """
        leader = self.leader
        while True:
            remaining = deadline - time.monotonic()
            if leader.returncode is None:
                if remaining <= 0:
                    return False
                with anyio.move_on_after(remaining if leader_wait else min(remaining, POLL_S)):
                    await leader.wait()
                continue
            if self.alive():
                if remaining <= 0:
                    return False
                await anyio.sleep(POLL_S)
                continue
            found = self.scan()
            if not found and not self.group_live:
                return True
            signalled = self.send(sig, found)
            if hit is not None:
                hit |= signalled
            if remaining <= 0:
                return False
            if not found:  # a group member raced the checks above: never spin
                await anyio.sleep(POLL_S)


async def _kill_tree(tree: _Tree, *, leader_wait: bool) -> tuple[set[int], tuple[int, ...]]:
    """SIGKILL everything of ``tree`` until none is left or GIVE_UP_S passed."""
    give_up = time.monotonic() + GIVE_UP_S
    tree.scan()
    hit = tree.send(signal.SIGKILL, tree.alive())
    gone = await tree.settle(give_up, signal.SIGKILL, leader_wait=leader_wait, hit=hit)
    survivors = () if gone else tuple(sorted(proc.pid for proc in tree.alive()))
    return hit, survivors


# --------------------------------------------------------------------------- build steps


class _Lines:
    """Splits a byte stream into lines for ``on_output`` and keeps the whole text."""

    def __init__(self, on_output: Callable[[str], None] | None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._on_output = on_output
        self._parts: list[str] = []
        self._partial = ""

    def feed(self, data: bytes, *, final: bool = False) -> None:
        text = self._decoder.decode(data, final=final)
        self._parts.append(text)
        *lines, self._partial = (self._partial + text).split("\n")
        if final and self._partial:
            lines.append(self._partial)
            self._partial = ""
        if self._on_output is not None:
            for line in lines:
                self._on_output(line.removesuffix("\r"))

    @property
    def text(self) -> str:
        return "".join(self._parts)


async def _pump(stream: anyio.abc.ByteReceiveStream, lines: _Lines, eof: anyio.Event) -> None:
    try:
        async for chunk in stream:
            lines.feed(chunk)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass
    eof.set()


def _step_token(env: Mapping[str, str]) -> str:
    suffix = f"step-{secrets.token_hex(6)}"
    parent = env.get(TREE_ENV)
    return f"{parent}/{suffix}" if parent else suffix


async def run_step(
    command: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_output: Callable[[str], None] | None = None,
) -> StepResult:
    """Run ``/bin/sh -c command`` in a new session, stdout and stderr merged, lines streamed.

    The step's processes carry ``PYAIR_TREE=<env's token>/step-<hex>`` (or ``step-<hex>``), so
    a guardian watching the env's token covers them too. On cancellation the whole tree is
    SIGKILLed (and gone) before the cancellation propagates. If the shell exits while something
    it started in the background keeps the pipe open, the output is read for STEP_DRAIN_S more,
    then no longer; that process is left running. A shell that cannot start (missing ``cwd``)
    is a failed step with returncode 127 and the reason as its output.
    """
    started = time.perf_counter()
    token = _step_token(env)
    lines = _Lines(on_output)
    try:
        process = await anyio.open_process(
            [_SHELL, "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**env, TREE_ENV: token},
            start_new_session=True,
        )
    except OSError as exc:
        lines.feed(f"pyair: cannot run {command!r} in {cwd}: {exc}\n".encode(), final=True)
        return StepResult(command, 127, lines.text, (time.perf_counter() - started) * 1000)
    async with process:  # on the way out: close the pipe, reap the shell
        try:
            assert process.stdout is not None
            eof = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_pump, process.stdout, lines, eof)
                # EOF normally comes with the exit, but a background process may hold the
                # pipe open (and with older anyio on asyncio, wait() waits for the pipes too:
                # CPython gh-119710), so the exit is also watched through returncode.
                while not eof.is_set() and process.returncode is None:
                    with anyio.move_on_after(STEP_EXIT_POLL_S):
                        await eof.wait()
                if not eof.is_set():
                    with anyio.move_on_after(STEP_DRAIN_S):
                        await eof.wait()
                tg.cancel_scope.cancel()
            lines.feed(b"", final=True)
            returncode = await process.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _kill_tree(_Tree(process, token), leader_wait=False)
            raise
    return StepResult(command, returncode, lines.text, (time.perf_counter() - started) * 1000)


# --------------------------------------------------------------------------- piped output

MAX_LINE = 16_384  # a longer line is shown in pieces of this many characters
PARTIAL_S = 0.2  # an unfinished line (a prompt, a progress bar) is shown after this long


class LineSplitter:
    """Bytes from a pipe into lines: UTF-8 decoded incrementally, ``\r\n`` and ``\n``
    endings, over-long lines cut, and what is left unfinished kept for :meth:`flush`."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._max = max_line

    @property
    def pending(self) -> bool:
        return bool(self._partial)

    def feed(self, data: bytes) -> list[str]:
        *lines, self._partial = (self._partial + self._decoder.decode(data)).split("\n")
        while len(self._partial) > self._max:
            lines.append(self._partial[: self._max])
            self._partial = self._partial[self._max :]
        out: list[str] = []
        for line in lines:
            line = line.removesuffix("\r")
            out.extend(line[i : i + self._max] for i in range(0, len(line), self._max) or [0])
        return out

    def flush(self) -> str:
        """The unfinished line so far (then forgotten); "" if none."""
        line, self._partial = self._partial + self._decoder.decode(b"", final=True), ""
        return line.removesuffix("\r")


async def pump_lines(
    stream: anyio.abc.ByteReceiveStream,
    on_line: Callable[[str], None],
    *,
    partial_s: float = PARTIAL_S,
) -> None:
    """Read ``stream`` to its end, handing each line to ``on_line``.

    An unfinished line is handed over once nothing more came for ``partial_s`` (a prompt
    without a newline is seen), and at the end. The pipe is drained as fast as ``on_line``
    takes lines, so the writer is held back only by how fast they are shown; each chunk
    (at most 64 KiB) is followed by a checkpoint, so a chatty process never starves the
    event loop.
    """
    splitter = LineSplitter()
    try:
        while True:
            chunk = b""
            with anyio.move_on_after(partial_s if splitter.pending else math.inf):
                chunk = await stream.receive(65536)
            if not chunk:  # quiet for partial_s
                on_line(splitter.flush())
                continue
            for line in splitter.feed(chunk):
                on_line(line)
            await anyio.lowlevel.checkpoint()
    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass
    finally:
        if splitter.pending:
            on_line(splitter.flush())


# --------------------------------------------------------------------------- the app


class AppProcess:
    """The app's child, leader of its own session, and everything it starts."""

    def __init__(self, process: Leader, command: AppCommand, token: str) -> None:
        self._process = process
        self.command = command
        self.token = token
        self.pid: int = process.pid
        self._tree = _Tree(process, token)
        self._stop_lock = anyio.Lock()
        self._report: StopReport | None = None

    @classmethod
    async def start(
        cls,
        command: AppCommand,
        *,
        cwd: Path,
        env: Mapping[str, str],
        token: str,
        piped: bool = False,
        pass_fds: Sequence[int] = (),
    ) -> AppProcess:
        """Start ``command`` with ``PYAIR_TREE=token`` in its environment, stdio inherited
        (the app keeps the terminal), or ``piped``: stdin from /dev/null, stdout and stderr
        into pipes (``stdout``/``stderr``) that the caller must keep reading. ``pass_fds``:
        descriptors the child inherits under the same numbers (the held listening socket).

        Raises OSError when it cannot be started (no such program, no such cwd).
        """
        _check_token(token)
        if command.argv is not None:
            if not command.argv:
                raise ValueError("empty app command")
            argv = list(command.argv)
        elif command.shell is not None:
            argv = [_SHELL, "-c", command.shell]
        else:
            raise ValueError("an AppCommand needs argv or shell")
        pipe = subprocess.PIPE if piped else None
        process = await anyio.open_process(
            argv,
            stdin=subprocess.DEVNULL if piped else None,
            stdout=pipe,
            stderr=pipe,
            cwd=cwd,
            env={**env, TREE_ENV: token},
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
        return cls(process, command, token)

    @property
    def stdout(self) -> anyio.abc.ByteReceiveStream | None:
        """The pipe of a ``piped`` start (None otherwise)."""
        return getattr(self._process, "stdout", None)

    @property
    def stderr(self) -> anyio.abc.ByteReceiveStream | None:
        return getattr(self._process, "stderr", None)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def wait(self) -> int:
        """The direct child's exit code (negative: killed by that signal)."""
        return await self._process.wait()

    async def stop(self, *, interrupt: bool, kill_delay_ms: int) -> StopReport:
        """Stop the whole tree; return once none of it is left (or after GIVE_UP_S more).

        SIGINT (``interrupt``) or SIGTERM, then SIGCONT, to the group and every process of the
        tree; after ``kill_delay_ms`` SIGKILL to whatever is left. Shielded from cancellation
        (it is bounded), idempotent: later calls return the first report.
        """
        async with self._stop_lock:
            if self._report is None:
                with anyio.CancelScope(shield=True):
                    report = await self._stop(interrupt, kill_delay_ms)
                self._report = report
            return self._report

    async def kill(self) -> None:
        """SIGKILL the whole tree now, even while a polite ``stop()`` is still waiting.

        For a second Ctrl-C: the pending ``stop()`` then sees the tree gone and returns.
        """
        with anyio.CancelScope(shield=True):
            await _kill_tree(self._tree, leader_wait=False)

    async def _stop(self, interrupt: bool, kill_delay_ms: int) -> StopReport:
        started = time.monotonic()
        tree = self._tree
        polite = signal.SIGINT if interrupt else signal.SIGTERM
        deadline = started + max(kill_delay_ms, 0) / 1000
        found = tree.scan()
        tree.send(polite, found)
        tree.send(signal.SIGCONT, found)  # a stopped process would never see the signal
        graceful = await tree.settle(deadline, polite, leader_wait=True)
        killed: set[int] = set()
        survivors: tuple[int, ...] = ()
        if not graceful:
            killed, survivors = await _kill_tree(tree, leader_wait=True)
        return StopReport(
            graceful=graceful,
            duration_ms=(time.monotonic() - started) * 1000,
            killed=len(killed),
            survivors=survivors,
        )


# --------------------------------------------------------------------------- orphan guard


class Guardian:
    """Orphan guard: a tiny separate process that kills every process carrying the token
    when pyair dies, even by SIGKILL.

    It is :mod:`supervisor.guardian_main`, run as ``python -I -S`` (stdlib only, no site, a few
    ms to start), reading frames from a pipe from pyair; at EOF (pyair died or closed it without
    saying bye) it SIGKILLs every process whose environment carries ``PYAIR_TREE=<token>`` (or a
    token nested under it), pass after pass for at most ~2 s, removes the directories it was
    given (``remove_on_exit``), and exits. It runs in its own session, ignores
    SIGINT/SIGTERM/SIGHUP, and does not carry the token itself.
    """

    def __init__(self, popen: subprocess.Popen[bytes], token: str) -> None:
        self._popen = popen
        self.token = token
        self.pid = popen.pid
        self._closed = False

    @classmethod
    def start(cls, token: str) -> Guardian:
        _check_token(token)
        env = {
            name: value
            for name, value in os.environ.items()
            if not (name == TREE_ENV and _value_matches(value, token))
        }
        popen = subprocess.Popen(
            [sys.executable or "python3", "-I", "-S", GUARDIAN_MAIN, token],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env=env,
            start_new_session=True,
        )
        return cls(popen, token)

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def remove_on_exit(self, directory: str) -> None:
        """After its sweep, the guardian also removes ``directory`` (a private one of pyair's,
        with the files in it): pyair SIGKILLed leaves no control directory behind."""
        self._tell({"op": "remove", "path": directory})

    def _tell(self, frame: dict[str, str]) -> None:
        stdin = self._popen.stdin
        assert stdin is not None
        with contextlib.suppress(OSError, ValueError):  # it is gone already, or closed
            stdin.write(encode_frame(frame))
            stdin.flush()

    def close(self, *, kill_tree: bool = False) -> None:
        """Let the guardian go: quietly, or (``kill_tree``) after one last sweep of the tree.

        Blocks until it has exited: a few ms, up to ~2 s for a sweep of a stubborn tree.
        """
        if self._closed:
            return
        self._closed = True
        stdin = self._popen.stdin
        assert stdin is not None
        if not kill_tree:
            self._tell({"op": "bye"})
        with contextlib.suppress(OSError):
            stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=3.0)


# --------------------------------------------------------------------------- open files

OPEN_FILES_WANTED = 65536  # plenty for a proxy; more only slows programs that close every fd


def raise_open_file_limit(wanted: int = OPEN_FILES_WANTED) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE toward its hard limit (at most ``wanted``).

    macOS starts processes at 256, which a browser's keep-alive connections exhaust. Returns
    (before, after); unchanged when the hard limit is already reached or the kernel refuses
    (macOS refuses more than OPEN_MAX under an "unlimited" hard limit: 10240 is tried then).
    The children pyair starts inherit the raised limit.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    for target in (ceiling, min(ceiling, 10240)):
        if soft != resource.RLIM_INFINITY and target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        return soft, target
    return soft, soft


# --------------------------------------------------------------------------- adopted orphans

_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def adopt_orphans(enabled: bool = True) -> bool:
    """Linux: make this process the child subreaper of everything it starts (or stop being it).

    A process of the app tree that daemonizes (double-forks, so its parent exits) is then
    re-parented to this process instead of to init, and stays visible in :func:`child_pids`
    even when it left the session and dropped ``PYAIR_TREE`` from its environment. False where
    the kernel or platform does not support it.
    """
    if not sys.platform.startswith("linux"):  # pragma: no cover - not Linux
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, int(enabled), 0, 0, 0)) == 0
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return False


def child_pids() -> set[int]:
    """Live (not zombie) processes whose parent is this process."""
    me = os.getpid()
    return {pid for pid, entry in _table(None).items() if entry.ppid == me}


def command_line(pid: int, limit: int = 80) -> str:
    """``pid``'s command line, shortened to ``limit`` characters ("?" once it is gone)."""
    try:
        raw = read_proc(pid, "cmdline", 4096)
        line = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    except OSError:
        try:
            line = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            line = ""
    line = " ".join(line.split()) or "?"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def kill_processes(pids: Iterable[int]) -> set[int]:
    """SIGKILL each of ``pids`` and every live descendant of them; the pids signalled."""
    table = _table(None)
    children: dict[int, list[int]] = {}
    for pid, entry in table.items():
        children.setdefault(entry.ppid, []).append(pid)
    todo = [pid for pid in pids if pid in table]
    doomed: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid not in doomed:
            doomed.add(pid)
            todo.extend(children.get(pid, ()))
    doomed -= {0, 1, os.getpid()}
    hit: set[int] = set()
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            hit.add(pid)
    return hit
