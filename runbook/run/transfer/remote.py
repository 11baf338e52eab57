"""Transfers over SSH, on the host's existing paramiko connection.

The probe (``scripts.PROBE``: what is at the path, its sha256) runs on an exec channel,
under ``sudo`` with ``become``, so an unchanged file costs one round trip and no SFTP.
A copy then streams the content down an exec channel into ``cat`` writing a new 0600
temp file beside ``dest`` (opened O_EXCL: never through a planted file; a plain channel
costs less than half the controller CPU of paramiko's SFTP writes), and over SFTP sets
owner and mode, and renames it over ``dest`` with ``posix-rename@openssh.com``. With
``become`` the content goes to a private 0600 temp file of the login user instead, and
``scripts.INSTALL`` (under ``sudo``) reads it from a descriptor the login shell opened,
writes a temp name beside ``dest`` and ``mv -f``s it.

A fetch reads ``cat`` (``sudo cat`` with ``become``) on an exec channel,
into an atomic write on the controller (``local.receive``, as a local fetch).
"""

from __future__ import annotations

import contextlib
import secrets
import select
import socket
from collections.abc import Iterable, Iterator
from typing import Protocol

import paramiko

from runbook.errors import ConnectError, ConnectionLost
from runbook.model.command import Command, Outcome
from runbook.model.files import TransferKind
from runbook.run.shell import sudo_prefix
from runbook.run.transfer.backup import keep_backup
from runbook.run.transfer.compare import Decision, Found, decide
from runbook.run.transfer.content import READ_CHUNK, Payload
from runbook.run.transfer.control import TransferFailed, Watch, stderr_text
from runbook.run.transfer.local import receive
from runbook.run.transfer.scripts import install_argv, probe_argv, probed, wire

IO_WAIT = 30.0  # seconds a single SFTP request may wait before the host counts as gone
PRIVATE_DIRS = ("/var/tmp", "/tmp")  # where become uploads go first (disk, then tmpfs)


class Link(Protocol):
    """What a transfer needs of an SSH connection (``ssh_run.Connection``)."""

    @property
    def transport(self) -> paramiko.Transport: ...


def transfer(link: Link, command: Command, watch: Watch) -> Outcome:
    """One copy or fetch over ``link``. Raises ``ConnectError`` if the connection is (or
    goes) away; ``ConnectionLost`` once something may have been written."""
    tr, host = command.transfer, command.host.name
    assert tr is not None
    if not link.transport.is_active():
        raise ConnectError(host, "connection lost before the transfer started")
    try:
        if tr.kind == TransferKind.COPY:
            return _copy(link, command, watch)
        return _fetch(link, command, watch)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        if not link.transport.is_active():
            raise ConnectionLost(host, f"connection lost during the {tr.kind}: {exc}") from exc
        if isinstance(exc, socket.timeout):
            watch.check()  # our deadline: TimedOut; else the host stopped answering
            raise TransferFailed(f"the host did not answer for {IO_WAIT:g}s") from None
        raise TransferFailed(_describe(exc)) from None


# -- copy ------------------------------------------------------------------------------


def _copy(link: Link, command: Command, watch: Watch) -> Outcome:
    tr = command.transfer
    assert tr is not None
    payload = Payload.of(tr)
    found = _probe(link, command, tr.dest, payload.size, watch)
    decision = decide(found, payload.size, payload.sha256, tr)
    backup = None
    if decision.write:
        backup = keep_backup(
            command, tr.dest, found, lambda argv: run_remote(link, wire(argv), watch)
        )
        with _sftp(link, watch) as sftp:
            if command.spec.become:
                _install_as(link, sftp, command, payload, decision, watch)
            else:
                _upload_beside(link, sftp, tr.dest, payload, decision, watch)
    return Outcome(rc=0, changed=decision.write, sha256=tr.sha256, backup=backup)


def _upload_beside(
    link: Link,
    sftp: paramiko.SFTPClient,
    dest: str,
    payload: Payload,
    d: Decision,
    watch: Watch,
) -> None:
    """Temp file beside ``dest``, owner and mode, then rename: atomic for readers."""
    directory, name = dest.rsplit("/", 1)
    tmp = f"{directory or ''}/.{name}.runbook-{secrets.token_hex(4)}"
    _upload(link, sftp, tmp, payload, watch)
    try:
        if d.uid is not None or d.gid is not None:
            _chown(sftp, tmp, d)
        sftp.chmod(tmp, d.mode)
        _rename(sftp, tmp, dest)
    except BaseException:
        _remove(sftp, tmp)
        raise


