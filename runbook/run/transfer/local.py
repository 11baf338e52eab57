"""Transfers on the controller (a ``local`` host): plain file writes, atomic.

The content goes to a new 0600 temp file beside the destination, created ``O_EXCL |
O_NOFOLLOW`` in the directory opened once (a descriptor, not a path), is flushed to
disk, gets its owner and mode on that descriptor, then is renamed over the destination
within the same directory descriptor; any failure removes the temp file and leaves the
destination as it was. A file is read (a fetch's src, a dest to compare) through one
``O_NOFOLLOW`` descriptor, probed and read alike. With ``become`` the same scripts as
over SSH run under ``sudo`` (``scripts``).
"""

from __future__ import annotations

import contextlib
import errno
import grp
import hashlib
import os
import pwd
import secrets
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from runbook.model.command import Command, Outcome
from runbook.model.files import TransferKind
from runbook.run.fdio import write_all
from runbook.run.transfer.backup import keep_backup
from runbook.run.transfer.compare import Decision, Found, decide
from runbook.run.transfer.content import READ_CHUNK, Payload
from runbook.run.transfer.control import (
    TransferFailed,
    Watch,
    describe_os_error,
    pause,
    stderr_text,
)
from runbook.run.transfer.scripts import install_argv, probe_argv, probed, read_argv


def transfer(command: Command, watch: Watch) -> Outcome:
    """One copy or fetch on the controller."""
    tr = command.transfer
    assert tr is not None
    if tr.kind == TransferKind.COPY:
        return _copy_become(command, watch) if command.spec.become else _copy(command, watch)
    return _fetch(command, watch)


# -- copy ------------------------------------------------------------------------------


def _copy(command: Command, watch: Watch) -> Outcome:
    tr = command.transfer
    assert tr is not None
    dest = tr.on_controller(tr.dest)
    payload = Payload.of(tr)
    found = found_at(dest, payload.size, tr.owner, tr.group, watch)
    decision = decide(found, payload.size, payload.sha256, tr)
    backup = None
    if decision.write:
        pause("copy.probed")
        backup = keep_backup(command, dest, found, lambda argv: run(argv, watch))
        atomic_write(dest, payload.chunks(watch), decision)
    return Outcome(rc=0, changed=decision.write, sha256=tr.sha256, backup=backup)


def _copy_become(command: Command, watch: Watch) -> Outcome:
    tr = command.transfer
    assert tr is not None
    dest = tr.on_controller(tr.dest)
    payload = Payload.of(tr)
    found = probed(command, dest, *run(probe_argv(command, dest, payload.size), watch))
    decision = decide(found, payload.size, payload.sha256, tr)
    backup = None
    if decision.write:
        pause("copy.probed")
        backup = keep_backup(command, dest, found, lambda argv: run(argv, watch))
        argv = install_argv(command, dest, payload.size, payload.sha256, decision)
        with _stdin(payload) as stdin:
            rc, out, err = run(argv, watch, stdin=stdin)
        if rc != 0:
            raise TransferFailed(f"cannot write {dest} as {command.spec.user}: {stderr_text(err)}")
    return Outcome(rc=0, changed=decision.write, sha256=tr.sha256, backup=backup)


@contextlib.contextmanager
def _stdin(payload: Payload) -> Iterator[IO[bytes]]:
    """The install script's stdin: the src file itself, or the rendered bytes in an
    unnamed 0600 temp file (a pipe fed by ``communicate`` cannot be resumed after a
    timeout: CPython only writes input passed to the same call)."""
    f: IO[bytes]
    try:
        if payload.data is None:
            assert payload.path is not None
            f = open(payload.path, "rb")  # noqa: SIM115 - closed below, after the process
        else:
            f = tempfile.TemporaryFile()  # noqa: SIM115
            f.write(payload.data)
            f.seek(0)
    except OSError as exc:
        raise TransferFailed(f"cannot read the content: {describe_os_error(exc)}") from None
    with f:
        yield f


# -- fetch -----------------------------------------------------------------------------


def _fetch(command: Command, watch: Watch) -> Outcome:
    """The host's file to the controller; unchanged when dest already has its bytes."""
    tr = command.transfer
    assert tr is not None
    src = tr.on_controller(tr.src)
    dest = tr.on_controller(tr.dest)
    if command.spec.become:
        found = probed(command, src, *run(probe_argv(command, src, None), watch))
        size = found.size or 0
        return receive(src, found, dest, watch, lambda: _become_read(command, src, size, watch))
    with _opened(src, None, None, None, watch) as (fd, found):
        return receive(src, found, dest, watch, lambda: _read(fd, src, watch))


