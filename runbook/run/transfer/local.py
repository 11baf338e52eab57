"""Transfers on the controller (a ``local`` host): plain file writes, atomic.

The content goes to a 0600 temp file beside the destination (``mkstemp``), is flushed
to disk, gets its owner and mode, then is renamed over the destination; any failure
removes the temp file and leaves the destination as it was. With ``become`` the same
probe and install scripts as over SSH run under ``sudo`` (``scripts``).
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
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
from runbook.run.transfer.control import TransferFailed, Watch, describe_os_error, stderr_text
from runbook.run.transfer.scripts import install_argv, probe_argv, probed


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
        chunks = _become_cat(command, src, watch)
    else:
        found = found_at(src, None, None, None, watch)
        chunks = _read(src, watch)
    return receive(src, found, dest, watch, lambda: chunks)


def receive(
    src: str,
    found: Found,
    dest: str,
    watch: Watch,
    download: Callable[[], Iterable[bytes]],
) -> Outcome:
    """The end of every fetch: ``src`` (``found`` by the probe) written atomically to the
    controller's ``dest`` with its mode, or nothing done when dest already has its bytes.
    ``download`` opens the stream of its bytes, only when they are needed."""
    if not found.is_file:
        raise TransferFailed(f"src {src} is not a file that can be read ({found.state})")
    assert found.sha256 is not None and found.mode is not None
    here = found_at(dest, found.size, None, None, watch)
    if here.is_file and here.sha256 == found.sha256:
        return Outcome(rc=0, changed=False, sha256=found.sha256)
    make_parents(dest)
    digest = hashlib.sha256()
    atomic_write(
        dest, hashed(download(), digest), Decision(True, found.mode & 0o666, None, None, False)
    )
    return Outcome(rc=0, changed=True, sha256=digest.hexdigest())


def make_parents(dest: str) -> None:
    try:
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    except OSError as exc:
        why = describe_os_error(exc)
        raise TransferFailed(f"cannot create the directory of {dest}: {why}") from None


def _read(path: str, watch: Watch) -> Iterator[bytes]:
    try:
        with open(path, "rb") as f:
            while block := f.read(READ_CHUNK):
                watch.check()
                yield block
    except OSError as exc:
        raise TransferFailed(f"cannot read {path}: {describe_os_error(exc)}") from None


def hashed(chunks: Iterable[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    """``chunks`` passed through, each added to ``digest``."""
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _become_cat(command: Command, src: str, watch: Watch) -> Iterator[bytes]:
    from runbook.run.shell import sudo_prefix

    argv = [*sudo_prefix(command), "cat", "--", src]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while block := proc.stdout.read(READ_CHUNK):
            watch.check()
            yield block
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise TransferFailed(f"cannot read {src} as {command.spec.user}: {stderr_text(err)}")
    finally:
        _stop(proc)


# -- shared ----------------------------------------------------------------------------


def found_at(
    path: str, size: int | None, owner: str | None, group: str | None, watch: Watch
) -> Found:
    """What is at ``path`` here, as the probe script reports it on a host; the content
    is hashed only when its size is ``size`` (``None``: always)."""
    want_uid, want_gid = _uid(owner), _gid(group)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        parent = os.path.isdir(os.path.dirname(path) or ".")
        return Found("absent" if parent else "noparent", want_uid, want_gid)
    except OSError as exc:
        raise TransferFailed(f"cannot inspect {path}: {describe_os_error(exc)}") from None
    kinds = {stat.S_ISLNK: "link", stat.S_ISDIR: "dir", stat.S_ISREG: "file"}
    state = next((name for test, name in kinds.items() if test(st.st_mode)), "special")
    if state != "file":
        return Found(state, want_uid, want_gid)
    sha = None
    if size is None or st.st_size == size:
        try:
            sha = _digest(path, watch)
        except PermissionError:
            return Found("unreadable", want_uid, want_gid)
    mode = stat.S_IMODE(st.st_mode)
    return Found("file", want_uid, want_gid, st.st_size, mode, st.st_uid, st.st_gid, sha)


def _digest(path: str, watch: Watch) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(READ_CHUNK):
            watch.check()
            h.update(block)
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
    directory = os.path.dirname(dest) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.runbook-", dir=directory)
    except OSError as exc:
        raise TransferFailed(f"cannot write in {directory}: {describe_os_error(exc)}") from None
    try:
        try:
            for chunk in chunks:
                _writing(dest, write_all, fd, chunk)
            _writing(dest, _finish, fd, decision)
        finally:
            os.close(fd)
        _writing(dest, os.replace, tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a crash
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _writing(dest: str, op: Callable[..., object], *args: Any) -> None:
    """One write-side operation; its ``OSError`` becomes the operator's message."""
    try:
        op(*args)
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
