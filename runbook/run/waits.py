"""``wait_for`` and ``reboot`` at run time: the controller polls until a state is reached.

A wait is ``ok`` when its state is reached and ``timed_out`` when its ``timeout`` passes
first; the message says what was seen last (SPEC section 10). Polls are ``delay`` apart;
one that is under way when the time runs out (a TCP connect, an SSH handshake) finishes
first, so a wait may end up to one connection attempt after its timeout. Only the
second Ctrl-C (``kill``) stops a wait early, as it kills a running command.

``reboot`` reads ``check``, runs ``command`` (the connection dropping under it is what a
reboot does), then polls: a new connection, and ``check`` again, until ``check`` prints
something else. The poll does not insist on seeing the host down first (a fast reboot
is over between two polls); what proves the reboot is the changed ``check``. Every
poll replaces the host's connection and sessions, so the commands after a reboot run on
a new session.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

from runbook.errors import ConnectError
from runbook.model.command import Command, CommandResult, Outcome, Status, decode
from runbook.model.waits import ConnectionState, PortState, WaitAction, WaitKind
from runbook.run.contexts.base import ExecutionContext

PROBE_TIMEOUT = 5.0  # seconds: one TCP connect of a port wait, at most


class _Clock:
    """The wait's deadline and its polls."""

    def __init__(self, action: WaitAction, kill: threading.Event) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + action.timeout
        self.delay = action.delay
        self.kill = kill

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def sleep(self) -> bool:
        """Wait for the next poll; False when the time is up or the run is being killed."""
        pause = min(self.delay, max(0.0, self.left()))
        if self.kill.wait(pause):
            return False
        return self.left() > 0

    def took(self) -> str:
        return f"{time.monotonic() - self.started:.1f}s"


def run_wait(command: Command, context: ExecutionContext, kill: threading.Event) -> CommandResult:
    """Run one host's wait or reboot to its end; never raises for what the host does."""
    action = command.wait
    assert action is not None
    started = time.time()
    clock = _Clock(action, kill)
    if action.kind is WaitKind.REBOOT:
        status, message, output = _reboot(command, action, context, clock)
    elif action.connection is not None:
        status, message = _connection(command, action.connection, context, clock)
        output = ""
    else:
        status, message = _port(action, clock)
        output = ""
    if kill.is_set() and status is not Status.OK:
        status, message = Status.FAILED, f"killed: the run was interrupted ({message})"
    return CommandResult(
        command.step,
        command.host.name,
        status,
        stdout=output or (message + "\n" if status is Status.OK else ""),
        started=started,
        finished=time.time(),
        attempts=1,
        error=None if status is Status.OK else message,
    )


# -- a TCP port, from the controller -----------------------------------------------------


def _port(action: WaitAction, clock: _Clock) -> tuple[Status, str]:
    where = f"port {action.port} on {action.address}"
    want = action.state
    while True:
        seen = _probe(str(action.address), int(action.port or 0), clock)
        if (seen == "open") == (want is PortState.STARTED):
            return Status.OK, f"{where} is {want.value} (after {clock.took()})"
        if not clock.sleep():
            return Status.TIMED_OUT, (
                f"{where} not {want.value} after {action.timeout:g}s (last seen: {seen})"
            )


def _probe(address: str, port: int, clock: _Clock) -> str:
    """``open``, or why not (``connection refused``, ``timed out``...)."""
    try:
        timeout = max(0.1, min(PROBE_TIMEOUT, clock.left()))
        with socket.create_connection((address, port), timeout):
            return "open"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return "no answer (timed out)"
    except OSError as exc:
        return exc.strerror or str(exc)


# -- a new SSH session ---------------------------------------------------------------------


def _connection(
    command: Command, want: ConnectionState, context: ExecutionContext, clock: _Clock
) -> tuple[Status, str]:
    host = command.host
    while True:
        try:
            context.reconnect(host)
            up, seen = True, "a new session was accepted"
        except ConnectError as exc:
            up, seen = False, exc.message
        if up == (want is ConnectionState.UP):
            return Status.OK, f"connection {want.value} (after {clock.took()}): {seen}"
        if not clock.sleep():
            return Status.TIMED_OUT, (
                f"connection not {want.value} after {command.wait.timeout:g}s "  # type: ignore[union-attr]
                f"(last seen: {seen})"
            )


# -- reboot --------------------------------------------------------------------------------


def _reboot(
    command: Command, action: WaitAction, context: ExecutionContext, clock: _Clock
) -> tuple[Status, str, str]:
    check = replace(command, cmd=str(action.check), wait=None)
    try:
        before = _output(context.execute(check))
    except (ConnectError, _Failed) as exc:
        return Status.FAILED, f"check before the reboot failed: {_why(exc)}", ""
    try:
        outcome = context.execute(replace(command, cmd=str(action.command), wait=None))
        if outcome.timed_out:
            return Status.FAILED, f"reboot command timed out after {command.timeout:g}s", ""
        if outcome.rc not in (0, None):
            err = decode(outcome.stderr).strip()
            return Status.FAILED, f"reboot command failed: exit code {outcome.rc}: {err}", ""
    except ConnectError:
        pass  # the connection went with the host: that is a reboot
    seen = "not polled yet"
    went_down = False
    while clock.sleep():
        try:
            context.reconnect(command.host)
            after = _output(context.execute(check))
        except ConnectError as exc:
            went_down = True
            seen = f"down ({exc.message})"
            continue
        except _Failed as exc:
            seen = f"up, but check failed ({exc})"
            continue
        if after != before:
            how = "went down and came back" if went_down else "came back"
            output = f"check before: {before}\ncheck after: {after}\n"
            return Status.OK, f"rebooted: {how} after {clock.took()}", output
        seen = f"up, check unchanged ({after}): not rebooted yet"
    return Status.TIMED_OUT, f"no reboot seen within {action.timeout:g}s (last seen: {seen})", ""


class _Failed(Exception):
    """The check ran and failed."""


def _output(outcome: Outcome) -> str:
    if outcome.timed_out or outcome.killed or outcome.rc != 0:
        why = "timed out" if outcome.timed_out else f"exit code {outcome.rc}"
        raise _Failed(f"{why}: {decode(outcome.stderr).strip()}".rstrip(": "))
    return decode(outcome.stdout).strip()


def _why(exc: Exception) -> str:
    return exc.message if isinstance(exc, ConnectError) else str(exc)
