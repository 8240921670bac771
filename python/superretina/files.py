"""Reading the files a user names: regular files only, their size checked before any byte is read.

A FIFO, a character device (``/dev/zero``), a socket or a folder given as an image, a config or
a pair list would otherwise block forever (a FIFO waits for a writer) or grow without bound
(``/dev/zero``). The file is opened without blocking, checked with ``fstat`` on the opened
descriptor (so a file swapped after a check is still the one checked), and read up to a limit.
"""
from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class InputFileError(ValueError):
    """The file is not a regular file, or larger than allowed. The message does not name the file:
    callers raise their own one-line error type with it (``f"{path}: {exc}"``)."""


class FileTooLarge(InputFileError):
    """The file is larger than the reader allows."""


def kind_of(mode: int) -> str:
    """'a folder', 'a FIFO (named pipe)', ... of a ``st_mode``; 'a regular file' for a regular file."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def open_regular(path: str | Path) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading if it is a regular file; returns (fd, its fstat).

    Raises
    ------
    OSError
        Missing, no permission (as ``open`` raises them).
    InputFileError
        Not a regular file ("is a FIFO (named pipe), expected a regular file").
    """
    # O_NONBLOCK: opening a FIFO for reading blocks until a writer appears; without it we would
    # hang before fstat could tell us what it is.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(f"is {kind_of(st.st_mode)}, expected a regular file")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: str | Path, max_bytes: int, what: str = "file") -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file of at most ``max_bytes``, and the ``fstat`` of what was read.

    Parameters
    ----------
    path : str or Path
    max_bytes : int
        Larger files are refused from their size, unread; a file growing while it is read is
        cut at ``max_bytes + 1`` bytes and refused as well.
    what : str
        Named in the size message ("config", "pair list", ...).

    Returns
    -------
    (bytes, os.stat_result)
        The stat is taken on the open descriptor before reading: size and mtime of the bytes read.

    Raises
    ------
    OSError, InputFileError
        As :func:`open_regular`; InputFileError also for a file over ``max_bytes``.
    """
    fd, st = open_regular(path)
    try:
        if st.st_size > max_bytes:
            raise FileTooLarge(f"{what} is {_size(st.st_size)}; at most {_size(max_bytes)} is read")
        chunks, left = [], max_bytes + 1
        # First read: the whole file at once (one block, no copy when joined); procfs-like files
        # that report size 0 are read in blocks up to the limit.
        want = min(left, st.st_size + 1 if st.st_size else 1 << 16)
        while left > 0:
            block = os.read(fd, want)
            if not block:
                break
            chunks.append(block)
            left -= len(block)
            want = min(left, 1 << 24)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if len(data) > max_bytes:
            raise FileTooLarge(f"{what} grew beyond {_size(max_bytes)} while it was read")
        return data, st
    finally:
        os.close(fd)


def _size(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n} bytes"