def _install_as(
    link: Link,
    sftp: paramiko.SFTPClient,
    command: Command,
    payload: Payload,
    d: Decision,
    watch: Watch,
) -> None:
    """``become``: a private upload, then the install script as the become user."""
    tr = command.transfer
    assert tr is not None
    private = f"{_private_dir(sftp)}/.runbook-{secrets.token_hex(8)}"
    try:
        _upload(link, sftp, private, payload, watch)
        argv = install_argv(command, tr.dest, payload.size, payload.sha256, d)
        rc, _, err = run_remote(link, wire(argv, private), watch)
        if rc != 0:
            raise TransferFailed(
                f"cannot write {tr.dest} as {command.spec.user}: {stderr_text(err)}"
            )
    finally:
        _remove(sftp, private)


# The upload's only command line: the path (a random temp name) is its one argument; the
# content comes on stdin. fd 3 is opened once, O_EXCL (``set -C``) and 0600 (umask), so a
# planted file or symlink is never written through; 97 says nothing was created.
UPLOAD = 'set -C; umask 077; command exec 3> "$1" || exit 97; exec cat >&3'
NOT_CREATED = 97


def _upload(
    link: Link, sftp: paramiko.SFTPClient, path: str, payload: Payload, watch: Watch
) -> None:
    """Stream ``payload`` into a new 0600 file; removed again if anything fails.

    The bytes go down an exec channel into ``cat``, not through SFTP: paramiko's SFTP
    writes cost 2.3x the controller CPU of a plain channel for the same bytes
    (benchmarks/README.md, "Copy"). A full disk fails ``cat``: its exit status says so."""
    created = True
    try:
        line = wire(["/bin/sh", "-c", UPLOAD, "sh", path])
        status, _, err = run_remote(link, line, watch, stdin=payload.chunks(watch))
        if status != 0:
            created = status != NOT_CREATED
            raise TransferFailed(f"cannot write {path}: {stderr_text(err)} (exit {status})")
        written = sftp.stat(path).st_size  # as paramiko's own putfo(confirm=True) does
        if written != payload.size:
            raise TransferFailed(f"the host stored {written} of {payload.size} bytes of {path}")
    except BaseException:
        if created:
            _remove(sftp, path)
        raise


def _chown(sftp: paramiko.SFTPClient, path: str, d: Decision) -> None:
    st = sftp.stat(path)
    uid = d.uid if d.uid is not None else int(st.st_uid or 0)
    gid = d.gid if d.gid is not None else int(st.st_gid or 0)
    try:
        sftp.chown(path, uid, gid)
    except OSError:
        if d.strict:
            raise TransferFailed(f"cannot set owner {uid}:{gid} on {path}") from None


def _rename(sftp: paramiko.SFTPClient, tmp: str, dest: str) -> None:
    try:
        sftp.posix_rename(tmp, dest)
    except OSError as exc:
        raise TransferFailed(f"cannot rename the temp file to {dest}: {_describe(exc)}") from None


def _remove(sftp: paramiko.SFTPClient, path: str) -> None:
    with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
        sftp.remove(path)


def _private_dir(sftp: paramiko.SFTPClient) -> str:
    for directory in PRIVATE_DIRS:
        with contextlib.suppress(OSError):
            sftp.stat(directory)
            return directory
    return sftp.normalize(".")  # the login user's home


# -- fetch -----------------------------------------------------------------------------


def _fetch(link: Link, command: Command, watch: Watch) -> Outcome:
    """The host's file to the controller; unchanged when dest already has its bytes."""
    tr = command.transfer
    assert tr is not None
    found = _probe(link, command, tr.src, None, watch)
    dest = tr.on_controller(tr.dest)
    return receive(
        tr.src,
        found,
        dest,
        watch,
        lambda: _download(link, command, tr.src, watch),
    )


