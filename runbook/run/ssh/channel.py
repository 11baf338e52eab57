"""One attempt of one command on one SSH channel: the wire protocol.

The wire command (``wire_command``) reports its process group on the first stderr line
and runs the command under GNU ``timeout``, a remote-side deadline; ``kill_command``
ends that group through a second channel. ``ChannelRun`` reads stdout and stderr
concurrently to EOF (paramiko #448, #1815) and turns what happened into an ``Outcome``.
"""

from __future__ import annotations

import re
import select
import shlex
import signal
import threading
import time
from typing import Literal

import paramiko

from runbook.errors import ConnectError, ConnectionLost
from runbook.model.command import Command, Outcome
from runbook.run import shell
from runbook.run.capture import Capture, kept
from runbook.run.contexts.base import DRAIN, DRAIN_AFTER_KILL, READ_SIZE, OutputCallback
from runbook.run.ssh.config import Endpoint
from runbook.run.ssh.paramiko_adapter import WatchedTransport, exit_signal_rc

# Why a command's process group is killed: its deadline passed, or the run killed it
# (a second Ctrl-C); the outcome says ``timed_out`` or ``killed`` accordingly.
KillReason = Literal["timeout", "kill"]

# How a command ended by the remote `timeout` exits: 124 (TERM sufficed), KILL re-raised.
REMOTE_TIMEOUT_RCS = (124, -int(signal.SIGKILL), -int(signal.SIGTERM))
# A waiting command re-checks kill requests and the exit status (which wakes no poll)
# at least this often.
IDLE_WAKE = 0.25
MARKER = "RUNBOOK-PGID:"
MARKER_WAIT = 1 << 16  # bytes of one stderr line held while the marker line is awaited
_MARKER_LINE = re.compile(rb"^RUNBOOK-PGID:(\d+)\r?$")


def _seconds(value: float) -> str:
    """A duration for ``timeout``/``sleep``: plain decimal, never ``1e+06``."""
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def wire_command(command: Command, kill_grace: float) -> tuple[str, bytes]:
    """What the remote login shell runs, and what to send on the channel's stdin.

    The wrapper (POSIX sh) reads the script from stdin (never a command line), starts the
    command under GNU ``timeout`` — a remote-side deadline and a process group of its own
    (or, without ``timeout``, in the wrapper's group) — and reports that group on stderr.
    Then it keeps reading stdin: the controller holds the channel open while the command
    runs, so EOF there means the controller died or the connection dropped, and the
    wrapper kills the group at once (SPEC §8) instead of leaving it to its deadline. A
    command killed by a signal is re-raised on the wrapper, so the channel's exit status
    says ``-N`` as a local run does.
    """
    run = shell.invocation(command)
    script = run.stdin
    terminator = "\\000" if script.endswith(b"\0") else ""
    body = script[:-1] if terminator else script
    line = shlex.join(run.argv)
    grace = _seconds(kill_grace)
    wrapper = (
        f"exec 3<&0; s=$(head -c {len(body)}) || exit 125; "
        f"if command -v timeout >/dev/null 2>&1; then "
        f"printf '%s{terminator}' \"$s\" | timeout -k {grace} {_seconds(command.timeout)} {line} & "
        f"c=$!; pg=$c; else printf '%s{terminator}' \"$s\" | {line} & c=$!; pg=$$; fi; "
        f"echo {MARKER}$pg >&2; "
        f"( trap '' TERM; while IFS= read -r _; do :; done; kill -TERM -$pg; "
        f"kill -TERM $$; sleep {grace}; kill -KILL -$pg ) <&3 >/dev/null 2>&1 & w=$!; "
        f"wait $c 2>/dev/null; rc=$?; kill -KILL $w 2>/dev/null; "
        f"if [ $rc -gt 128 ] && [ $rc -lt 160 ]; then "
        f"trap - $((rc-128)); kill -$((rc-128)) $$; fi; "
        f"exit $rc"
    )
    return f"exec /bin/sh -c {shlex.quote(wrapper)}", body


