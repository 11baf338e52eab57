"""A unit of work (``Command``: one step on one host) and what became of it."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.errors import ConnectError
from runbook.model import Host

if TYPE_CHECKING:
    from runbook.contexts.base import ExecutionContext


class Status(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def is_failure(self) -> bool:
        """Failures count against ``max_failures``; skipped and cancelled do not."""
        return self in (Status.FAILED, Status.TIMED_OUT, Status.UNREACHABLE)


STATUS_ORDER = tuple(Status)


@dataclass(frozen=True)
class Command:
    """A rendered command for one host, ready to run. Built by the planner, never mutated.

    ``skip_reason`` is set when the planner decided not to run it (``when`` was false);
    such a command is reported ``skipped`` without touching the host.
    """

    step: str
    host: Host
    cmd: str
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    shell: str = "/bin/bash"
    become: bool = False
    become_user: str | None = None
    retries: int = 0
    delay: float = 0.0
    until: str | None = None
    # Runbook vars the ``until`` expression reads, bound at plan time.
    until_vars: dict[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.step, self.host.name)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"host": self.host.name, "cmd": self.cmd}
        if self.env:
            d["env"] = dict(self.env)
        d["timeout"] = self.timeout
        if self.shell != "/bin/bash":
            d["shell"] = self.shell
        if self.become:
            d["become"] = True
            if self.become_user:
                d["become_user"] = self.become_user
        if self.retries:
            d["retries"] = self.retries
            d["delay"] = self.delay
        if self.until:
            d["until"] = self.until
            if self.until_vars:
                d["until_vars"] = dict(self.until_vars)
        if self.skip_reason:
            d["skipped"] = self.skip_reason
        return d


@dataclass
class Outcome:
    """What an execution context observed for one attempt."""

    rc: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False
    killed: bool = False


@dataclass
class CommandResult:
    """The result of a command after all its attempts. ``ok``/``failed`` read like Invoke's."""

    step: str
    host: str
    status: Status
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    started: float = 0.0
    finished: float = 0.0
    attempts: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def failed(self) -> bool:
        return self.status.is_failure

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "host": self.host,
            "status": self.status.value,
            "rc": self.rc,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "started": round(self.started, 6),
            "finished": round(self.finished, 6),
            "duration": round(self.duration, 6),
            "attempts": self.attempts,
            "error": self.error,
        }

    @classmethod
    def decided(cls, command: Command, status: Status, error: str | None) -> CommandResult:
        """A result reached without running anything (skipped, cancelled, resumed...)."""
        now = time.time()
        return cls(command.step, command.host.name, status, started=now, finished=now, error=error)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CommandResult:
        return cls(
            step=d["step"],
            host=d["host"],
            status=Status(d["status"]),
            rc=d.get("rc"),
            stdout=d.get("stdout", ""),
            stderr=d.get("stderr", ""),
            started=d.get("started", 0.0),
            finished=d.get("finished", 0.0),
            attempts=d.get("attempts", 0),
            error=d.get("error"),
        )


FAULT_ENV = "RUNBOOK_FAULT_POINT"


def decode(data: bytes) -> str:
    """Output is bytes; reports are text. Invalid UTF-8 is replaced, never fatal."""
    return data.decode("utf-8", errors="replace")


def run_command(
    command: Command,
    context: ExecutionContext,
    *,
    fault_point: str | None = None,
    cancel: threading.Event | None = None,
    mask: Callable[[str], str] = str,
) -> CommandResult:
    """Run ``command`` with its retries; the one place that decides a command's status.

    A connection that could not be established is ``unreachable`` (the context already
    retried the connect); a command that started is re-run only when ``retries`` says so.
    """
    if command.skip_reason is not None:
        return CommandResult.decided(command, Status.SKIPPED, command.skip_reason)
    cancel = cancel or threading.Event()
    started = time.time()
    attempts = 0
    while True:
        attempts += 1
        if fault_point and command.step.startswith(fault_point):
            outcome = Outcome(rc=1, stderr=b"fault injection")
        else:
            try:
                outcome = context.execute(command)
            except ConnectError as exc:
                return CommandResult(
                    command.step,
                    command.host.name,
                    Status.UNREACHABLE,
                    started=started,
                    finished=time.time(),
                    attempts=attempts,
                    error=mask(exc.message),
                )
        stdout, stderr = decode(outcome.stdout), decode(outcome.stderr)
        status, error = _judge(command, outcome, stdout, stderr)
        if status is Status.OK or outcome.killed or attempts > command.retries:
            break
        if cancel.wait(command.delay):  # halted while waiting: do not start again
            break
    return CommandResult(
        command.step,
        command.host.name,
        status,
        rc=outcome.rc,
        stdout=mask(stdout),
        stderr=mask(stderr),
        started=started,
        finished=time.time(),
        attempts=attempts,
        error=error,
    )


def _judge(
    command: Command, outcome: Outcome, stdout: str, stderr: str
) -> tuple[Status, str | None]:
    if outcome.killed:
        return Status.FAILED, "killed: the run was interrupted"
    if outcome.timed_out:
        return Status.TIMED_OUT, f"timed out after {command.timeout:g}s; process group killed"
    if command.until:
        from runbook.templating import evaluate

        context = {**command.until_vars, "rc": outcome.rc, "stdout": stdout, "stderr": stderr}
        done = evaluate(command.until, context)
        return (Status.OK, None) if done else (Status.FAILED, f"until not met: {command.until}")
    if outcome.rc == 0:
        return Status.OK, None
    return Status.FAILED, f"exit code {outcome.rc}"
