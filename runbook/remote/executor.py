"""runbook's host-session executor: one long-lived process per host (and per become user).

Started by ``runbook.run.ssh.session``'s bootstrap (``python3 -I -S -c ...``), which
reads this module from stdin (a marshalled code object when the host's bytecode is the
controller's, else this source) and runs it. So it must run alone: stdlib only, Python
3.6+ as found on old RHEL/Debian (no walrus, no dataclasses, no ``from __future__
import annotations``); ``_signal``, ``_struct`` and ``posix`` rather than ``signal``,
``struct`` and ``os`` (importing those costs ~5 ms and ~2 ms of every start).

Protocol. After a hello line (``RUNBOOK-EXECUTOR <protocol> <pid> <tag>\\n``), both
directions carry frames: a 17-byte header ``>8sIBI`` (the session's tag, payload length,
type, request id) and the payload. Controller -> executor: ``R`` run (``RUN`` struct,
then shell, script and an environ block ``K=V\\0...``), ``K`` kill, ``H`` heartbeat.
Executor -> controller: ``O`` and ``E`` raw output chunks, then one ``X`` exit (``EXIT``
struct), or ``F`` (a request it could not start: the text says why); ``H`` when it has
sent nothing for ``BEAT_EVERY`` seconds, so the controller can tell a stopped executor
from a quiet one.

The tag is 8 random bytes the executor draws at start and announces in its hello,
before any command runs. A command could open this process's stdin or stdout through
``/proc/$PPID/fd`` and write into the frame stream (issue 24: a forged exit frame
turned a failure into ``ok``; a 4 GB length hung the run), but it never sees the
stream, so it cannot know the tag: a frame without it ends the session on either side
(here: everything is killed and the executor exits), lengths beyond ``MAX_REQUEST`` too.
And before its hello the executor makes itself non-dumpable (``prctl(PR_SET_DUMPABLE,
0)``), so a command of its user cannot even open ``/proc/$PPID/fd/*`` — nor read its
memory (other commands' scripts) or environ; no core dump of it is written either. Only
a process with CAP_SYS_PTRACE (root) still can. ``execve`` makes commands dumpable again.

Each command runs in a new session (its own process group) as ``SHELL -c BOOT`` with
the request's environment; its stdin is a private regular file holding the script,
which the shell reads whole before ``exec </dev/null`` and ``eval`` (SPEC 8,
"Execution"): nothing secret is ever on a command line, and the command's own stdin is
empty. The executor enforces each deadline (TERM to the group, KILL after the grace),
kills on request, and when its stdin closes or no frame came for the heartbeat timeout
(argv[1], default 15 s) kills the groups of the commands still running (not those of
finished commands, nor what they detached), then exits.
"""

import _signal  # type: ignore[import-not-found]
import _struct
import errno
import posix
import select
import sys
import time

PROTOCOL = 2
MAGIC = b"RUNBOOK-EXECUTOR "
HEADER = _struct.Struct(">8sIBI")  # the session's tag, payload length, frame type, request id
TAG_SIZE = 8
MAX_REQUEST = 1 << 28  # bytes of one request's payload (script and environment)
MAX_REPLY = 1 << 20  # bytes of one frame to the controller (output goes in READ_SIZE chunks)
BEAT_EVERY = 5.0  # seconds without a frame to the controller before a heartbeat goes
# timeout (< 0: none), kill grace, drain, then the lengths of shell, script and env block
RUN = _struct.Struct(">dddHII")
EXIT = _struct.Struct(">iBdI")  # rc (-N: killed by signal N), flags, seconds it ran, pid
RUN_T, KILL_T, BEAT_T = 0x52, 0x4B, 0x48  # R K H
OUT_T, ERR_T, EXIT_T, FAIL_T = 0x4F, 0x45, 0x58, 0x46  # O E X F
TIMED_OUT, KILLED, ABANDONED = 1, 2, 4  # EXIT flags

