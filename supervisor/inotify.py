"""A small binding to Linux inotify: one non-blocking descriptor, its watches, parsed events.

    with Inotify() as inotify:
        wd = inotify.add_watch("/srv/app", DIRECTORY_EVENTS)
        await anyio.wait_readable(inotify.fd)   # sleeps in the event loop until something happens
        for event in inotify.read():            # everything queued, in the kernel's order
            print(event.wd, mask_names(event.mask), event.cookie, event.name)

Three system calls are all it takes (``inotify_init1``, ``inotify_add_watch``,
``inotify_rm_watch``), reached through ctypes from the C library already loaded in this
process; events are read with ``os.read`` and unpacked with ``struct``. The packages that wrap
the same calls were weighed first: ``inotify_simple`` (about as small, but untyped, and its
``read`` blocks in ``poll()``) and ``asyncinotify`` (it waits through asyncio's
``loop.add_reader``, which ties it to asyncio, where the rest of pyair is anyio). A binding
of this size, typed and tested here, costs less than a dependency to keep current.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from types import TracebackType
from typing import NamedTuple

# Events (inotify(7)).
MODIFY = 0x00000002
ATTRIB = 0x00000004
CLOSE_WRITE = 0x00000008
MOVED_FROM = 0x00000040
MOVED_TO = 0x00000080
CREATE = 0x00000100
DELETE = 0x00000200
DELETE_SELF = 0x00000400
MOVE_SELF = 0x00000800
# Set by the kernel on read events.
UNMOUNT = 0x00002000
Q_OVERFLOW = 0x00004000
IGNORED = 0x00008000
ISDIR = 0x40000000
# Flags of inotify_add_watch.
ONLYDIR = 0x01000000
DONT_FOLLOW = 0x02000000
EXCL_UNLINK = 0x04000000
MASK_ADD = 0x20000000

# What a watched directory reports: its entries' writes, closes, attribute changes (touch),
# creations, deletions and renames, and its own deletion or move. Opens and reads are left
# out: pyair's own reads (exclude_unchanged) and the app's must not wake the watcher up.
DIRECTORY_EVENTS = (
    MODIFY
    | ATTRIB
    | CLOSE_WRITE
    | MOVED_FROM
    | MOVED_TO
    | CREATE
    | DELETE
    | DELETE_SELF
    | MOVE_SELF
    | ONLYDIR
    | EXCL_UNLINK
)

_NAMES = {
    MODIFY: "MODIFY",
    ATTRIB: "ATTRIB",
    CLOSE_WRITE: "CLOSE_WRITE",
    MOVED_FROM: "MOVED_FROM",
    MOVED_TO: "MOVED_TO",
    CREATE: "CREATE",
    DELETE: "DELETE",
    DELETE_SELF: "DELETE_SELF",
    MOVE_SELF: "MOVE_SELF",
    UNMOUNT: "UNMOUNT",
    Q_OVERFLOW: "Q_OVERFLOW",
    IGNORED: "IGNORED",
    ISDIR: "ISDIR",
}

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (of the NUL-padded name that follows)
_READ_SIZE = 64 * 1024  # whole events only: the kernel never splits one across reads


class Event(NamedTuple):
    wd: int  # -1 for Q_OVERFLOW
    mask: int
    cookie: int  # pairs a MOVED_FROM with its MOVED_TO
    name: str  # the entry in the watched directory; "" for the directory itself


def mask_names(mask: int) -> str:
    """``MOVED_TO|ISDIR`` for debug lines."""
    return "|".join(name for bit, name in _NAMES.items() if mask & bit) or hex(mask)


def parse(data: bytes) -> list[Event]:
    """Unpack the events in a buffer read from an inotify descriptor."""
    events = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        wd, mask, cookie, length = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        raw = data[offset : offset + length].split(b"\0", 1)[0]
        offset += length
        events.append(Event(wd, mask, cookie, os.fsdecode(raw)))
    return events


class _Libc:
    """The three inotify calls of the C library this interpreter already uses."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.init1 = libc.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.init1.restype = ctypes.c_int
        self.add_watch = libc.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add_watch.restype = ctypes.c_int
        self.rm_watch = libc.inotify_rm_watch
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self.rm_watch.restype = ctypes.c_int


_libc: _Libc | None = None


def _calls() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


def _error(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


class Inotify:
    """One inotify instance (a non-blocking, close-on-exec descriptor)."""

    def __init__(self) -> None:
        calls = _calls()
        while (fd := calls.init1(os.O_NONBLOCK | os.O_CLOEXEC)) < 0:
            if ctypes.get_errno() != errno.EINTR:
                raise _error("inotify_init1")
        self.fd: int = int(fd)
        self._calls = calls

    def fileno(self) -> int:
        return self.fd

    def add_watch(self, path: str, mask: int) -> int:
        """Watch ``path``; returns its watch descriptor (the same one again for the same
        inode). Raises OSError: ENOENT/ENOTDIR (gone), ENOSPC (max_user_watches), EACCES..."""
        encoded = os.fsencode(path)
        while (wd := self._calls.add_watch(self.fd, encoded, mask)) < 0:
            if ctypes.get_errno() != errno.EINTR:
                raise _error(f"inotify_add_watch {path}")
        return int(wd)

    def rm_watch(self, wd: int) -> None:
        """Stop a watch; one the kernel already dropped (its directory is gone) is fine."""
        if self._calls.rm_watch(self.fd, wd) < 0 and ctypes.get_errno() not in (
            errno.EINVAL,
            errno.EBADF,
        ):
            raise _error("inotify_rm_watch")

    def read(self) -> list[Event]:
        """Every event queued now, in order; [] when there is none (never blocks)."""
        chunks = []
        while True:
            try:
                chunk = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if not chunk:
                break
            chunks.append(chunk)
            if len(chunk) < _READ_SIZE // 2:
                break  # drained: a read that small left nothing behind
        return [event for chunk in chunks for event in parse(chunk)]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Inotify:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
