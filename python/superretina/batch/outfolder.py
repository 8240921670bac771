"""The output folder of a batch or FIRE run: held by one run at a time, written only in real folders.

Two runs on one ``--out`` would delete each other's partial folders and replace each other's
pair folders (5 of 10 pairs lost their result.json in the reproduction of issue 20). A run
takes an exclusive ``flock`` on ``OUT/.superretina.lock`` for as long as it writes; the file
holds who took it (pid, host, start time, command), so a second run is refused with a line
naming the holder. The kernel drops the lock when the holder exits, SIGKILL included, so a
killed run never leaves a stale lock; the file itself stays (removing it would let a third run
lock a new file while a second still holds the old one).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import socket
import stat
import sys
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ..files import kind_of
from ..outputs import missing_folders, remove_empty
from .pairs import BatchInputError

LOCK_NAME = ".superretina.lock"
# Folders held by this process, per thread: a claim by the thread holding the folder nests;
# another thread's claim is a second flock on the file and is refused like another process's.
_HELD: dict[tuple[int, int, int], int] = {}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class FolderBusy(BatchInputError):
    """Another run holds the output folder: one line naming it, exit 2."""


def _holder_line() -> str:
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    command = " ".join(sys.argv)[:300]
    return " ".join(f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {command}".split())


@contextmanager
def claim_out(out: str | Path):
    """Create ``out`` if needed and hold it exclusively while the block runs.

    A claim inside a claim of the same folder by the same thread nests (holds it once).

    Raises
    ------
    BatchInputError
        ``out`` is a file, cannot be created, or its lock file is not a regular file.
    FolderBusy
        Another run (this process or another, on this machine or another sharing the folder)
        holds it; the message names that run.

    A folder this call created is removed again when the block raises before writing anything
    into it (a refused run leaves no empty --out behind).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BatchInputError(f"{out}: --out must be a folder, and this is a file")
    created = missing_folders(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchInputError(f"{out}: cannot create the --out folder ({exc.strerror or exc})") from None
    st = os.stat(out)
    key = (st.st_dev, st.st_ino, threading.get_ident())
    if key in _HELD:   # this thread holds it already (the CLI claims before opening the engine)
        _HELD[key] += 1
        try:
            yield out
        finally:
            _HELD[key] -= 1
        return
    try:
        fd = _lock(out)
        _HELD[key] = 1
        try:
            yield out
        finally:
            del _HELD[key]
            os.close(fd)   # releases the flock
    except BaseException:
        if created:
            remove_if_empty(out)
            remove_empty(created[1:])
        raise


def _lock(out: Path) -> int:
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
    except OSError as exc:
        raise BatchInputError(f"{path}: cannot open the run's lock file ({exc.strerror or exc}); "
                              "--out must be a writable folder") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BatchInputError(f"{path}: is {kind_of(st.st_mode)}, expected the run's lock file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 1024, 0).decode("utf-8", errors="replace").strip() or "a process that did not say"
            raise FolderBusy(f"{out}: in use by another run ({holder}); wait for it to end or use another "
                             "--out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (_holder_line() + "\n").encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_if_empty(out: Path) -> None:
    """Remove ``out`` if nothing but the lock file is in it (a run refused before it wrote anything)."""
    try:
        names = os.listdir(out)
        if names in ([], [LOCK_NAME]):
            for name in names:
                os.unlink(out / name)
            os.rmdir(out)
    except OSError:
        pass


def real_folder(path: Path) -> Path:
    """``path`` as a folder of its own, created if absent: a symbolic link (or a file, a FIFO) in its
    place is refused, so that nothing is written or deleted inside a link's target."""
    path = Path(path)
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except OSError as exc:
        raise BatchInputError(f"{path}: cannot create the folder ({exc.strerror or exc})") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else kind_of(st.st_mode)
        raise BatchInputError(f"{path}: is {what}; a run writes only into real folders inside --out "
                              "(remove it, or use another --out)")
    return path


def remove_tree(path: Path) -> None:
    """Remove ``path``: a link or file itself (never its target), a folder with what it holds
    (``shutil.rmtree`` does not follow the links inside)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