def kill_command(pgid: int, kill_grace: float, become: bool) -> str:
    """TERM the group, wait up to ``kill_grace`` for it to go, then KILL it.

    The shell's builtin ``kill -SIG -PGID``: dash has no ``--``, and procps' ``/bin/kill``
    silently ignores ``-SIG -PGID`` without it. A ``become`` command runs as another user,
    so the script runs under ``sudo -n`` when that is allowed.
    """
    if pgid <= 1:  # kill -1 would signal every process of the user
        raise ValueError(f"refusing to kill process group {pgid}")
    ticks = max(1, round(kill_grace / 0.1))
    script = (
        f"kill -TERM -{pgid} 2>/dev/null || exit 0; i=0; "
        f"while [ $i -lt {ticks} ]; do kill -0 -{pgid} 2>/dev/null || exit 0; "
        f"sleep 0.1; i=$((i+1)); done; kill -KILL -{pgid} 2>/dev/null; exit 0"
    )
    run = f"/bin/sh -c {shlex.quote(script)}"
    if become:
        return f"sudo -n {run} 2>/dev/null || {run}"
    return f"exec {run}"


class Connection:
    """An authenticated transport to one endpoint (a host, or a jump host shared by many)."""

    def __init__(self, endpoint: Endpoint, client: paramiko.SSHClient) -> None:
        self.endpoint = endpoint
        self.client = client
        self.transport: WatchedTransport = client.get_transport()  # type: ignore[assignment]

    @property
    def alive(self) -> bool:
        return self.transport is not None and self.transport.is_active()

    def close(self) -> None:
        self.client.close()


class NotStarted(Exception):
    """The connection was found dead before the command could start."""


def describe(exc: BaseException) -> str:
    if isinstance(exc, EOFError) or not str(exc):
        return "the server closed the connection (sshd MaxStartups, or not an SSH server?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if "protocol banner" in str(exc):
        return f"{exc} (sshd drops new connections beyond its MaxStartups)"
    return str(exc)


