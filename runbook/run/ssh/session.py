"""The controller's side of a host session: one long-lived executor per host, many commands.

Exec-per-command costs a channel and three processes (``sh`` -> ``timeout`` -> ``bash``)
per command, and a controller killed with ``kill -9`` leaves remote commands running
until their deadline. A session sends ``runbook/remote/executor.py`` once over one
channel; each command is then one framed request (see the executor's docstring for the
protocol). The executor runs each command in its own process group, enforces its
deadline, kills it on request, and kills what is still running when its stdin closes or
heartbeats stop (SPEC 8, "Execution").

Works over any ``ByteStream``: ``ChannelStream`` (a paramiko ``Channel``) or
``PipeStream`` (a local ``subprocess.Popen``, how the tests run the executor). paramiko
is imported only by ``open_channel_session``.

One reader thread per session demultiplexes replies to the threads blocked in ``run``;
a heartbeat thread sends a heartbeat whenever nothing was sent for ``heartbeat``
seconds. Heartbeats never wait for the reader: ``on_output`` runs on the reader thread,
and a console stalled behind a full pipe (``apply -v | slow-reader``) once held them
back until the executor killed the work (issue 24).

The controller enforces every deadline itself (SPEC §6): an executor that is stopped
(``kill -STOP $PPID`` from a command), silent or lying must not hang the run. The
reader fails the session — every waiting ``run`` raises ``SessionLost``, the host's
command ends ``unreachable`` — when a command's exit does not come within its
timeout plus the kill grace, the drain and ``RESULT_GRACE`` (after a ``kill``: within
the grace, the drain and ``RESULT_GRACE``), when nothing at all came for ``silence``
seconds (the executor sends a heartbeat every 5 s), or when a frame is not the
executor's (a wrong tag, a length beyond ``wire.MAX_REPLY``, an unknown type: see the
executor's docstring). Time the reader spends in ``on_output`` does not count: a slow
console is ours, not the executor's. Writes to the executor give up after
``WRITE_STALL`` seconds without progress. A malformed hello fails the host
(``SessionBroken``), never the run.
"""

from __future__ import annotations

import contextlib
import itertools
import marshal
import os
import re
import select
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.util import MAGIC_NUMBER
from typing import TYPE_CHECKING, NoReturn, Protocol

from runbook.remote import executor as wire
from runbook.run.capture import Capture, kept
from runbook.run.contexts.base import DRAIN, KILL_GRACE, READ_SIZE, OutputCallback

if TYPE_CHECKING:
    import paramiko

HEARTBEAT = 5.0  # seconds between heartbeats; the executor gives up after HEARTBEAT_TIMEOUT
HEARTBEAT_TIMEOUT = 15.0
SILENCE = 15.0  # seconds without a byte from an executor (it beats every 5 s): it is stopped
RESULT_GRACE = 3.0  # seconds past timeout + kill grace + drain before an exit counts as lost
WRITE_STALL = 15.0  # seconds a write to the executor may make no progress
_NO_TIMEOUT = -1.0
_NO_TAG = bytes(wire.TAG_SIZE)
# The executor's hello: protocol, pid, the session's tag (see the executor's docstring).
_HELLO = re.compile(rb"RUNBOOK-EXECUTOR (\d{1,9}) (\d{1,10}) ([0-9a-f]{16})")

_ids = itertools.count(1)


def _next_id() -> int:
    return next(_ids) & 0xFFFFFFFF or next(_ids)


class SessionError(Exception):
    """A host session could not do what was asked."""


class SessionUnavailable(SessionError):
    """The executor could not be started (no usable ``python3``, ``sudo`` refused, ...):
    use exec-per-command for this host instead."""


class SessionBroken(SessionError):
    """The host answered, but not as our executor does (a malformed hello): the host's
    command fails; nothing falls back to another transport."""


class SessionLost(SessionError):
    """The stream to the executor died. ``may_have_run`` is False only when the request
    was never sent; otherwise the command may have partly run (and the executor, seeing
    its stdin close or heartbeats stop, kills it)."""

    def __init__(self, message: str, *, may_have_run: bool = True) -> None:
        super().__init__(message)
        self.may_have_run = may_have_run