def receive(
    src: str,
    found: Found,
    dest: str,
    watch: Watch,
    download: Callable[[], Iterable[bytes]],
) -> Outcome:
    """The end of every fetch: ``src`` (``found`` by the probe) written atomically to the
    controller's ``dest`` with its mode, or nothing done when dest already has its bytes.
    ``download`` opens the stream of its bytes, only when they are needed; what it sends
    must be exactly the probed file (``as_probed``)."""
    if not found.is_file:
        raise TransferFailed(f"src {src} is not a file that can be read ({found.state})")
    assert found.sha256 is not None and found.mode is not None
    here = found_at(dest, found.size, None, None, watch)
    if here.is_file and here.sha256 == found.sha256:
        return Outcome(rc=0, changed=False, sha256=found.sha256)
    make_parents(dest)
    pause("fetch.probed")
    chunks = as_probed(download(), src, found)
    atomic_write(dest, chunks, Decision(True, found.mode & 0o666, None, None, False))
    return Outcome(rc=0, changed=True, sha256=found.sha256)


def as_probed(chunks: Iterable[bytes], src: str, found: Found) -> Iterator[bytes]:
    """``chunks`` passed through while they can still be the file the probe saw: never
    more than its size (a src swapped for ``/dev/zero`` wrote 1.5 GB in 4 s, issue 24),
    then exactly its size and sha256. Raises ``TransferFailed`` (nothing is written)."""
    size = found.size or 0
    digest = hashlib.sha256()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > size:
            raise TransferFailed(
                f"src {src} sent more than the {size} bytes it had when it was inspected "
                "(replaced by a device or a growing file?); nothing was written"
            )
        digest.update(chunk)
        yield chunk
    if total != size:
        raise TransferFailed(
            f"src {src} ended after {total} of its {size} bytes; nothing was written"
        )
    if digest.hexdigest() != found.sha256:
        raise TransferFailed(f"src {src} changed while it was fetched; nothing was written")


def make_parents(dest: str) -> None:
    try:
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    except OSError as exc:
        why = describe_os_error(exc)
        raise TransferFailed(f"cannot create the directory of {dest}: {why}") from None


def _read(fd: int, path: str, watch: Watch) -> Iterator[bytes]:
    """The bytes of the file open on ``fd``, from its start."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        while block := os.read(fd, READ_CHUNK):
            watch.check()
            yield block
    except OSError as exc:
        raise TransferFailed(f"cannot read {path}: {describe_os_error(exc)}") from None


def _become_read(command: Command, src: str, size: int, watch: Watch) -> Iterator[bytes]:
    """``scripts.READ`` under ``sudo``: at most ``size`` bytes, if src is still the file
    the probe saw."""
    proc = subprocess.Popen(
        read_argv(command, src, size),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while block := os.read(proc.stdout.fileno(), READ_CHUNK):
            watch.check()
            yield block
        err = proc.stderr.read(1 << 16)
        if proc.wait() != 0:
            raise TransferFailed(f"cannot read {src} as {command.spec.user}: {stderr_text(err)}")
    finally:
        _stop(proc)


# -- shared ----------------------------------------------------------------------------

_KINDS = {stat.S_ISDIR: "dir", stat.S_ISREG: "file"}
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def found_at(
    path: str, size: int | None, owner: str | None, group: str | None, watch: Watch
) -> Found:
    """What is at ``path`` here, as the probe script reports it on a host; the content
    is hashed only when its size is ``size`` (``None``: always)."""
    with _opened(path, size, owner, group, watch) as (_, found):
        return found


@contextlib.contextmanager
def _opened(
    path: str, size: int | None, owner: str | None, group: str | None, watch: Watch
) -> Iterator[tuple[int, Found]]:
    """``path`` opened once, never through a symlink (``O_NOFOLLOW``; ``O_NONBLOCK``: a
    FIFO swapped in does not hang the open), and what it is (``found_at``); the fd is
    -1 unless it is a regular file."""
    want_uid, want_gid = _uid(owner), _gid(group)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        fd, state = -1, _unopened(path, exc)
    if fd < 0:
        yield -1, Found(state, want_uid, want_gid)
        return
    try:
        st = os.fstat(fd)
        state = next((name for test, name in _KINDS.items() if test(st.st_mode)), "special")
        if state != "file":
            yield -1, Found(state, want_uid, want_gid)
            return
        os.set_blocking(fd, True)
        sha = None
        if size is None or st.st_size == size:
            sha = _digest(fd, path, watch)
        mode = stat.S_IMODE(st.st_mode)
        yield fd, Found("file", want_uid, want_gid, st.st_size, mode, st.st_uid, st.st_gid, sha)
    finally:
        os.close(fd)


def _unopened(path: str, exc: OSError) -> str:
    """The probe's state for a path that ``_opened`` could not open."""
    if exc.errno == errno.ENOENT:
        return "absent" if os.path.isdir(os.path.dirname(path) or ".") else "noparent"
    if exc.errno == errno.ELOOP or os.path.islink(path):
        return "linkdir" if os.path.isdir(path) else "link"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "unreadable"
    if exc.errno == errno.ENOTDIR:
        return "noparent"
    raise TransferFailed(f"cannot inspect {path}: {describe_os_error(exc)}") from None