class ChannelRun:
    """One attempt of one command on one channel; see the module docstring for the protocol."""

    def __init__(
        self,
        conn: Connection,
        command: Command,
        *,
        connect_timeout: float,
        kill_grace: float,
        on_output: OutputCallback | None = None,
    ) -> None:
        self.conn = conn
        self.command = command
        self.connect_timeout = connect_timeout
        self.grace = kill_grace
        self._lock = threading.Lock()
        self.pgid: int | None = None
        self.kill_reason: KillReason | None = None
        self._kill_sent = False
        self._finished = False
        self._kill_channels: list[paramiko.Channel] = []
        self._stdout = Capture()
        self._stderr = Capture()
        self._head: bytearray | None = bytearray()  # stderr before the marker line
        self._on_output = on_output

    def run(self) -> Outcome:
        command, transport = self.command, self.conn.transport
        host = command.host.name
        started = time.monotonic()
        if self.kill_reason is not None:  # kill_all came first: do not start it at all
            return Outcome(rc=None, killed=self.kill_reason == "kill")
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if not transport.is_active():
                raise NotStarted(f"connection lost: {transport.loss()}") from exc
            raise ConnectError(host, f"cannot open a session: {describe(exc)}") from exc
        try:
            wire, script = wire_command(command, self.grace)
            chan.exec_command(wire)
            # The script on stdin; stdin then stays open: its EOF tells the remote wrapper
            # that the controller is gone.
            chan.sendall(script)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            chan.close()
            # The request may have reached the host: the command may be running.
            reason = transport.loss() if not transport.is_active() else describe(exc)
            raise ConnectionLost(host, f"lost while starting the command: {reason}") from exc
        try:
            abandoned = self._pump(chan, started)
            return self._outcome(chan, started, abandoned)
        finally:
            chan.close()
            with self._lock:
                self._finished = True
                kills, self._kill_channels = self._kill_channels, []
            for kill in kills:  # the kill script itself runs on to its end
                kill.close()

    def _pump(self, chan: paramiko.Channel, started: float) -> bool:
        """Read both streams to EOF and wait for the exit status, enforcing the deadline.

        One thread, no polling: ``chan.fileno()`` is a pipe paramiko signals when either
        stream has data or ends. Returns True if it gave up on a killed command.
        """
        poller = select.poll()  # not select(): no FD_SETSIZE limit with hundreds of hosts
        poller.register(chan.fileno(), select.POLLIN)
        deadline = started + self.command.timeout if self.command.timeout else None
        give_up: float | None = None
        drain_until: float | None = None
        while True:
            busy = False
            if chan.recv_ready():
                data = chan.recv(READ_SIZE)
                self._stdout.add(data)
                if self._on_output is not None and data:
                    self._on_output("stdout", data)
                busy = True
            if chan.recv_stderr_ready():
                self._on_stderr(chan.recv_stderr(READ_SIZE))
                busy = True
            if busy:
                continue
            if chan.closed or (chan.eof_received and chan.status_event.is_set()):
                return False
            now = time.monotonic()
            if drain_until is None and chan.status_event.is_set():
                drain_until = now + DRAIN  # exited; a background child holds its output
            if drain_until is not None and now >= drain_until:
                return False
            if deadline is not None and now >= deadline:
                self.request_kill("timeout")
                deadline = None
            if give_up is None and self.kill_reason is not None:
                give_up = now + self.grace + DRAIN_AFTER_KILL
            if give_up is not None and now >= give_up:
                return True
            wake = min(
                t for t in (deadline, give_up, drain_until, now + IDLE_WAKE) if t is not None
            )
            if chan.eof_received:  # the fd stays readable after EOF: wait for the status
                chan.status_event.wait(max(0.0, wake - now))
            else:
                poller.poll(max(0.0, wake - now) * 1000)

    def _on_stderr(self, data: bytes) -> None:
        if self._head is None:
            self._stderr.add(data)
            if self._on_output is not None and data:
                self._on_output("stderr", data)
            return
        self._head += data
        while True:
            nl = self._head.find(b"\n")
            if nl < 0:
                if len(self._head) > MARKER_WAIT:  # no line end for this long: not start-up
                    self._stderr.add(bytes(self._head))  # noise, kept as stderr (bounded)
                    self._head.clear()
                return
            line = bytes(self._head[:nl])
            del self._head[: nl + 1]
            found = _MARKER_LINE.match(line)
            if found is None:  # output of shell start-up files, before our command
                self._stderr.add(line + b"\n")
                continue
            rest, self._head = bytes(self._head), None
            self._found_pgid(int(found[1]))
            if rest:
                self._on_stderr(rest)
            return

    def _found_pgid(self, pgid: int) -> None:
        with self._lock:
            self.pgid = pgid
            pending = self.kill_reason is not None
        if pending:
            self._send_kill(pgid)

    def request_kill(self, reason: KillReason) -> None:
        """Kill the remote process group (now, or as soon as its id is known)."""
        with self._lock:
            if self.kill_reason is not None:
                return
            self.kill_reason = reason
            pgid = self.pgid
        if pgid is not None:
            self._send_kill(pgid)

    def _send_kill(self, pgid: int) -> None:
        with self._lock:
            if self._kill_sent or pgid <= 1:
                return
            self._kill_sent = True
        try:
            chan = self.conn.transport.open_session(timeout=self.connect_timeout)
            chan.exec_command(kill_command(pgid, self.grace, self.command.spec.become))
        except (OSError, EOFError, paramiko.SSHException):
            return  # connection gone: the remote `timeout` still ends the command
        with self._lock:
            if not self._finished:
                self._kill_channels.append(chan)
                return
        chan.close()

    def _outcome(self, chan: paramiko.Channel, started: float, abandoned: bool) -> Outcome:
        if self._head is not None:
            self._stderr.add(bytes(self._head))
        rc: int | None = None
        if chan.exit_status != -1 and chan.status_event.is_set():
            rc = chan.exit_status
        else:
            rc = exit_signal_rc(chan)
        transport = self.conn.transport
        if rc is None and self.kill_reason is None and not abandoned and not transport.is_active():
            raise ConnectionLost(
                self.command.host.name,
                f"connection to {self.conn.endpoint} lost during the command "
                f"({transport.loss()}) after {time.monotonic() - started:.1f}s; "
                f"it may have partly run",
            )
        timed_out = self.kill_reason == "timeout"
        if (
            self.kill_reason is None
            and rc in REMOTE_TIMEOUT_RCS
            and time.monotonic() - started >= self.command.timeout
        ):
            timed_out = True  # the remote `timeout` fired first
        stdout, stderr, dropped = kept(self._stdout, self._stderr)
        return Outcome(
            rc=rc,
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            killed=self.kill_reason == "kill",
            dropped=dropped,
        )