@dataclass(frozen=True)
class SessionRequest:
    """One command for the executor. ``env`` is added to the executor's environment as
    it is (no quoting: it never passes through a shell's parser). ``id`` is unique in
    this process, so ``kill(request.id)`` can come from another thread."""

    script: str
    env: Mapping[str, str] = field(default_factory=dict)
    shell: str = "/bin/bash"
    timeout: float | None = None  # seconds; the executor TERMs the group, KILLs after kill_grace
    kill_grace: float = KILL_GRACE
    drain: float = DRAIN  # after the shell exits, wait this long for its pipes to close
    id: int = field(default_factory=_next_id)


@dataclass(frozen=True)
class SessionResult:
    """What the executor reported. ``rc`` is ``-N`` for a command killed by signal N (as
    ``subprocess`` reports locally); ``duration`` is measured on the host.
    ``output_abandoned``: a background child still held stdout/stderr ``drain`` seconds
    after the shell exited; what it writes later is discarded. ``dropped``: bytes of
    each stream past the output cap (``runbook.run.capture``), counted, not kept."""

    id: int
    rc: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    killed: bool
    duration: float
    pid: int
    output_abandoned: bool = False
    dropped: dict[str, int] = field(default_factory=dict)


def encode_request(request: SessionRequest, tag: bytes = _NO_TAG) -> bytes:
    """The ``R`` frame (``tag``: the session's). Raises ValueError for what an exec(2)
    could not carry."""
    shell = request.shell.encode("utf-8", "surrogateescape")
    script = request.script.encode("utf-8", "surrogateescape")
    if not request.shell.startswith("/"):
        raise ValueError(f"shell must be an absolute path: {request.shell!r}")
    if b"\0" in script:
        raise ValueError("the script contains a NUL byte")
    env = []
    for key, value in request.env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"environment variable {key!r} cannot be passed to a process")
        env.append(f"{key}={value}\0")
    block = "".join(env).encode("utf-8", "surrogateescape")
    if request.timeout is not None and request.timeout < 0:
        raise ValueError(f"negative timeout: {request.timeout}")
    timeout = _NO_TIMEOUT if request.timeout is None else float(request.timeout)
    head = wire.RUN.pack(
        timeout, request.kill_grace, request.drain, len(shell), len(script), len(block)
    )
    size = len(head) + len(shell) + len(script) + len(block)
    header = wire.HEADER.pack(tag, size, wire.RUN_T, request.id)
    return b"".join((header, head, shell, script, block))


# -- bootstrap ----------------------------------------------------------------------------

_source: bytes | None = None
_code: bytes | None = None
_LOCAL_MAGIC = MAGIC_NUMBER  # this interpreter's bytecode magic
BOOT = b"RUNBOOK-BOOT "  # the bootstrap's first line: BOOT + the host's magic, in hex

# What ``python3 -c`` runs on the host: say which bytecode it reads, then read the executor
# ("M": a marshalled code object, "S": source, then its length) and run it. Compiling
# the source costs ~6 ms of host CPU per start, loading the code object ~0.3 ms.
_BOOTSTRAP = (
    "import sys,_frozen_importlib_external as f;"
    "sys.version_info>=(3,6)or sys.exit('runbook: python3 is older than 3.6');"
    "o=sys.stdout.buffer;o.write(b'RUNBOOK-BOOT '+f.MAGIC_NUMBER.hex().encode()+b'\\n');"
    "o.flush();i=sys.stdin.buffer;k,n=i.readline().split();d=i.read(int(n));"
    "exec(__import__('marshal').loads(d)if k==b'M'else compile(d,'runbook-executor','exec'))"
)


def executor_source() -> bytes:
    """The executor's source, as shipped in the package (package data)."""
    global _source
    if _source is None:
        _source = resources.files("runbook.remote").joinpath("executor.py").read_bytes()
    return _source


def executor_payload(magic: bytes) -> bytes:
    """What the bootstrap reads: the code object when the host's Python reads this
    interpreter's bytecode (same magic number), else the source."""
    global _code
    if magic != _LOCAL_MAGIC:
        body, kind = executor_source(), b"S"
    else:
        if _code is None:
            _code = marshal.dumps(compile(executor_source(), "runbook-executor", "exec"))
        body, kind = _code, b"M"
    return b"%s %d\n%s" % (kind, len(body), body)


