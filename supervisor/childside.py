"""What pyair's programs outside its own process share: names, ``/proc``, modules, one framing.

Three programs run outside pyair's process, and pyair talks to each of them:

- the agent (``agent/``), inside the app, on the control socket;
- the zygote (``zygote_main.py``), in the app's interpreter, on a socket pair;
- the guardian (``guardian_main.py``), in pyair's interpreter with ``-I -S``, on a pipe.

They share the environment variables pyair sets, the control socket's peer check, ``/proc``
readers, where a module lives, the import-system helper and one wire format::

    frame = encode_frame({"op": "bye"})    # 4-byte big-endian length + compact UTF-8 JSON
    reader = FrameReader()
    reader.feed(chunk)                      # bytes from a socket or a pipe
    for value in reader: ...                # complete frames only; a partial one waits
    channel = FrameChannel(fd)              # the same over a blocking descriptor

:mod:`supervisor.protocol` builds the control socket's messages on these frames.

It runs inside the user's interpreter, so: the standard library only, Python 3.8 syntax, and
nothing imported at the top but ``os`` and ``sys`` (``json`` on first use; not even
``__future__``). pyair imports it as ``supervisor.childside``. The agent's bootstrap, the
zygote and the guardian load it from its file under the private name :data:`PRIVATE_NAME`
(each with a few lines of its own: nothing shared is loaded yet), never by putting pyair's
directory on ``sys.path`` (it would shadow the app's own modules, such as ``config``); the
bootstrap hands that copy to the agent, so an app holds one.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Iterable, Iterator, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

PRIVATE_NAME = "_pyair_childside"  # its name when a program loads it by path

# --------------------------------------------------------------------------- environment

CONTROL_ENV = "PYAIR_CONTROL"  # the control socket's path: the agent connects to it
SERVER_PID_ENV = "PYAIR_PID"  # pyair's pid: the agent talks only to a socket pyair listens on
TREE_ENV = "PYAIR_TREE"  # the tree token every process pyair starts carries (and inherits)
PRELOAD_ENV = "PYAIR_PRELOAD"  # "auto": the agent reports the app's modules for the zygote
AGENT_DEBUG_ENV = "PYAIR_AGENT_DEBUG"  # set: the agent says what it does on stderr
ROOT_ENV = "PYAIR_ROOT"  # the project root: templates under it are pyair's to swap
TEMPLATE_EXT_ENV = "PYAIR_TEMPLATE_EXT"  # comma-separated: the extensions pyair swaps
LISTEN_ENV = "PYAIR_LISTEN"  # "FD:INODE:HOST:PORT": the listening socket pyair holds for the app
BIND_RETRY_ENV = "PYAIR_BIND_RETRY_MS"  # a busy port is retried this long: the old app drains
HELD_BACKLOG = 2048  # the held socket's backlog (uvicorn's default): a restart's queue fits


def format_listen(fd: int, inode: int, host: str, port: int) -> str:
    """The value of :data:`LISTEN_ENV` (a host may be IPv6: it is the part between)."""
    return f"{fd}:{inode}:{host}:{port}"


def parse_listen(value: str) -> "tuple[int, int, str, int] | None":
    """(fd, inode, host, port) from :data:`LISTEN_ENV`; None for anything malformed."""
    fd, _, rest = value.partition(":")
    inode, _, rest = rest.partition(":")
    host, _, port = rest.rpartition(":")
    if not (fd.isdigit() and inode.isdigit() and port.isdigit()):
        return None
    return int(fd), int(inode), host, int(port)


def with_listen_fd(value: str, fd: int) -> str:
    """:data:`LISTEN_ENV`'s value with another descriptor number (the socket got a new one
    when it was passed on: the zygote's child)."""
    return f"{fd}:{value.partition(':')[2]}"


# --------------------------------------------------------------------------- control peers


def peer_credentials(sock: "socket.socket") -> "tuple[int, int, int]":
    """(pid, uid, gid) of the process at the other end of a connected Unix socket: the one that
    connected (seen by the listener), or the one that listens (seen by the one connecting)."""
    import socket
    import struct

    if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", raw)
        return pid, uid, gid
    if sys.platform == "darwin":  # pragma: no cover - not run in CI
        sol_local, local_peercred, local_peerpid = 0, 0x001, 0x002
        pid = sock.getsockopt(sol_local, local_peerpid)
        fmt = "IIh16I"  # struct xucred: version, uid, ngroups, groups[16]
        raw = sock.getsockopt(sol_local, local_peercred, struct.calcsize(fmt))
        _version, uid, _ngroups, *groups = struct.unpack(fmt, raw)
        return pid, uid, groups[0]
    raise OSError("peer credentials are not available on this platform")  # pragma: no cover