READ_SIZE = 65536
# Output waits up to FLUSH_DELAY s (or FLUSH_SIZE bytes) so that a short command's output
# and its exit go out in one write: one wake-up of sshd and of the controller, not two.
# Exit and refusal frames go at once.
FLUSH_DELAY = 0.005
FLUSH_SIZE = 65536
NEVER = float("inf")
HIGH_WATER = 1 << 20  # stop reading commands while this much output waits for the channel
MAX_ORPHANS = 64  # pipes kept open (and discarded) for background children of finished commands
# bash reads a regular file in blocks (a pipe byte by byte) and needs no helper process;
# other shells use the form of SPEC 8, whose `head` costs ~2 ms per command.
BASH_BOOT = b'IFS= read -r -d "" s; exec </dev/null; eval "unset s; $s"'
HEAD_BOOT = b's=$(head -c %d); exec </dev/null; eval "unset s; $s"'


def _noop(signum, frame):
    """A Python-level handler, so the C handler writes SIGCHLD to the wakeup fd."""


def _killpg(pgid, sig):
    if pgid > 1:  # never -1 (every process of the user) or 0 (our own group)
        try:  # noqa: SIM105 - contextlib costs ~1 ms of start-up on the host
            posix.killpg(pgid, sig)
        except OSError:
            pass


def _script_fd(data):
    """A private regular file holding ``data``, positioned at 0, never on any path.

    A regular file, not a pipe: any size fits without blocking us, and bash's ``read``
    reads it in blocks instead of one byte per system call.
    """
    if hasattr(posix, "memfd_create"):  # Python 3.8+, Linux 3.17+
        try:
            fd = posix.memfd_create("runbook-script")
        except OSError:
            fd = -1
    else:
        fd = -1
    if fd < 0:
        fd = _unlinked_file()
    view = memoryview(data)
    while view:
        view = view[posix.write(fd, view) :]
    posix.lseek(fd, 0, 0)
    return fd


def _unlinked_file():
    """Before memfd: an O_TMPFILE (or created-then-unlinked 0600) file in a tmpfs."""
    dirs = [d for d in (b"/dev/shm", posix.environ.get(b"TMPDIR"), b"/tmp") if d]
    for d in dirs:
        try:
            return posix.open(d, posix.O_TMPFILE | posix.O_RDWR | posix.O_CLOEXEC, 0o600)
        except (OSError, AttributeError):
            pass
    for d in dirs:
        path = d + f"/.runbook-{posix.getpid()}-{posix.urandom(8).hex()}".encode()
        try:
            flags = posix.O_CREAT | posix.O_EXCL | posix.O_RDWR | posix.O_CLOEXEC
            fd = posix.open(path, flags, 0o600)
        except OSError:
            continue
        posix.unlink(path)
        return fd
    raise OSError(f"no writable directory for the script among {dirs}")


class Cmd:
    """One command: its process group (= its pid), output pipes and timers."""

    __slots__ = (
        "rid", "pid", "fds", "status", "started", "ended", "deadline", "grace", "drain",
        "drain_until", "flags",
    )  # fmt: skip

    def __init__(self, rid, timeout, grace, drain):
        self.rid = rid
        self.pid = 0
        self.fds = []
        self.status = None  # the wait status once reaped
        self.started = self.ended = time.monotonic()
        self.deadline = self.started + timeout if timeout >= 0 else None
        self.grace = grace
        self.drain = drain
        self.drain_until = None
        self.flags = 0

    def rc(self):
        status = self.status or 0
        if posix.WIFSIGNALED(status):
            return -posix.WTERMSIG(status)
        return posix.WEXITSTATUS(status)