def bootstrap_argv(
    become_user: str | None = None,
    *,
    python: str = "python3",
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
) -> list[str]:
    """The executor's command line: ``python3 -I -S -c BOOTSTRAP TIMEOUT`` (under
    ``sudo -n -u USER --`` for become). The executor itself comes on stdin: nothing but
    the heartbeat timeout varies on the command line, and nothing there is secret."""
    argv = [python, "-I", "-S", "-c", _BOOTSTRAP, f"{heartbeat_timeout:g}"]
    if become_user is not None:
        argv = ["sudo", "-n", "-u", become_user, "--", *argv]
    return argv


def bootstrap_command(
    become_user: str | None = None,
    *,
    python: str = "python3",
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
) -> str:
    """``bootstrap_argv`` as one line for the remote login shell (``exec``: no extra shell)."""
    argv = bootstrap_argv(become_user, python=python, heartbeat_timeout=heartbeat_timeout)
    return "exec " + shlex.join(argv)


# -- streams ------------------------------------------------------------------------------


class ByteStream(Protocol):
    """A bidirectional byte stream to the executor's stdin and stdout."""

    def write(self, data: bytes) -> None:
        """Write all of ``data``; raises OSError when the stream is gone."""

    def read(self, size: int, timeout: float | None) -> bytes | None:
        """Up to ``size`` bytes; ``b""`` at end of stream; None when ``timeout`` passed."""

    def close_input(self) -> None:
        """End the executor's stdin (it kills what still runs, then exits)."""

    def abort(self) -> None:
        """Force the far side to end, so that a blocked ``read`` returns ``b""``."""

    def close(self) -> None:
        """Release everything, once no thread reads any more. Safe to call twice."""

    def diagnostics(self) -> str:
        """Best effort, after the end: what the far side wrote on stderr, and its exit."""


class ChannelStream:
    """A paramiko ``Channel`` on which the bootstrap was ``exec_command``-ed.

    paramiko's ``settimeout`` applies to ``send`` as well as ``recv``, and ``sendall``
    gives no way to know how much went out before a timeout, so ``write`` loops on
    ``send`` itself. ``recv`` returns ``b""`` once the channel is closed or at EOF.
    """

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel

    def write(self, data: bytes) -> None:
        done = 0
        progress = time.monotonic()
        while done < len(data):
            if self.channel.closed:
                raise OSError("the channel is closed")
            try:
                sent = self.channel.send(data[done:])  # data[0:] is data itself: no copy
            except TimeoutError:
                # The remote window is full; the channel's timeout is the reader's.
                if time.monotonic() - progress >= WRITE_STALL:
                    raise OSError(f"the executor read nothing for {WRITE_STALL:g}s") from None
                continue
            if sent == 0:
                raise OSError("the channel is closed")
            done += sent
            progress = time.monotonic()

    def read(self, size: int, timeout: float | None) -> bytes | None:
        self.channel.settimeout(timeout)
        try:
            return self.channel.recv(size)
        except TimeoutError:
            return None

    def close_input(self) -> None:
        if not self.channel.closed:
            self.channel.shutdown_write()

    def abort(self) -> None:
        self.channel.close()  # closing does not kill the remote process (paramiko #203)

    def close(self) -> None:
        self.channel.close()

    def diagnostics(self) -> str:
        self.channel.status_event.wait(1.0)  # sshd sends the exit status after EOF
        err = b""
        while self.channel.recv_stderr_ready():
            err += self.channel.recv_stderr(READ_SIZE)
        status = self.channel.exit_status if self.channel.exit_status_ready() else None
        return _describe(err, status)