class UntrustedListener(OSError):
    """Whoever listens on the control socket is not the pyair that started this process."""


def connect_control(path: str, timeout: "float | None" = None) -> "socket.socket":
    """A connection to pyair's control socket at ``path``, made only once the listener is known
    to be the pyair that started this process: the same uid, and the pid ``SERVER_PID_ENV``
    names. Nothing is sent before that (a socket planted in a shared directory gets nothing).

    ``OSError`` when it cannot connect; ``UntrustedListener`` when someone else listens there.
    """
    import socket

    expected = os.environ.get(SERVER_PID_ENV, "")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        pid, uid, _gid = peer_credentials(sock)
        if uid != os.getuid() or not expected.isdigit() or pid != int(expected):
            raise UntrustedListener(
                f"{path} is not pyair's: pid {pid} (uid {uid}) listens there, "
                f"not pyair (pid {expected or 'unknown'}, uid {os.getuid()}); nothing sent"
            )
    except BaseException:
        sock.close()
        raise
    return sock


# --------------------------------------------------------------------------- /proc

PROC = "/proc"
DEAD_STATES = (b"Z", b"X")  # zombie, dead: exited, whatever holds the pid now
_STAT_STATE, _STAT_START_TIME = 0, 19  # indexes into stat_fields()


def read_proc(pid: "int | str", name: str, limit: int = 1 << 20) -> bytes:
    """``/proc/PID/NAME`` (``pid`` may be ``"self"``), at most ``limit`` bytes; OSError when
    the process is gone or not ours to read."""
    fd = os.open(f"{PROC}/{pid}/{name}", os.O_RDONLY)
    try:
        if limit <= 4096:  # stat, cmdline heads: one read is the whole file
            return os.read(fd, limit)
        chunks = []
        size = 0
        while size < limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def stat_fields(pid: "int | str" = "self", count: int = -1) -> "list[bytes]":
    """``/proc/PID/stat`` from the state field on: "pid (comm) state ppid pgrp ..." (comm may
    hold spaces and parentheses). [0] state, [1] ppid, [2] pgrp, [19] start time in clock
    ticks, [45]/[46] argv's and [47]/[48] the environment's addresses (Linux 3.5+).

    ``count``: split only that many fields off (a scan of every process needs the first few).
    OSError when the process is gone.
    """
    stat = read_proc(pid, "stat", 4096)
    return stat[stat.rfind(b")") + 2 :].split(b" ", count)


def start_ticks(pid: int) -> "int | None":
    """When ``pid`` started (clock ticks since boot), None when it is gone: with the pid, it
    names one process even after the pid is reused."""
    try:
        return int(stat_fields(pid, _STAT_START_TIME + 1)[_STAT_START_TIME])
    except (OSError, IndexError, ValueError):
        return None


def is_gone(pid: int, ticks: "int | None") -> bool:
    """Whether the process that started at ``ticks`` as ``pid`` has exited (a zombie has), or
    its pid belongs to another process now."""
    try:
        fields = stat_fields(pid, _STAT_START_TIME + 1)
        return fields[_STAT_STATE] in DEAD_STATES or int(fields[_STAT_START_TIME]) != ticks
    except (OSError, IndexError, ValueError):
        return True


def token_needles(token: str) -> "tuple[bytes, bytes]":
    """What a NUL-framed ``/proc/PID/environ`` holds when the process carries ``TREE_ENV``
    set to ``token``, or to a token nested under it (``<token>/app-3``)."""
    base = f"\0{TREE_ENV}={token}".encode()
    return base + b"\0", base + b"/"


def carries_token(pid: "int | str", needles: "tuple[bytes, bytes]") -> bool:
    """Whether ``pid``'s environment, as it was exec'd, carries the token of ``needles``
    (``os.environ`` changes never show here; a process that is not ours never matches)."""
    try:
        environ = b"\0" + read_proc(pid, "environ") + b"\0"
    except OSError:  # gone, not ours (PermissionError), a kernel thread
        return False
    return needles[0] in environ or needles[1] in environ


# --------------------------------------------------------------------------- modules


