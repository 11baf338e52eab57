"""Transfers over SSH, on the host's existing paramiko connection: exec channels only.

The probe (``scripts.PROBE``: what is at the path, its sha256) runs on an exec channel,
under ``sudo`` with ``become``, so an unchanged file costs one round trip. A copy then
streams the content down a second exec channel into ``scripts.INSTALL``, which writes
a new 0600 temp file beside ``dest`` and sets owner and mode and renames it through
descriptors (a plain channel costs less than half the controller CPU of paramiko's
SFTP writes, and SFTP's setstat follows a symlink swapped in by whoever owns the
directory). With ``become`` the login user's ``scripts.STAGE`` keeps the content in a
nameless private file and ``sudo`` runs the install on it.

A fetch reads ``scripts.READ`` (under ``sudo`` with ``become``) on an exec channel into
``localfs.receive``, which takes no more than the probed size and checks its sha256.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Iterable, Iterator
from typing import Protocol

import paramiko

from runbook.errors import ConnectError, ConnectionLost
from runbook.model.command import Command, Outcome
from runbook.model.files import TransferKind
from runbook.run.transfer.backup import keep_backup
from runbook.run.transfer.compare import Found, decide
from runbook.run.transfer.content import READ_CHUNK, Payload
from runbook.run.transfer.control import TransferFailed, Watch, pause, stderr_text
from runbook.run.transfer.local import receive
from runbook.run.transfer.scripts import (
    install_argv,
    probe_argv,
    probed,
    read_argv,
    staged,
    wire,
)

IO_WAIT = 30.0  # seconds a single request may wait before the host counts as gone
REPLY_MAX = 1 << 16  # bytes of stdout and of stderr kept of a helper script (one line)


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
        pause("copy.probed")
        backup = keep_backup(
            command, tr.dest, found, lambda argv: run_remote(link, wire(argv), watch)
        )
        argv = install_argv(command, tr.dest, payload.size, payload.sha256, decision)
        if command.spec.become:
            argv = staged(argv)
        rc, _, err = run_remote(link, wire(argv), watch, stdin=payload.chunks(watch))
        if rc != 0:
            who = f" as {command.spec.user}" if command.spec.become else ""
            raise TransferFailed(f"cannot write {tr.dest}{who}: {stderr_text(err)} (exit {rc})")
    return Outcome(rc=0, changed=decision.write, sha256=tr.sha256, backup=backup)


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
        lambda: _download(link, command, tr.src, found.size or 0, watch),
    )


def _download(link: Link, command: Command, src: str, size: int, watch: Watch) -> Iterator[bytes]:
    """``src``'s bytes from ``scripts.READ`` on an exec channel (under ``sudo`` with
    ``become``): paramiko's channel window bounds what waits in memory (an SFTP prefetch
    of a whole file held up to all of it when the disk was slower than the link)."""
    return stream_remote(link, wire(read_argv(command, src, size)), watch)


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
        if len(out) > REPLY_MAX:  # a probe prints one line: this host is not ours to trust
            raise TransferFailed(f"the host sent more than {REPLY_MAX} bytes for {line[:40]!r}")
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
                    data = chan.recv_stderr(READ_CHUNK)
                    self.err += data[: max(0, REPLY_MAX - len(self.err))]
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
                _send_all(chan, chunk)
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


def _send_all(chan: paramiko.Channel, data: bytes) -> None:
    """``chan.sendall(data)`` without its copying: paramiko's ``sendall`` slices the rest
    of ``data`` after each packet (``s = s[sent:]``), so a 1 MiB chunk sent in 32 KiB
    packets was copied ~16 MiB over, all of it with the GIL held (half of a 10-host
    copy's controller time went there). Here each packet's bytes are cut once from a
    memoryview, as many as one packet carries (paramiko sends no more: 64 bytes of it
    are headers)."""
    view = memoryview(data)
    most = max(1024, chan.out_max_packet_size - 64)
    while view:
        sent = chan.send(view[:most].tobytes())
        if not sent:  # paramiko's sign of a closed or half-closed channel
            raise OSError("the channel is closed")
        view = view[sent:]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