def _download(link: Link, command: Command, src: str, watch: Watch) -> Iterator[bytes]:
    """``src``'s bytes from ``cat`` on an exec channel (under ``sudo`` with ``become``):
    paramiko's channel window bounds what waits in memory (an SFTP prefetch of a whole
    file held up to all of it when the disk was slower than the link: 1 GiB of RSS)."""
    return stream_remote(link, wire([*sudo_prefix(command), "cat", "--", src]), watch)


@contextlib.contextmanager
def _sftp(link: Link, watch: Watch) -> Iterator[paramiko.SFTPClient]:
    try:
        sftp = paramiko.SFTPClient.from_transport(link.transport)
    except paramiko.SSHException as exc:
        if not link.transport.is_active():
            raise
        raise TransferFailed(
            f"the host refused an SFTP session ({exc}): is sshd's sftp Subsystem configured?"
        ) from None
    if sftp is None:
        raise TransferFailed("the host refused an SFTP session")
    try:
        sftp.get_channel().settimeout(watch.remaining(IO_WAIT))  # type: ignore[union-attr]
        yield sftp
    finally:
        sftp.close()


def _probe(link: Link, command: Command, path: str, size: int | None, watch: Watch) -> Found:
    return probed(command, path, *run_remote(link, wire(probe_argv(command, path, size)), watch))


def run_remote(
    link: Link, line: str, watch: Watch, stdin: Iterable[bytes] | None = None
) -> tuple[int, bytes, bytes]:
    """Run ``line`` on an exec channel, ``stdin`` sent to it; (exit status, stdout, stderr)."""
    out = bytearray()
    stream = _Stream(link, line, watch, stdin)
    for chunk in stream:
        out += chunk
    return stream.status, bytes(out), bytes(stream.err)


def stream_remote(link: Link, line: str, watch: Watch) -> Iterator[bytes]:
    """``line``'s stdout in chunks; raises ``TransferFailed`` if it exits non-zero."""
    stream = _Stream(link, line, watch)
    yield from stream
    if stream.status != 0:
        raise TransferFailed(f"{stderr_text(bytes(stream.err))} (exit {stream.status})")


class _Stream:
    """One exec channel: ``stdin`` sent, stdout yielded as it comes, stderr kept, the exit
    status (read after the channel's EOF: sshd may send it before the last stderr)."""

    def __init__(
        self, link: Link, line: str, watch: Watch, stdin: Iterable[bytes] | None = None
    ) -> None:
        self.link, self.line, self.watch, self.stdin = link, line, watch, stdin
        self.err = bytearray()
        self.status = -1

    def __iter__(self) -> Iterator[bytes]:
        chan = self.link.transport.open_session(timeout=self.watch.remaining(IO_WAIT))
        try:
            chan.exec_command(self.line)
            self._send(chan)
            poller = select.poll()
            poller.register(chan.fileno(), select.POLLIN)
            while True:
                if chan.recv_ready():
                    yield chan.recv(READ_CHUNK)
                elif chan.recv_stderr_ready():
                    self.err += chan.recv_stderr(READ_CHUNK)
                elif chan.closed or (chan.eof_received and chan.exit_status_ready()):
                    break  # EOF comes after the last data; the status may come before it
                else:
                    self._wait(chan, poller)
            self.status = chan.recv_exit_status()
        finally:
            chan.close()

    def _send(self, chan: paramiko.Channel) -> None:
        if self.stdin is None:
            chan.shutdown_write()
            return
        chan.settimeout(self.watch.remaining(IO_WAIT))  # a host that stops reading
        with contextlib.suppress(OSError, EOFError):  # it ended early: its status says why
            for chunk in self.stdin:
                chan.sendall(chunk)
            chan.shutdown_write()

    def _wait(self, chan: paramiko.Channel, poller: select.poll) -> None:
        self.watch.check()
        if not self.link.transport.is_active():
            raise EOFError("the connection closed")
        left = self.watch.remaining(0.5) or 0.5
        if chan.eof_received:  # the fd stays readable after EOF: wait for the status
            chan.status_event.wait(left)
        else:
            poller.poll(left * 1000)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    if text in ("Failure", "[Errno None] Failure"):  # SFTP v3 has no code for a full disk
        return "the server reported a failure (disk full? quota?)"
    return text or type(exc).__name__