def module_location(module: object) -> str:
    """A module's file, or its first package directory (namespace packages), or ''."""
    file = getattr(module, "__file__", None)
    if isinstance(file, str):
        return file
    try:
        for entry in getattr(module, "__path__", None) or ():
            if isinstance(entry, str):
                return entry
    except Exception:  # a broken __path__ object
        pass
    return ""


def find_spec_past(
    finder: object, fullname: str, path: "Sequence[str] | None", target: "ModuleType | None"
) -> "ModuleSpec | None":
    """For a ``sys.meta_path`` finder that only inspects or wraps imports: the spec the other
    finders would find for ``fullname`` (the first one that answers), skipping ``finder``."""
    for other in sys.meta_path:
        if other is finder:
            continue
        find = getattr(other, "find_spec", None)
        if find is None:
            continue
        spec: ModuleSpec | None = find(fullname, path, target)
        if spec is not None:
            return spec
    return None


def load_source(name: str, path: str, package_dir: "str | None" = None) -> "ModuleType":
    """Run a source file as module ``name`` (a package when ``package_dir`` is given), without
    touching ``sys.path`` or searching it; registered in ``sys.modules`` (and on its parent
    package, as an import would) while and after it runs."""
    try:  # CPython's import system, already loaded: no importlib package import
        from _frozen_importlib import ModuleSpec, module_from_spec
        from _frozen_importlib_external import SourceFileLoader
    except ImportError:  # pragma: no cover - other interpreters
        from importlib.machinery import ModuleSpec, SourceFileLoader
        from importlib.util import module_from_spec

    loader = SourceFileLoader(name, path)
    spec = ModuleSpec(name, loader, origin=path, is_package=package_dir is not None)
    if package_dir is not None:
        spec.submodule_search_locations = [package_dir]
    spec.has_location = True
    module = module_from_spec(spec)
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


# --------------------------------------------------------------------------- frames

HEADER_SIZE = 4  # the payload's length, big-endian
MAX_FRAME = 1 << 20  # the control socket's limit (1 MiB): its peer is only checked, not trusted
ZYGOTE_MAX_FRAME = 1 << 26  # pyair's own socket pair: a big app's module list and file stats


class FrameError(ValueError):
    """A frame that cannot be used (malformed JSON, or a value its reader refuses): log it
    and drop it; the stream stays in step."""


class FrameTooLarge(FrameError):
    """A header announced a frame over the limit: the stream can't be trusted any more (it may
    be garbage), close it."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the {limit}-byte limit")
        self.size = size
        self.limit = limit


def encode_frame(value: object, max_frame: int = MAX_FRAME) -> bytes:
    """One frame: length header + compact JSON. ``FrameTooLarge`` if it would be too big."""
    import json

    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        payload = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (an undecodable file name): escape it
        payload = json.dumps(value, separators=(",", ":")).encode("ascii")
    if len(payload) > max_frame:
        raise FrameTooLarge(len(payload), max_frame)
    return len(payload).to_bytes(HEADER_SIZE, "big") + payload


def decode_frame(payload: bytes) -> "Any":
    """One frame's payload → its JSON value, or ``FrameError``."""
    import json

    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"malformed frame: {exc}") from None
    except RecursionError:
        raise FrameError("malformed frame: nested too deeply") from None


