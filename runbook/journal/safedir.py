"""Journal directories that nobody else can plant, and one apply per runbook at a time.

A journal is read back by ``--resume`` and then *run*, often as root: a directory another
user controls (a symlink into it, one they own, one they can write to) would let them
edit ``plan.json``. So, as OpenSSH's StrictModes does for ``~/.ssh``, such a directory is
refused; ours are created 0700 and files 0600.

The run lock is an ``flock`` on one file per runbook inside the journal root: the kernel
releases it when the controller dies, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import os
import socket
import stat
from pathlib import Path

from runbook.errors import JournalError

DIR_MODE = 0o700
FILE_MODE = 0o600


def check_dir(path: Path) -> None:
    """Refuse a directory that is a symlink, not ours, or writable by group or others."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise JournalError(f"cannot write the run journal in {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise JournalError(f"journal directory {path} is a symlink; refusing to follow it")
    if not stat.S_ISDIR(st.st_mode):
        raise JournalError(f"journal path {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise JournalError(
            f"journal directory {path} belongs to uid {st.st_uid}, not to you "
            f"(uid {os.geteuid()}); refusing to use it"
        )
    if st.st_mode & 0o022:
        raise JournalError(
            f"journal directory {path} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); fix with: chmod go-w {path}"
        )


def secure_tree(root: Path, parents: int) -> None:
    """Check ``root`` and its ``parents`` nearest ancestors (the ones runbook creates,
    ``.runbook`` for the default root); create the missing ones 0700."""
    chain = [root, *list(root.parents)[:parents]]
    for d in reversed(chain):
        check_dir(d)
    for d in reversed(chain):
        if not d.exists():
            try:
                d.mkdir(mode=DIR_MODE)
            except FileExistsError:
                pass
            except OSError as exc:
                raise JournalError(f"cannot write the run journal in {d}: {exc.strerror}") from None
            check_dir(d)


def check_file(path: Path) -> None:
    """A journal file to trust on reading: ours, a regular file, not writable by others."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise JournalError(
            f"refusing journal file {path}: not a regular file of yours that only you can write"
        )


def create_file(path: Path) -> int:
    """Open a new journal file 0600, never through a symlink, never an existing file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, FILE_MODE)


class RunLock:
    """Held while one ``apply`` of a runbook runs; a second one is refused, naming it."""

    def __init__(self, root: Path, runbook_path: str) -> None:
        real = os.path.realpath(runbook_path)
        tag = hashlib.sha256(real.encode()).hexdigest()[:12]
        self.path = root / f"{Path(real).stem}-{tag}.lock"
        self._fd: int | None = None

    def acquire(self, run_id: str) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise JournalError(
                f"cannot write the run journal in {self.path.parent}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another run"
            os.close(fd)
            raise JournalError(
                f"this runbook is being applied already: {holder}; wait for it to finish "
                f"(the lock is {self.path})"
            ) from None
        who = f"run {run_id} by {getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()})"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, who.encode() + b"\n", 0)
        except OSError as exc:
            os.close(fd)
            raise JournalError(
                f"cannot write the run journal in {self.path.parent}: {exc.strerror}"
            ) from None
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing releases the flock