class PipeStream:
    """A local process's stdin and stdout pipes: the executor run on this machine."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self._in = proc.stdin.fileno()
        self._out = proc.stdout.fileno()
        os.set_blocking(self._in, False)  # a stopped executor must not block a write

    @classmethod
    def spawn(cls, argv: Sequence[str], env: Mapping[str, str] | None = None) -> PipeStream:
        """Start ``argv`` with pipes, in a new session (as sshd starts a login shell)."""
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
        return cls(proc)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            _, ready, _ = select.select([], [self._in], [], WRITE_STALL)
            if not ready:
                raise OSError(f"the executor read nothing for {WRITE_STALL:g}s")
            try:
                view = view[os.write(self._in, view) :]
            except BlockingIOError:
                continue

    def read(self, size: int, timeout: float | None) -> bytes | None:
        ready, _, _ = select.select([self._out], [], [], timeout)
        if not ready:
            return None
        return os.read(self._out, size)

    def close_input(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def abort(self) -> None:
        """TERM: the executor kills its commands' groups, then exits (EOF for the reader)."""
        if self.proc.poll() is None:
            self.proc.terminate()

    def close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        try:
            self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def diagnostics(self) -> str:
        try:
            status = self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            status = None
        assert self.proc.stderr is not None
        err = self.proc.stderr.read() if status is not None else b""
        self.proc.stderr.close()
        return _describe(err, status)


def _describe(stderr: bytes, status: int | None) -> str:
    text = stderr.decode("utf-8", "replace").strip()[-2000:]
    parts = [] if status is None else [f"exit status {status}"]
    if text:
        parts.append(text)
    return "; ".join(parts) or "no output"


# -- the session --------------------------------------------------------------------------


class _Broken(Exception):
    """The executor broke the protocol or a deadline: the session cannot go on."""


class _Pending:
    """A ``run`` waiting for its exit frame; the reader thread fills it in.

    ``deadline`` (monotonic, None: none) is when its exit must have come, not counting
    the reader's time in ``on_output`` after ``stalled`` (the session's total then)."""

    __slots__ = (
        "out", "err", "on_output", "done", "result", "error", "callback_error", "deadline",
        "stalled",
    )  # fmt: skip

    def __init__(self, on_output: OutputCallback | None, deadline: float | None, stalled: float):
        self.out = Capture()
        self.err = Capture()
        self.on_output = on_output
        self.done = threading.Lock()
        self.done.acquire()  # released by the reader thread when the result is in
        self.result: SessionResult | None = None
        self.error: SessionError | None = None
        self.callback_error: BaseException | None = None
        self.deadline = deadline
        self.stalled = stalled