class FrameReader:
    """Sans-IO frame reader: ``feed(bytes)``, then take complete frames.

    Holds at most one header plus ``max_frame`` bytes of payload plus one unread chunk. After
    ``FrameTooLarge`` every later use raises it again.
    """

    __slots__ = ("_broken", "_buf", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._broken: FrameTooLarge | None = None

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        if self._broken is None:
            self._buf += data

    def next_payload(self) -> "bytes | None":
        """The next complete frame's payload, ``None`` if more bytes are needed."""
        if self._broken is not None:
            raise self._broken
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            return None
        size = int.from_bytes(buf[:HEADER_SIZE], "big")
        if size > self.max_frame:
            self._broken = FrameTooLarge(size, self.max_frame)
            self._buf = bytearray()
            raise self._broken
        end = HEADER_SIZE + size
        if len(buf) < end:
            return None
        payload = bytes(buf[HEADER_SIZE:end])
        del buf[:end]
        return payload

    def __iter__(self) -> "Iterator[Any]":
        """The complete frames' values (a ``FrameError`` ends the iteration: iterate again)."""
        while True:
            payload = self.next_payload()
            if payload is None:
                return
            yield decode_frame(payload)


def _socket_of(fd: int) -> "socket.socket":
    import socket

    return socket.socket(fileno=fd)


class FrameChannel:
    """Frames over a blocking descriptor (a socket or one end of a pipe).

    ``takes_fds``: the descriptor is a Unix socket whose peer may pass descriptors along with
    its frames (SCM_RIGHTS); they queue in ``fds``, in the order they came.
    """

    MAX_FDS = 8  # per read

    def __init__(
        self, fd: int, max_frame: int = MAX_FRAME, read_size: int = 65536, takes_fds: bool = False
    ) -> None:
        self.fd = fd
        self.max_frame = max_frame
        self.read_size = read_size
        self.reader = FrameReader(max_frame)
        self.closed = False  # the other end is gone (EOF or a read error)
        self.fds: list[int] = []
        self._sock: socket.socket | None = _socket_of(fd) if takes_fds else None

    def release(self) -> None:
        """Close the descriptor (and the passed ones nobody took), without the socket object
        closing its number again later, when that number may be someone else's."""
        if self._sock is not None:
            self._sock.detach()
            self._sock = None
        for fd in [self.fd, *self.fds]:
            try:  # noqa: SIM105 - no contextlib in the app's interpreter for this
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    def send(self, value: object) -> bool:
        """Write one frame whole; False when the other end is gone (the read side notices)."""
        data = encode_frame(value, self.max_frame)
        while data:
            try:
                sent = os.write(self.fd, data)
            except OSError:
                return False
            data = data[sent:]
        return True

    def read(self) -> "list[Any]":
        """One read: the frames it completed (maybe none). EOF sets ``closed`` first, so a
        ``FrameError`` from a garbled stream never hides the end."""
        self._fill()
        return list(self.reader)

    def receive(self) -> "Any":
        """Block until one frame is complete; its value (``None`` also at EOF)."""
        while True:
            payload = self.reader.next_payload()
            if payload is not None:
                return decode_frame(payload)
            if self.closed:
                return None
            self._fill()

    def _fill(self) -> None:
        try:
            if self._sock is not None:
                chunk = self._receive_with_fds(self._sock)
            else:
                chunk = os.read(self.fd, self.read_size)
        except OSError:
            chunk = b""
        if chunk:
            self.reader.feed(chunk)
        else:
            self.closed = True

    def _receive_with_fds(self, sock: "socket.socket") -> bytes:
        import array
        import socket

        fds = array.array("i")
        space = socket.CMSG_SPACE(self.MAX_FDS * fds.itemsize)
        data, ancdata, _flags, _addr = sock.recvmsg(self.read_size, space)
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % fds.itemsize
                fds.frombytes(payload[:usable])
        self.fds.extend(fds)
        return bytes(data)


# --------------------------------------------------------------------------- the app's own code

_THIRD_PARTY_DIRS = ("site-packages", "dist-packages")
# Never preloaded into a zygote, whatever the app had: they act on import or are not the app's.
SKIPPED = frozenset(
    {"__main__", "__mp_main__", "sitecustomize", "usercustomize", "this", "antigravity"}
)
SKIPPED_PREFIXES = ("_pyair_supervisor", PRIVATE_NAME, "readline", "rlcompleter")


def is_under(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or inside it (both already real paths)."""
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def real_prefixes(root: str, prefixes: "Iterable[str]") -> "list[str]":
    """The interpreter prefixes that hold libraries, not the project (a project under /usr
    keeps its files its own even when the interpreter's prefix is /usr)."""
    found = []
    for prefix in prefixes:
        if not prefix:
            continue
        real = os.path.realpath(prefix)
        if not is_under(root, real) and real not in found:
            found.append(real)
    return found


def is_project_file(path: str, root: str, prefixes: "Sequence[str]") -> bool:
    """Whether ``path`` is the user's own code: under ``root`` (a real path), and not in a
    site-packages directory or an interpreter prefix (a ``.venv`` inside the project)."""
    real = os.path.realpath(path)
    if not is_under(real, root):
        return False
    if any(part in _THIRD_PARTY_DIRS for part in real[len(root) :].split(os.sep)):
        return False
    return not any(is_under(real, prefix) for prefix in prefixes)


def skipped_name(name: str) -> bool:
    """Whether module ``name`` is never preloaded (see ``SKIPPED``)."""
    return (
        name in SKIPPED
        or name.endswith(".__main__")
        or any(name == p or name.startswith(p + ".") for p in SKIPPED_PREFIXES)
    )
