"""Runs commands over SSH with paramiko: one connection per host, reused by every step.

A command runs through the host's session (``sessions``: one executor per host and
become user, many commands), or on an exec channel of its own (``channel``) under
``--transport exec``, on a host that cannot start an executor, or under ``auto`` for a
host that runs a single command (an executor's start costs more than it saves there).

Imported lazily by the CLI (only when a plan has SSH hosts): paramiko is slow to import.

Statuses, as ``run_command`` derives them from what this context reports:

- The connection cannot be established (refused, reset, DNS, banner dropped by sshd's
  MaxStartups, timeout; retried ``connect_retries`` times with capped exponential backoff
  and jitter; auth and host-key failures are not retried) → ``ConnectError`` →
  ``unreachable``. The failure is remembered: every later command on that host raises
  at once.
- The connection dies while a command runs (peer killed, reset, or silent for
  ``3 * keepalive`` seconds) → ``ConnectError`` → ``unreachable``; the command may have
  partly run and is never re-run silently. The dead connection is dropped; the next
  command on that host reconnects (with retries) and the host is unreachable from then
  on only if that fails.
- The command outlives its timeout → ``Outcome(timed_out=True)``; ``kill_all`` →
  ``Outcome(killed=True)``. Either way the remote process group is killed, TERM then KILL
  after ``kill_grace``: closing a channel does not kill anything (paramiko #203).

On an exec channel, the wire command (``channel.wire_command``) runs the command under
GNU ``timeout``, which leads its own process group and is a remote-side deadline that
holds even if the controller dies; its first stderr line reports that group, which the
controller kills through a second channel. Remote hosts need a POSIX ``/bin/sh``; without
``timeout`` the command still runs and is still killed by the controller. An executor
enforces deadlines and kills itself (``runbook.remote.executor``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import paramiko

from runbook.errors import ConnectError
from runbook.model.command import Command, Outcome
from runbook.model.runbook import Host
from runbook.options import SshOptions, Transport
from runbook.run.contexts.base import ExecutionContext, OutputCallback
from runbook.run.ssh.channel import ChannelRun, Connection, NotStarted, describe
from runbook.run.ssh.config import ConfigError, Endpoint, load_config, resolve
from runbook.run.ssh.hostkeys import HostKeyError, HostKeyVerifier
from runbook.run.ssh.paramiko_adapter import WatchedTransport
from runbook.run.ssh.session import SessionLost
from runbook.run.ssh.sessions import Sessions
from runbook.run.transfer.control import Transfers

__all__ = ["SshExecutionContext", "SshOptions"]

BACKOFF_BASE = 0.5  # seconds before the first connect retry; doubles each time
BACKOFF_CAP = 8.0

# paramiko logs every failed handshake with a traceback at ERROR; without a handler of
# its own, Python's last-resort handler would print them to the operator's terminal.
# Failures reach the operator as ConnectError; an application that configures logging
# still gets paramiko's records.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class _Retry(Exception):
    """A connection attempt failed in a way a later attempt may not (network, sshd load)."""


class SshExecutionContext(ExecutionContext):
    """One paramiko connection per host, opened lazily, reused by every command.

    ``warnings`` collects what the operator should be told (unverified or newly recorded
    host keys); ``on_warning`` is also called with each as it happens. ``runs``: how many
    shell commands each host may run; under ``transport: auto`` a host that runs at most
    one uses an exec channel, not an executor (starting one costs a round trip and ~15 ms
    of host CPU, more than one command saves).
    """

    def __init__(
        self,
        options: SshOptions | None = None,
        *,
        on_warning: Callable[[str], None] | None = None,
        runs: Mapping[str, int] | None = None,
    ) -> None:
        self.options = options or SshOptions()
        self._runs = runs
        self.warnings: list[str] = []
        self._on_warning = on_warning
        self._verifier = HostKeyVerifier(self.options.host_key_policy, self._warn)
        self._config: paramiko.SSHConfig | None = None
        self._config_loaded = False
        self._lock = threading.Lock()
        self._locks: dict[object, threading.Lock] = {}
        self._conns: dict[object, Connection] = {}
        self._errors: dict[object, ConnectError] = {}
        self._running: set[ChannelRun] = set()
        self._closing = threading.Event()
        self._transfers = Transfers()
        transport = self.options.transport
        self._sessions = (
            None
            if transport == Transport.EXEC
            else Sessions(
                transport, self.options.kill_grace, self.options.connect_timeout, self._warn
            )
        )

    # -- the ExecutionContext interface -------------------------------------------------

    def connect(self, host: Host) -> None:
        """The connection, and (unless ``transport: exec``) the host's executor: starting
        it costs a round trip and ~15 ms of host CPU, paid here in parallel."""
        conn = self._connection(host)
        sessions = self._sessions_for(host)
        if sessions is not None:
            sessions.session((host.name, None), conn)

    def reconnect(self, host: Host) -> None:
        """One new connection (no retries: the caller polls), the old one, its sessions
        and a remembered failure dropped first."""
        key = host.name
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            self._errors.pop(key, None)
            with self._lock:
                old = self._conns.pop(key, None)
        if self._sessions is not None:
            self._sessions.forget(key)
        if old is not None:
            old.close()
        self._cached(
            key,
            key,
            lambda: resolve(host, self._ssh_config(), self.options.known_hosts),
            retries=0,
        )

    def execute(self, command: Command, on_output: OutputCallback | None = None) -> Outcome:
        for attempt in range(2):
            try:
                return self._attempt(command, on_output)
            except (NotStarted, SessionLost) as exc:
                # The connection or the session died while idle (noticed only now); the
                # command never started, so starting it again (reconnecting) is safe.
                if attempt:
                    raise ConnectError(command.host.name, str(exc)) from exc
        raise AssertionError("not reached")

    def transfer(self, command: Command) -> Outcome:
        """A copy or fetch on exec channels of the host's connection
        (``runbook.run.transfer.remote``)."""
        from runbook.run.transfer import remote

        conn = self._connection(command.host)
        return self._transfers.run(command, lambda watch: remote.transfer(conn, command, watch))

    def _attempt(self, command: Command, on_output: OutputCallback | None) -> Outcome:
        conn = self._connection(command.host)
        sessions = self._sessions_for(command.host)
        if sessions is not None:
            session = sessions.session(Sessions.key(command), conn)
            if session is not None:
                return sessions.run(session, command, on_output, conn)
        run = ChannelRun(
            conn,
            command,
            connect_timeout=self.options.connect_timeout,
            kill_grace=self.options.kill_grace,
            on_output=on_output,
        )
        with self._lock:
            self._running.add(run)
        try:
            return run.run()
        finally:
            with self._lock:
                self._running.discard(run)

    def _sessions_for(self, host: Host) -> Sessions | None:
        """The executors, unless ``host`` runs its commands over exec (``runs``)."""
        if self.options.transport != Transport.AUTO or self._runs is None:
            return self._sessions
        return self._sessions if self._runs.get(host.name, 0) > 1 else None

    def kill_all(self) -> None:
        self._transfers.cancel_all()
        if self._sessions is not None:
            self._sessions.kill_all()
        with self._lock:
            runs = list(self._running)
        # In parallel: each kill opens a channel, a round trip to its host.
        threads = [threading.Thread(target=r.request_kill, args=("kill",)) for r in runs]
        for t in threads:
            t.start()
        deadline = time.monotonic() + self.options.connect_timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self._closing.set()
        if self._sessions is not None:
            self._sessions.close()
        with self._lock:
            conns = sorted(self._conns.items(), key=lambda kv: not isinstance(kv[0], str))
            self._conns.clear()
        # Hosts first, jump hosts (tuple keys) last: their transports carry the others.
        for _, conn in conns:
            conn.close()

    # -- connections ----------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        with self._lock:
            self.warnings.append(message)
        if self._on_warning is not None:
            self._on_warning(message)

    def _connection(self, host: Host) -> Connection:
        return self._cached(
            host.name,
            host.name,
            lambda: resolve(host, self._ssh_config(), self.options.known_hosts),
        )

    def _ssh_config(self) -> paramiko.SSHConfig | None:
        """Read once, on first use: an unreadable config makes hosts unreachable, with why."""
        with self._lock:
            if not self._config_loaded:
                self._config = load_config(self.options.ssh_config)
                self._config_loaded = True
            return self._config

    def _cached(
        self,
        key: object,
        label: str,
        endpoint: Callable[[], Endpoint],
        retries: int | None = None,
    ) -> Connection:
        """The live connection for ``key``, opened under a per-key lock (``retries``: the
        options' ``connect_retries`` unless given).

        A failure to connect is remembered; a connection that died is reopened.
        """
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._errors:
                raise ConnectError(label, self._errors[key].message)
            if self._closing.is_set():
                raise ConnectError(label, "the SSH context is closed")
            conn = self._conns.get(key)
            if conn is not None and conn.alive:
                return conn
            if conn is not None:
                conn.close()
            try:
                conn = self._open(endpoint(), retries)
            except ConfigError as exc:
                self._errors[key] = ConnectError(label, str(exc))
                raise self._errors[key] from exc
            except ConnectError as exc:
                self._errors[key] = ConnectError(label, exc.message)
                raise self._errors[key] from exc
            with self._lock:
                self._conns[key] = conn
            return conn

    def _open(self, ep: Endpoint, retries: int | None = None) -> Connection:
        """Connect with retries; raises ``ConnectError`` naming the endpoint's label."""
        attempts = 1 + max(0, self.options.connect_retries if retries is None else retries)
        # A server that accepts TCP and then drops us before its banner is alive but busy
        # (sshd's MaxStartups): keep trying for as long as the attempts could take anyway.
        busy_until = time.monotonic() + attempts * self.options.connect_timeout
        attempt = 0
        while True:
            tried = time.monotonic()
            try:
                return self._open_once(ep)
            except _Retry as exc:
                attempt += 1
                # Dropped quickly (reset, EOF before the banner), not a timeout: busy.
                dropped = time.monotonic() - tried < self.options.connect_timeout / 2
                busy = dropped and "MaxStartups" in str(exc) and time.monotonic() < busy_until
                if attempt >= attempts and not busy:
                    suffix = f" (gave up after {attempt} attempts)" if attempt > 1 else ""
                    raise ConnectError(ep.label, f"{exc}{suffix}") from exc
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempt - 1, 2))
            if self._closing.wait(delay / 2 + random.uniform(0, delay / 2)):
                raise ConnectError(ep.label, "connection abandoned: the run is closing")
        raise AssertionError("not reached")

    def _open_once(self, ep: Endpoint) -> Connection:
        opts = self.options
        try:
            preferred = self._verifier.preferred_algorithms(ep.known_hosts_name, ep.known_hosts)
        except HostKeyError as exc:
            raise ConnectError(ep.label, str(exc)) from exc
        sock = self._socket(ep)

        def transport_factory(sock: Any, **kwargs: Any) -> WatchedTransport:
            transport = WatchedTransport(sock, **kwargs)
            if preferred:
                security = transport.get_security_options()
                rest = [a for a in security.key_types if a not in preferred]
                security.key_types = [a for a in preferred if a in security.key_types] + rest
            return transport

        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_Verify(self._verifier, ep))
        try:
            client.connect(
                ep.address,
                ep.port,
                username=ep.user,
                # paramiko accepts a list (its stubs say str)
                key_filename=list(ep.identity_files),  # type: ignore[arg-type]
                timeout=opts.connect_timeout,
                banner_timeout=opts.connect_timeout,
                auth_timeout=opts.connect_timeout,
                channel_timeout=opts.connect_timeout,
                allow_agent=not ep.identities_only,
                look_for_keys=not ep.identities_only,
                sock=sock,
                transport_factory=transport_factory,
            )
        except (HostKeyError, OSError, EOFError, paramiko.SSHException) as exc:
            client.close()
            with contextlib.suppress(OSError):
                sock.close()
            raise self._classify(ep, exc) from exc
        conn = Connection(ep, client)
        conn.transport.watch(opts.keepalive)
        return conn

    @staticmethod
    def _classify(ep: Endpoint, exc: BaseException) -> ConnectError | _Retry:
        """Auth, host-key and negotiation failures are final; the rest may be transient."""
        if isinstance(exc, HostKeyError):
            return ConnectError(ep.label, str(exc))
        if isinstance(exc, paramiko.AuthenticationException) or (
            str(exc) == "No authentication methods available"
        ):
            keys = ", ".join(ep.identity_files) or "default keys"
            agent = "" if ep.identities_only else " and the ssh-agent"
            return ConnectError(
                ep.label, f"authentication failed for {ep} (tried {keys}{agent}): {exc}"
            )
        if isinstance(exc, paramiko.ssh_exception.IncompatiblePeer):
            return ConnectError(ep.label, f"cannot negotiate with {ep}: {exc}")
        return _Retry(f"SSH handshake with {ep} failed: {describe(exc)}")

    def _socket(self, ep: Endpoint) -> socket.socket | paramiko.Channel | paramiko.ProxyCommand:
        where = f"{ep.address}:{ep.port}"
        if ep.jump is not None:
            jump = ep.jump
            try:
                via = self._cached(jump.key, jump.label, lambda: jump)
            except ConnectError as exc:
                raise ConnectError(ep.label, f"via {jump.label}: {exc.message}") from exc
            try:
                return via.transport.open_channel(
                    "direct-tcpip",
                    (ep.address, ep.port),
                    ("127.0.0.1", 0),
                    timeout=self.options.connect_timeout,
                )
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise _Retry(f"{jump.label} cannot reach {where}: {describe(exc)}") from exc
        if ep.proxy_command:
            try:
                return paramiko.ProxyCommand(ep.proxy_command)
            except (OSError, paramiko.SSHException) as exc:
                raise _Retry(f"ProxyCommand for {where} failed: {exc}") from exc
        try:
            sock = socket.create_connection((ep.address, ep.port), self.options.connect_timeout)
        except socket.gaierror as exc:
            raise _Retry(f"cannot resolve {ep.address}: {exc.strerror}") from exc
        except TimeoutError as exc:
            raise _Retry(
                f"timed out connecting to {where} after {self.options.connect_timeout:g}s"
            ) from exc
        except ConnectionRefusedError as exc:
            raise _Retry(f"connection refused by {where} (is sshd running?)") from exc
        except OSError as exc:
            raise _Retry(f"cannot connect to {where}: {describe(exc)}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small requests, no Nagle
        return sock


class _Verify(paramiko.MissingHostKeyPolicy):
    """Every key goes through here: the client is given no known keys of its own."""

    def __init__(self, verifier: HostKeyVerifier, ep: Endpoint) -> None:
        self.verifier, self.ep = verifier, ep

    def missing_host_key(self, client: object, hostname: str, key: paramiko.PKey) -> None:
        ep = self.ep
        self.verifier.verify(
            ep.label, ep.known_hosts_name, key, ep.known_hosts, ep.port, ep.address
        )
