"""Host sessions over SSH: one executor per (host, user), many commands (issue 14).

``Sessions`` keeps them: started on first use (or at connect), restarted when one died,
and — with ``transport: auto`` — replaced by exec-per-command for a host where the
executor cannot start (no ``python3``), with a warning once. ``become`` commands run
through an executor started for their user (``sudo -n -u U``), which enforces their
deadlines and kills too (SPEC §8). A host whose executor answers with a malformed hello
fails its command (``unreachable``), never the run. An executor the controller gave up
on (stopped, silent, forged frames: ``HostSession.broken``) gets a ``kill -CONT`` on a
channel of its own, so that it wakes, sees its stdin closed and kills its commands.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
from collections.abc import Callable

from runbook.errors import ConnectError, ConnectionLost
from runbook.model.command import Command, Outcome
from runbook.options import Transport
from runbook.run.contexts.base import OutputCallback
from runbook.run.ssh.channel import Connection
from runbook.run.ssh.session import (
    HostSession,
    SessionBroken,
    SessionError,
    SessionLost,
    SessionRequest,
    SessionUnavailable,
    open_channel_session,
)

WAKE_WAIT = 10.0  # seconds the kill -CONT of an abandoned executor may take

Key = tuple[str, str | None]  # (host name, user: None for the connecting user)


class Sessions:
    """The executors of one SSH context. ``None`` for a key means "use exec" (auto)."""

    def __init__(
        self,
        mode: Transport,
        kill_grace: float,
        timeout: float,
        warn: Callable[[str], None],
    ) -> None:
        self.mode = mode  # auto or session (exec has no sessions)
        self.kill_grace = kill_grace
        self.timeout = timeout
        self.warn = warn
        self._lock = threading.Lock()
        self._locks: dict[Key, threading.Lock] = {}
        self._sessions: dict[Key, HostSession | None] = {}
        self._running: dict[int, HostSession] = {}  # request id → its session
        self._woken: set[HostSession] = set()  # abandoned executors sent a kill -CONT

    @staticmethod
    def key(command: Command) -> Key:
        return (command.host.name, command.spec.user)

    def session(self, key: Key, conn: Connection) -> HostSession | None:
        """The live session for ``key`` (started now if needed), or None: use exec.
        Raises ``ConnectError`` under ``transport: session`` when none can start."""
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._sessions:
                found = self._sessions[key]
                if found is None or found.alive:
                    return found
                if found.broken is not None:
                    self._wake(found, key, conn)
                found.close(wait=0)
            try:
                started = open_channel_session(
                    conn.transport, name=key[0], become_user=key[1], timeout=self.timeout
                )
            except SessionBroken as exc:
                raise ConnectError(key[0], str(exc)) from exc
            except SessionUnavailable as exc:
                if self.mode == Transport.SESSION:
                    raise ConnectError(key[0], str(exc)) from exc
                self.warn(f"{exc}; using one SSH channel per command on {key[0]}")
                started = None
            self._sessions[key] = started
            return started

    def run(
        self,
        session: HostSession,
        command: Command,
        on_output: OutputCallback | None,
        conn: Connection,
    ) -> Outcome:
        """One command through ``session``. Raises ``SessionLost`` when the request never
        went out (the caller may start it again), ``ConnectionLost`` when it may have run."""
        request = SessionRequest(
            script=command.cmd,
            env=dict(command.env),
            shell=command.spec.shell,
            timeout=command.timeout,
            kill_grace=self.kill_grace,
        )
        with self._lock:
            self._running[request.id] = session
        try:
            result = session.run(request, on_output)
        except SessionLost as exc:
            if not exc.may_have_run:
                raise
            if session.broken is not None:
                self._wake(session, self.key(command), conn)
                raise ConnectionLost(
                    command.host.name,
                    f"gave up on the runbook executor on {conn.endpoint}: {session.broken}; "
                    "the command may have partly run",
                ) from exc
            transport = conn.transport
            why = transport.loss() if not transport.is_active() else "the executor ended"
            raise ConnectionLost(
                command.host.name,
                f"connection to {conn.endpoint} lost during the command ({why}); "
                "it may have partly run",
            ) from exc
        except SessionError as exc:
            raise ConnectError(command.host.name, str(exc)) from exc
        finally:
            with self._lock:
                self._running.pop(request.id, None)
        return Outcome(
            rc=result.rc,
            stdout=result.stdout,
            stderr=result.stderr,
            timed_out=result.timed_out,
            killed=result.killed,
            dropped=result.dropped,
        )

    def forget(self, host: str) -> None:
        """Close and drop ``host``'s sessions (its connection is being replaced: a
        reboot, or a wait for a new session); the next command starts a new one."""
        with self._lock:
            keys = [k for k in self._sessions if k[0] == host]
            gone = [self._sessions.pop(k) for k in keys]
        for s in gone:
            if s is not None:
                s.close(wait=0)

    def _wake(self, session: HostSession, key: Key, conn: Connection) -> None:
        """Once per abandoned executor, in the background: ``kill -CONT`` it (as its
        user), so that a stopped one sees its stdin closed and kills its commands."""
        with self._lock:
            if session.pid is None or session in self._woken or not conn.alive:
                return
            self._woken.add(session)
        argv = ["kill", "-CONT", str(session.pid)]
        if key[1] is not None:
            argv = ["sudo", "-n", "-u", key[1], "--", *argv]

        def wake() -> None:
            with contextlib.suppress(Exception):  # best effort: the host may be gone too
                chan = conn.transport.open_session(timeout=WAKE_WAIT)
                try:
                    chan.exec_command(shlex.join(argv))
                    chan.status_event.wait(WAKE_WAIT)
                finally:
                    chan.close()

        threading.Thread(target=wake, daemon=True, name=f"wake-{key[0]}").start()

    def kill_all(self) -> None:
        """Ask every executor to kill what it runs for us (no second channel needed)."""
        with self._lock:
            running = list(self._running.items())
        for request_id, session in running:
            session.kill(request_id, self.kill_grace)

    def close(self) -> None:
        """Every executor is told at once (its stdin ends), then each is waited for: the
        round trips overlap, so 50 sessions close in about one of them, not 50 in turn."""
        with self._lock:
            sessions = [s for s in self._sessions.values() if s is not None]
            self._sessions.clear()
        for s in sessions:
            s.begin_close()
        for s in sessions:
            s.close()