def _digest(fd: int, path: str, watch: Watch) -> str:
    h = hashlib.sha256()
    try:
        while block := os.read(fd, READ_CHUNK):
            watch.check()
            h.update(block)
    except OSError as exc:
        raise TransferFailed(f"cannot read {path}: {describe_os_error(exc)}") from None
    return h.hexdigest()


def _uid(owner: str | None) -> int | None:
    if owner is None:
        return None
    try:
        return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise TransferFailed(f"no user {owner!r} on the controller") from None


def _gid(group: str | None) -> int | None:
    if group is None:
        return None
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise TransferFailed(f"no group {group!r} on the controller") from None


def atomic_write(dest: str, chunks: Iterable[bytes], decision: Decision) -> None:
    """Write ``chunks`` to ``dest`` atomically (see the module docstring). Raises
    ``TransferFailed`` (unwritable directory, disk full...) with the temp file removed;
    an error of ``chunks`` itself (a source that failed) passes through as it is."""
    directory, name = os.path.dirname(dest) or ".", os.path.basename(dest)
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise TransferFailed(f"cannot write in {directory}: {describe_os_error(exc)}") from None
    try:
        fd, tmp = _create(dir_fd, name, directory)
        try:
            try:
                for chunk in chunks:
                    _writing(dest, write_all, fd, chunk)
                pause("install.written")
                _writing(dest, _finish, fd, decision)
                pause("install.rename")
                _still(fd, tmp, dir_fd, dest)
            finally:
                os.close(fd)
            _writing(dest, os.replace, tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        with contextlib.suppress(OSError):  # the rename itself survives a crash
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _still(fd: int, tmp: str, dir_fd: int, dest: str) -> None:
    """The temp name still is the file open on ``fd`` (not a link someone put there)."""
    mine = os.fstat(fd)
    try:
        there = os.stat(tmp, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        there = None
    if there is None or (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
        raise TransferFailed(f"the temp file beside {dest} was replaced during the copy")


def _create(dir_fd: int, name: str, directory: str) -> tuple[int, str]:
    """A new 0600 file ``.NAME.runbook-RANDOM`` in ``dir_fd``: ``O_EXCL | O_NOFOLLOW``,
    so never a file or link someone planted there."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(8):
        tmp = f".{name}.runbook-{secrets.token_hex(4)}"
        try:
            return os.open(tmp, flags, 0o600, dir_fd=dir_fd), tmp
        except FileExistsError:
            continue
        except OSError as exc:
            why = describe_os_error(exc)
            raise TransferFailed(f"cannot write in {directory}: {why}") from None
    raise TransferFailed(f"cannot create a temp file in {directory}")


def _writing(dest: str, op: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """One write-side operation; its ``OSError`` becomes the operator's message."""
    try:
        op(*args, **kwargs)
    except OSError as exc:
        raise TransferFailed(f"cannot write {dest}: {describe_os_error(exc)}") from None


def _finish(fd: int, decision: Decision) -> None:
    os.fsync(fd)
    _own(fd, decision)
    os.fchmod(fd, decision.mode)


def _own(fd: int, d: Decision) -> None:
    """Owner first (a chown clears setuid bits), then the caller sets the mode."""
    if d.uid is None and d.gid is None:
        return
    try:
        os.fchown(fd, -1 if d.uid is None else d.uid, -1 if d.gid is None else d.gid)
    except PermissionError:
        if d.strict:
            raise


# -- running the become scripts --------------------------------------------------------


def run(
    argv: list[str], watch: Watch, *, stdin: IO[bytes] | None = None
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` to its end, or until the watch says stop: then TERM it (``sudo``
    relays it; the install script's trap removes its temp file) and raise."""
    proc = subprocess.Popen(
        argv, stdin=stdin or subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=watch.remaining(0.5))
                return proc.returncode, out, err
            except subprocess.TimeoutExpired:
                watch.check()
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