class HostSession:
    """One executor on one host; ``run`` may be called from many threads at once.

    ``start`` first; then ``run``/``kill``; ``close`` at the end (commands still running
    are killed by the executor when its stdin closes).
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        name: str = "",
        heartbeat: float = HEARTBEAT,
        silence: float = SILENCE,
    ) -> None:
        self.stream = stream
        self.name = name or "host"
        self.heartbeat = heartbeat
        self.silence = silence
        self.pid: int | None = None  # the executor's pid on the host
        self.tag = _NO_TAG  # the session's frame tag, from the hello
        self.broken: str | None = None  # why the controller gave up on the executor
        self._lock = threading.Lock()  # _pending and _dead
        self._wlock = threading.Lock()  # one frame at a time on the stream
        self._pending: dict[int, _Pending] = {}
        self._dead: str | None = None
        self._closing = False
        self._last_write = time.monotonic()
        self._heard = time.monotonic()  # the last byte from the executor (or callback end)
        self._stalled = 0.0  # seconds the reader spent in on_output callbacks, in all
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()  # ends the heartbeat thread

    @property
    def alive(self) -> bool:
        return self._reader is not None and self._dead is None

    def start(self, timeout: float = 10.0) -> None:
        """Send the executor and wait for its hello. Raises ``SessionUnavailable`` (no
        usable python3) or ``SessionBroken`` (a hello that is not our executor's)."""
        deadline = time.monotonic() + timeout
        line, rest = self._line(BOOT, b"", deadline)
        try:
            payload = executor_payload(bytes.fromhex(line[len(BOOT) :].decode()))
        except ValueError:
            self._unavailable(f"unexpected bootstrap line {line[:80]!r}")
        # If the bootstrap died before reading it, the diagnostics below say why.
        with contextlib.suppress(OSError):
            self.stream.write(payload)
        line, rest = self._line(wire.MAGIC, rest, deadline)
        hello = _HELLO.fullmatch(line.rstrip(b"\r"))
        if hello is None or int(hello[1]) != wire.PROTOCOL:
            self.stream.abort()
            self.stream.close()
            raise SessionBroken(
                f"{self.name}: the runbook executor answered {line[:80]!r}, not a "
                f"protocol {wire.PROTOCOL} hello; the host's commands fail"
            )
        self.pid = int(hello[2])
        self.tag = bytes.fromhex(hello[3].decode())
        self._last_write = self._heard = time.monotonic()
        self._reader = threading.Thread(
            target=self._read_loop, args=(bytearray(rest),), daemon=True,
            name=f"session-{self.name}",
        )  # fmt: skip
        self._reader.start()
        threading.Thread(
            target=self._beat_loop, daemon=True, name=f"session-{self.name}-beat"
        ).start()

    def _line(self, prefix: bytes, buf: bytes, deadline: float) -> tuple[bytes, bytes]:
        """The first line starting with ``prefix`` (what comes before it is noise from
        shell start-up files), and what follows it."""
        while True:
            found = buf.find(prefix)
            end = buf.find(b"\n", found) if found >= 0 else -1
            if end >= 0:
                return buf[found:end], buf[end + 1 :]
            left = deadline - time.monotonic()
            data = self.stream.read(READ_SIZE, left) if left > 0 else None
            if data is None:
                self._unavailable("it did not answer in time")
            if not data:
                self.stream.close_input()
                self._unavailable(f"it exited: {self.stream.diagnostics()}")
            buf = buf[-(1 << 16) :] + data

    def _unavailable(self, why: str) -> NoReturn:
        self.stream.abort()
        self.stream.close()
        raise SessionUnavailable(
            f"{self.name}: cannot start the runbook executor ({why}); "
            "it needs python3 (3.6+) on the host"
        )

    def run(
        self, request: SessionRequest, on_output: OutputCallback | None = None
    ) -> SessionResult:
        """Run one command to its end; blocks. ``on_output(stream, chunk)`` ("stdout" or
        "stderr") is called from the reader thread as chunks arrive. Raises
        ``SessionLost`` (also when the executor misses the command's deadline), or
        ``SessionError`` if the executor could not start the command (fork failed)."""
        frame = encode_request(request, self.tag)
        deadline = None
        started = time.monotonic()
        if request.timeout is not None:
            late = request.timeout + request.kill_grace + request.drain + RESULT_GRACE
            deadline = started + late
        pending = _Pending(on_output, deadline, self._stalled)
        with self._lock:
            if self._reader is None:
                raise SessionError(f"{self.name}: the session was not started")
            if self._dead is not None:
                raise SessionLost(f"{self.name}: {self._dead}", may_have_run=False)
            if request.id in self._pending:
                raise ValueError(f"request {request.id} is already running")
            self._pending[request.id] = pending
        try:
            self._send(frame)
        except OSError as exc:
            self._lose(f"writing to the executor failed: {exc}")
        if deadline is not None:  # counted from when the request was out, not queued
            with self._lock:
                late = time.monotonic() + (deadline - started)
                if request.id in self._pending and pending.deadline == deadline:
                    pending.deadline, pending.stalled = late, self._stalled
        pending.done.acquire()
        if pending.callback_error is not None:
            raise pending.callback_error
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def kill(self, request_id: int, grace: float = KILL_GRACE) -> None:
        """Ask the executor to kill the command's process group (TERM, KILL after its
        grace). A command that already finished, or is unknown, is left alone. Its exit
        must come within ``grace`` + the drain + ``RESULT_GRACE`` from now."""
        with self._lock:
            pending = self._pending.get(request_id)
            if pending is None or self._dead is not None:
                return
            late = time.monotonic() + grace + DRAIN + RESULT_GRACE
            if pending.deadline is None or late < pending.deadline:
                pending.deadline, pending.stalled = late, self._stalled
        try:
            self._send(wire.HEADER.pack(self.tag, 0, wire.KILL_T, request_id))
        except OSError as exc:
            self._lose(f"writing to the executor failed: {exc}")

    def close(self, wait: float = 5.0) -> None:
        """End the executor's stdin and wait up to ``wait`` s for it to exit. Runs still
        waiting raise ``SessionLost``. Safe to call twice."""
        self.begin_close()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(wait)
            if reader.is_alive():  # the executor did not exit: make it
                self.stream.abort()
                reader.join(wait)
        self._lose("the session was closed")
        if reader is None or not reader.is_alive():  # never close an fd a reader may poll
            self.stream.close()

    def begin_close(self) -> None:
        """``close`` without the wait: end the executor's stdin, so that many sessions
        can be told at once and then waited for together (``Sessions.close``)."""
        self._closing = True
        self._stop.set()
        with contextlib.suppress(OSError):
            self.stream.close_input()

    # -- internals ----------------------------------------------------------------------

    def _send(self, frame: bytes) -> None:
        with self._wlock:
            self.stream.write(frame)
            self._last_write = time.monotonic()

    def _lose(self, reason: str) -> None:
        """Mark the session dead and fail every waiting run."""
        self._stop.set()
        with self._lock:
            if self._dead is None:
                self._dead = reason
            pending, self._pending = self._pending, {}
        for p in pending.values():
            p.error = SessionLost(
                f"{self.name}: {reason}; the command may have partly run", may_have_run=True
            )
            p.done.release()

    def _beat_loop(self) -> None:
        """A heartbeat whenever nothing went to the executor for ``heartbeat`` seconds —
        never behind the reader, whose ``on_output`` may wait for a stalled console. A
        frame being written meanwhile is traffic enough (or stuck: ``WRITE_STALL``)."""
        while not self._stop.wait(max(0.05, self._last_write + self.heartbeat - time.monotonic())):
            if time.monotonic() - self._last_write < self.heartbeat or self._closing:
                continue
            if not self._wlock.acquire(blocking=False):
                continue
            try:
                self.stream.write(wire.HEADER.pack(self.tag, 0, wire.BEAT_T, 0))
                self._last_write = time.monotonic()
            except OSError as exc:
                self._wlock.release()
                self._lose(f"writing to the executor failed: {exc}")
                return
            self._wlock.release()

    def _read_loop(self, buf: bytearray) -> None:
        reason = "the executor ended the session"
        try:
            if buf:
                self._dispatch(buf)
            while True:
                data = self.stream.read(READ_SIZE, self._next_check())
                if data is not None:
                    if not data:
                        break
                    self._heard = time.monotonic()
                    buf += data
                    self._dispatch(buf)
                self._check(data is None)
        except _Broken as exc:
            reason = str(exc)
            self.broken = reason
            self.stream.abort()  # the executor sees its stdin close (if it ever runs again)
        except (OSError, EOFError) as exc:
            reason = f"the stream to the executor failed: {exc}"
        except Exception as exc:  # a bug here must not leave runs blocked for ever
            reason = f"session reader failed: {exc!r}"
            raise
        finally:
            if self._closing:
                reason = "the session was closed"
            self._lose(reason)

    def _next_check(self) -> float:
        """How long the reader may wait for data before it looks at the deadlines."""
        now = time.monotonic()
        wake = min(now + 1.0, self._heard + self.silence)
        with self._lock:
            for p in self._pending.values():
                if p.deadline is not None:
                    wake = min(wake, p.deadline + self._stalled - p.stalled)
        return max(0.05, wake - now)

    def _check(self, idle: bool) -> None:
        """Raise ``_Broken`` when the executor missed a deadline or went silent."""
        now = time.monotonic()
        if idle and not self._closing and now - self._heard >= self.silence:
            raise _Broken(f"the executor sent nothing for {self.silence:g}s (stopped?)")
        with self._lock:
            late = [
                p for p in self._pending.values()
                if p.deadline is not None and now >= p.deadline + self._stalled - p.stalled
            ]  # fmt: skip
        if late and not self._closing:
            raise _Broken("the executor did not report a command's end by its deadline (stopped?)")

    def _dispatch(self, buf: bytearray) -> None:
        """Handle every complete frame in ``buf`` and remove it. Raises ``_Broken`` for a
        frame that is not the executor's."""
        at, size_buf, header = 0, len(buf), wire.HEADER.size
        while size_buf - at >= header:
            tag, size, kind, rid = wire.HEADER.unpack_from(buf, at)
            if tag != self.tag or size > wire.MAX_REPLY or kind not in _REPLIES:
                raise _Broken("a frame that is not the executor's (a command wrote to its stdout?)")
            end = at + header + size
            if end > size_buf:
                break
            pending = self._pending.get(rid)
            if pending is not None:
                self._frame(pending, kind, rid, bytes(buf[at + header : end]))
            at = end
        del buf[:at]

    def _frame(self, pending: _Pending, kind: int, rid: int, payload: bytes) -> None:
        if kind == wire.OUT_T or kind == wire.ERR_T:
            (pending.out if kind == wire.OUT_T else pending.err).add(payload)
            if pending.on_output is not None and pending.callback_error is None:
                began = time.monotonic()
                try:
                    pending.on_output("stdout" if kind == wire.OUT_T else "stderr", payload)
                except Exception as exc:  # re-raised by run(), never kills the reader
                    pending.callback_error = exc
                finally:
                    self._heard = time.monotonic()
                    self._stalled += self._heard - began
            return
        if kind == wire.EXIT_T:
            if len(payload) != wire.EXIT.size:
                raise _Broken(f"an exit frame of {len(payload)} bytes")
            rc, flags, duration, pid = wire.EXIT.unpack(payload)
            stdout, stderr, dropped = kept(pending.out, pending.err)
            pending.result = SessionResult(
                id=rid,
                rc=rc,
                stdout=stdout,
                stderr=stderr,
                timed_out=bool(flags & wire.TIMED_OUT),
                killed=bool(flags & wire.KILLED),
                duration=duration,
                pid=pid,
                output_abandoned=bool(flags & wire.ABANDONED),
                dropped=dropped,
            )
        elif kind == wire.FAIL_T:
            text = payload.decode("utf-8", "replace")
            pending.error = SessionError(f"{self.name}: the executor refused: {text}")
        else:
            return
        with self._lock:
            self._pending.pop(rid, None)
        pending.done.release()


_REPLIES = frozenset({wire.OUT_T, wire.ERR_T, wire.EXIT_T, wire.FAIL_T, wire.BEAT_T})


# -- constructors -------------------------------------------------------------------------


def local_session(
    *,
    python: str | None = None,
    become_user: str | None = None,
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
    heartbeat: float = HEARTBEAT,
    silence: float | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> HostSession:
    """An executor on this machine through pipes, started as sshd would start it
    (``/bin/sh -c BOOTSTRAP``). ``python`` defaults to the controller's interpreter."""
    command = bootstrap_command(
        become_user, python=python or sys.executable, heartbeat_timeout=heartbeat_timeout
    )
    stream = PipeStream.spawn(["/bin/sh", "-c", command], env)
    silence = silence or heartbeat_timeout  # the executor beats every heartbeat_timeout/3 s
    session = HostSession(stream, name="local", heartbeat=heartbeat, silence=silence)
    session.start(timeout)
    return session


def open_channel_session(
    transport: paramiko.Transport,
    *,
    name: str = "",
    become_user: str | None = None,
    python: str = "python3",
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
    heartbeat: float = HEARTBEAT,
    silence: float | None = None,
    timeout: float = 10.0,
    nodelay: bool = True,
) -> HostSession:
    """Open a channel on ``transport``, start the executor, return the started session.

    ``nodelay`` sets TCP_NODELAY on the transport's socket: a session is request/reply,
    and Nagle's algorithm with delayed ACKs costs up to ~40 ms per round trip. Raises
    ``SessionUnavailable`` (the channel is closed again) when the executor cannot start.
    """
    import paramiko

    sock = getattr(transport, "sock", None)
    if nodelay and isinstance(sock, socket.socket) and sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    command = bootstrap_command(become_user, python=python, heartbeat_timeout=heartbeat_timeout)
    try:
        channel = transport.open_session(timeout=timeout)
        channel.exec_command(command)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise SessionUnavailable(f"{name or 'host'}: cannot open a channel: {exc}") from exc
    silence = silence or heartbeat_timeout  # the executor beats every heartbeat_timeout/3 s
    session = HostSession(ChannelStream(channel), name=name, heartbeat=heartbeat, silence=silence)
    session.start(timeout)  # closes the channel before raising SessionUnavailable/Broken
    return session