class Executor:
    """The single-threaded poll loop; see the module docstring for the protocol."""

    def __init__(self, beat_timeout):
        self.beat_timeout = beat_timeout
        self.cmds = {}  # request id -> Cmd, until its exit frame is queued
        self.pids = {}  # pid -> Cmd, until reaped
        self.fds = {}  # output fd -> (Cmd, frame type), or (None, 0) for an orphan
        self.orphans = []  # fds of finished commands still held open by background children
        self.kills = []  # (when, pgid): KILL after the grace period
        self.out = bytearray()  # frames waiting for the channel
        self.flush_at = NEVER  # when self.out is due
        self.inbuf = bytearray()
        self.poll = select.poll()
        self.paused = False
        self.writing = False
        self.stop = None  # why the loop ends
        self.heard = time.monotonic()
        self.queued = self.heard  # when a frame last went into self.out
        self.beat_every = min(BEAT_EVERY, beat_timeout / 3)
        self.tag = posix.urandom(TAG_SIZE)
        self.env = dict(posix.environ)  # bytes -> bytes
        self.boots = {}  # shell path -> bash or not

    def _on_signal(self, signum, frame):
        self.stop = f"signal {signum}"

    def setup(self):
        """Signals through a wakeup pipe; a hello line the controller waits for."""
        r, w = posix.pipe()
        posix.set_blocking(r, False)
        posix.set_blocking(w, False)
        self.wake = r
        _signal.set_wakeup_fd(w)
        _signal.signal(_signal.SIGCHLD, _noop)
        for sig in (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGINT):
            _signal.signal(sig, self._on_signal)
        hello = MAGIC + b"%d %d %s\n" % (PROTOCOL, posix.getpid(), self.tag.hex().encode())
        posix.write(1, hello)
        posix.set_blocking(1, False)  # a slow channel must not stop heartbeats and deadlines
        self.poll.register(0, select.POLLIN)
        self.poll.register(r, select.POLLIN)

    def loop(self):
        while self.stop is None:
            now = time.monotonic()
            if now >= self.flush_at:
                self._flush()
            writing = now >= self.flush_at  # still due: the channel is full, wait for it
            if writing != self.writing:
                self.writing = writing
                if writing:
                    self.poll.register(1, select.POLLOUT)
                else:
                    self.poll.unregister(1)
            wait = max(0.0, self._next_timer(now) - now)
            for fd, _ in self.poll.poll(int(wait * 1000) + 1):
                if fd == 0:
                    self._read_requests()
                elif fd == 1:
                    self._flush()
                elif fd == self.wake:
                    self._reap()
                elif fd in self.fds:
                    self._read_output(fd)
            self._timers(time.monotonic())
        self.shutdown()

    # -- requests ---------------------------------------------------------------------

    def _read_requests(self):
        try:
            data = posix.read(0, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.stop = "end of input"
            return
        self.heard = time.monotonic()
        buf = self.inbuf
        buf += data
        at = 0
        while len(buf) - at >= HEADER.size:
            tag, size, kind, rid = HEADER.unpack_from(buf, at)
            if tag != self.tag or size > MAX_REQUEST:
                self.stop = "a frame that is not the controller's (a command wrote to stdin?)"
                return
            end = at + HEADER.size + size
            if len(buf) < end:
                break
            if kind == RUN_T:
                self._start(rid, bytes(buf[at + HEADER.size : end]))
            elif kind == KILL_T:
                self._kill(rid)
            at = end
        del buf[:at]

    def _start(self, rid, payload):
        try:
            timeout, grace, drain, nshell, nscript, nenv = RUN.unpack_from(payload, 0)
            at = RUN.size
            shell = payload[at : at + nshell]
            script = payload[at + nshell : at + nshell + nscript]
            env = self._environ(payload[at + nshell + nscript : at + nshell + nscript + nenv])
        except (_struct.error, ValueError) as exc:  # type: ignore[attr-defined]
            self._fail(rid, f"malformed request: {exc}")
            return
        if rid in self.cmds:
            self._fail(rid, f"request id {rid} is already running")
            return
        cmd = Cmd(rid, timeout, grace, drain)
        try:
            self._spawn(cmd, shell, script, env)
        except OSError as exc:
            self._not_started(cmd, shell, exc)
            return
        self.cmds[rid] = cmd
        self.pids[cmd.pid] = cmd

    def _environ(self, block):
        env = dict(self.env)
        for item in block.split(b"\0"):
            if item:
                key, sep, value = item.partition(b"=")
                if not key or not sep:
                    raise ValueError("bad environment entry")
                env[key] = value
        return env

    def _boot(self, shell, size):
        bash = self.boots.get(shell)
        if bash is None:
            bash = self.boots[shell] = _is_bash(shell)
        return BASH_BOOT if bash else HEAD_BOOT % size

    def _spawn(self, cmd, shell, script, env):
        argv = [shell, b"-c", self._boot(shell, len(script))]
        script_fd = _script_fd(script)
        out_r, out_w = posix.pipe()
        err_r, err_w = posix.pipe()
        try:
            pid = _spawn(shell, argv, env, script_fd, out_w, err_w)
        except OSError:
            posix.close(out_r)
            posix.close(err_r)
            raise
        finally:
            for fd in (script_fd, out_w, err_w):
                posix.close(fd)
        cmd.pid = pid
        cmd.started = time.monotonic()
        cmd.fds = [out_r, err_r]
        self.fds[out_r] = (cmd, OUT_T)
        self.fds[err_r] = (cmd, ERR_T)
        if not self.paused:
            self.poll.register(out_r, select.POLLIN)
            self.poll.register(err_r, select.POLLIN)

    def _not_started(self, cmd, shell, exc):
        """An exec failure reads as the shell's own (127 not found, 126 not executable);
        anything else (no memory, no processes left) is refused."""
        name = shell.decode("utf-8", "replace")
        if exc.errno not in (errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ENOTDIR):
            self._fail(cmd.rid, f"cannot start {name}: {exc.strerror}")
            return
        data = f"runbook executor: {name}: {exc.strerror}\n".encode("utf-8", "replace")
        self._queue(ERR_T, cmd.rid, data)
        rc = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
        self._queue(EXIT_T, cmd.rid, EXIT.pack(rc, 0, 0.0, 0), True)

    def _kill(self, rid):
        cmd = self.cmds.get(rid)
        if cmd is None or cmd.status is not None:
            return  # finished: what it left behind is not ours to kill
        cmd.flags |= KILLED
        self._term(cmd, time.monotonic())

    def _term(self, cmd, now):
        _killpg(cmd.pid, _signal.SIGTERM)
        self.kills.append((now + cmd.grace, cmd.pid))

    def _fail(self, rid, message):
        self._queue(FAIL_T, rid, message.encode("utf-8", "replace")[:4096], True)

    def _queue(self, kind, rid, data, urgent=False):
        self.out += HEADER.pack(self.tag, len(data), kind, rid)
        self.out += data
        self.queued = time.monotonic()
        if urgent or len(self.out) >= FLUSH_SIZE:
            self.flush_at = 0.0
        elif self.flush_at == NEVER:
            self.flush_at = time.monotonic() + FLUSH_DELAY

    # -- output and exits -------------------------------------------------------------

    def _read_output(self, fd):
        cmd, kind = self.fds[fd]
        try:
            data = posix.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            if cmd is not None:
                self._queue(kind, cmd.rid, data)
                if len(self.out) > HIGH_WATER and not self.paused:
                    self._pause()
            return
        self._close(fd)
        if cmd is not None:
            cmd.fds.remove(fd)
            if not cmd.fds and cmd.status is not None:
                self._finish(cmd)

    def _reap(self):
        try:
            while posix.read(self.wake, 256):
                pass
        except OSError:
            pass
        while True:
            try:
                pid, status = posix.waitpid(-1, posix.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            cmd = self.pids.pop(pid, None)
            if cmd is None:
                continue
            cmd.status = status
            cmd.ended = time.monotonic()
            # What the shell and its foreground children wrote is in the pipes now: take
            # all of it. Whatever comes later is from background children (see _timers).
            for fd in list(cmd.fds):
                posix.set_blocking(fd, False)
                while fd in self.fds and cmd.fds and fd in cmd.fds:
                    before = len(self.out)
                    self._read_output(fd)
                    if len(self.out) == before:
                        break
            if cmd.rid in self.cmds and not cmd.fds:
                self._finish(cmd)
            elif cmd.rid in self.cmds:
                cmd.drain_until = cmd.ended + cmd.drain

    def _finish(self, cmd):
        """Queue the exit frame. Pipes still held by background children are kept open
        and their output discarded: late output never lands in another result."""
        for fd in cmd.fds:
            cmd.flags |= ABANDONED
            self.fds[fd] = (None, 0)
            self.orphans.append(fd)
        cmd.fds = []
        while len(self.orphans) > MAX_ORPHANS:
            self._close(self.orphans[0])
        payload = EXIT.pack(cmd.rc(), cmd.flags, cmd.ended - cmd.started, cmd.pid)
        self._queue(EXIT_T, cmd.rid, payload, True)
        del self.cmds[cmd.rid]

    def _close(self, fd):
        if fd in self.orphans:
            self.orphans.remove(fd)
        del self.fds[fd]
        if not self.paused:  # while paused, no output fd is registered
            self.poll.unregister(fd)
        posix.close(fd)

    def _pause(self):
        self.paused = True
        for fd in self.fds:
            self.poll.unregister(fd)

    def _flush(self):
        try:
            n = posix.write(1, self.out)
        except BlockingIOError:
            return
        except OSError:
            self.stop = "the channel closed"
            self.out = bytearray()
            self.flush_at = NEVER
            return
        del self.out[:n]
        if not self.out:
            self.flush_at = NEVER
        if self.paused and len(self.out) < HIGH_WATER // 2:
            self.paused = False
            for fd in self.fds:
                self.poll.register(fd, select.POLLIN)

    # -- timers and the end -----------------------------------------------------------

    def _next_timer(self, now):
        times = [self.heard + self.beat_timeout, self.queued + self.beat_every, now + 60.0]
        if self.flush_at > now:  # (a due flush that could not go waits for POLLOUT)
            times.append(self.flush_at)
        times.extend(when for when, _ in self.kills)
        for cmd in self.cmds.values():
            if cmd.status is None and cmd.deadline is not None:
                times.append(cmd.deadline)
            elif cmd.drain_until is not None:
                times.append(cmd.drain_until)
        return min(times)

    def _timers(self, now):
        for cmd in list(self.cmds.values()):
            if cmd.status is None and cmd.deadline is not None and now >= cmd.deadline:
                cmd.deadline = None
                cmd.flags |= TIMED_OUT
                self._term(cmd, now)
            elif cmd.drain_until is not None and now >= cmd.drain_until:
                self._finish(cmd)
        if self.kills:
            due = [k for k in self.kills if k[0] <= now]
            self.kills = [k for k in self.kills if k[0] > now]
            for _, pgid in due:
                _killpg(pgid, _signal.SIGKILL)
        if now - self.queued >= self.beat_every:
            self._queue(BEAT_T, 0, b"", True)
        if now - self.heard >= self.beat_timeout:
            self.stop = f"no heartbeat for {self.beat_timeout:g}s"

    def shutdown(self):
        """The controller is gone: TERM the groups of commands still running, KILL them
        after their grace period (or as soon as they are empty), then exit. Finished
        commands, and what they left behind, are not touched."""
        running = [c for c in self.cmds.values() if c.status is None]
        groups = [c.pid for c in running] + [pgid for _, pgid in self.kills]
        for pgid in groups:
            _killpg(pgid, _signal.SIGTERM)
        end = time.monotonic() + max([c.grace for c in running] or [0.0])
        while time.monotonic() < end and any(_alive(pgid) for pgid in groups):
            select.select([self.wake], [], [], 0.05)
            self._reap()
        for pgid in groups:
            _killpg(pgid, _signal.SIGKILL)


def _is_bash(shell):
    """Whether ``shell`` is bash, following symlinks (``/bin/sh`` is bash on RHEL);
    ``posix`` rather than ``os``: importing ``os`` costs ~2 ms of the start-up."""
    path = shell
    for _ in range(16):
        try:
            link = posix.readlink(path)
        except OSError:
            break
        path = link if link.startswith(b"/") else path.rsplit(b"/", 1)[0] + b"/" + link
    return path.rsplit(b"/", 1)[-1] == b"bash"


def _alive(pgid):
    try:
        posix.killpg(pgid, 0)
        return True
    except OSError:
        return False


_posix_spawn = getattr(posix, "posix_spawn", None)  # Python 3.8+


def _spawn(shell, argv, env, script_fd, out_w, err_w):
    """Start the command in a new session with default signal dispositions.

    ``posix_spawn`` (a vfork in glibc) costs half of ``os.fork`` from a Python process
    (measured: 1.5 vs 3.7 ms per ``bash -c true``); ``os.fork`` where it is missing (3.6,
    3.7) or cannot make a session (glibc < 2.26). Python ignores SIGPIPE and SIGXFSZ,
    and ignored signals survive exec: both go back to default.
    """
    global _posix_spawn
    if _posix_spawn is not None:
        actions = [
            (posix.POSIX_SPAWN_DUP2, script_fd, 0),
            (posix.POSIX_SPAWN_DUP2, out_w, 1),
            (posix.POSIX_SPAWN_DUP2, err_w, 2),
        ]
        try:
            return _posix_spawn(
                shell, argv, env, file_actions=actions, setsid=True,
                setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ),
            )  # fmt: skip
        except (NotImplementedError, TypeError):
            _posix_spawn = None
    pid = posix.fork()
    if pid == 0:
        _child(shell, argv, env, script_fd, out_w, err_w)
    return pid


def _child(shell, argv, env, script_fd, out_w, err_w):
    """In the forked child: own session, default signals, script on stdin, exec."""
    try:
        posix.setsid()
        for sig in (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGINT, _signal.SIGCHLD):
            _signal.signal(sig, _signal.SIG_DFL)
        # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec.
        _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
        _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
        posix.dup2(script_fd, 0)
        posix.dup2(out_w, 1)
        posix.dup2(err_w, 2)
        posix.execve(shell, argv, env)
    except BaseException as exc:
        try:
            name = shell.decode("utf-8", "replace")
            why = getattr(exc, "strerror", None) or exc
            posix.write(2, f"runbook executor: {name}: {why}\n".encode("utf-8", "replace"))
        finally:
            posix._exit(127)


PR_SET_DUMPABLE = 4


def _seal():
    """Make this process non-dumpable (see the module docstring); silently nothing where
    that cannot be done (no ``_ctypes``, no ``prctl``: not Linux).

    ``_ctypes`` rather than ``ctypes``: importing ``ctypes`` costs ~4 ms of every start,
    these few lines ~0.8 ms. Arguments are ``unsigned long`` (prctl is variadic)."""
    try:
        import _ctypes

        class Int(_ctypes._SimpleCData):
            _type_ = "i"

        class ULong(_ctypes._SimpleCData):
            _type_ = "L"

        class Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = Int

        class Process:
            _handle = _ctypes.dlopen(None)  # type: ignore[arg-type]  # this program

        prctl = Function(("prctl", Process))  # type: ignore[arg-type]  # has a _handle
        prctl(Int(PR_SET_DUMPABLE), ULong(0), ULong(0), ULong(0), ULong(0))
    except Exception:  # a host without it is served all the same
        pass


def main():
    _seal()
    beat_timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 15.0
    if beat_timeout <= 0:  # no heartbeat watch: only the end of stdin stops us
        beat_timeout = float("inf")
    executor = Executor(beat_timeout)
    executor.setup()
    executor.loop()


if __name__ == "__main__":
    main()
