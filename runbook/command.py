"""A unit of work (``Command``: one step on one host) and what became of it."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from runbook.model import Host
from runbook.spec import ExecSpec


class Status(enum.StrEnum):
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


class StepStatus(enum.StrEnum):
    """How a step ended: every host ok; failures within the tolerance; failed (the run
    halts); or never run (cancelled)."""

    OK = "ok"
    TOLERATED = "tolerated"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Command:
    """A rendered command for one host, ready to run. Built by the planner, never mutated.

    ``spec`` is shared with the planned step. ``skip_reason`` is set when the planner
    decided not to run it (``when`` was false); such a command is reported ``skipped``
    without touching the host.
    """

    step: str
    host: Host
    cmd: str
    env: dict[str, str] = field(default_factory=dict)
    spec: ExecSpec = ExecSpec()
    # Runbook vars the ``until`` expression reads, bound at plan time.
    until_vars: dict[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.step, self.host.name)

    @property
    def timeout(self) -> float:
        return self.spec.timeout

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"host": self.host.name, "cmd": self.cmd}
        if self.env:
            d["env"] = dict(self.env)
        d.update(self.spec.to_dict())
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
    # Unreachable after the command was sent: it may have partly run (outcome unknown).
    maybe_ran: bool = False

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
            **({"maybe_ran": True} if self.maybe_ran else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CommandResult:
        """A journaled result (``command_finished``) read back."""
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
            maybe_ran=bool(d.get("maybe_ran", False)),
        )

    @classmethod
    def decided(cls, command: Command, status: Status, error: str | None) -> CommandResult:
        """A result reached without running anything (skipped, cancelled, resumed...)."""
        now = time.time()
        return cls(command.step, command.host.name, status, started=now, finished=now, error=error)


def decode(data: bytes) -> str:
    """Output is bytes; reports are text. Invalid UTF-8 is replaced, never fatal."""
    return data.decode("utf-8", errors="replace")
