"""Run events, one dataclass per kind, and the listener protocol.

The runner never prints: the console, the JSON event stream and the journal are all
listeners (nornir's processors, in spirit). Events are dicts only at the boundary
(``to_dict`` for ``--output json`` and the journal, ``from_dict`` when a journal is read
back); ``schemas/events.schema.json`` describes that form.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from runbook.model.command import CommandResult, StepStatus

SCHEMA_VERSION = 2


class RunStatus(enum.StrEnum):
    COMPLETED = "completed"
    HALTED = "halted"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = ""
    run_id: str
    time: float = field(default_factory=time.time)

    def body(self) -> dict[str, Any]:
        """The kind's own fields, as JSON values."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("run_id", "time"):
                continue
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue  # optional fields are written only when set
            if value is False and f.name.startswith("is_"):
                continue
            out[f.name] = value.value if isinstance(value, enum.Enum) else value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "event": self.kind,
            "time": round(self.time, 6),
            "run_id": self.run_id,
            **self.body(),
        }

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> Event:
        """Inverse of ``body`` for kinds made of plain values; a kind with an enum or a
        nested object overrides it."""
        names = {f.name for f in fields(cls)} - {"run_id", "time"}
        return cls(run_id=d["run_id"], time=d["time"], **{k: d[k] for k in names if k in d})

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Event | None:
        """An event read back from a journal; ``None`` for a kind this version does not
        know (a newer journal), so readers can skip it."""
        cls = KINDS.get(d.get("event", ""))
        return None if cls is None else cls.from_body(d)


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    runbook: str
    source: str
    digest: str
    steps: list[str]
    hosts: int
    commands: int
    forks: int
    step_count: int | None = None  # groups and inner steps each counted (Plan.step_count)


@dataclass(frozen=True, kw_only=True)
class PlanApproved(Event):
    """The saved plan this run applies was approved (SPEC §12): right after
    ``run_started``, who signed exactly these bytes (``sha256``) and how many were
    required."""

    kind: ClassVar[str] = "plan_approved"
    plan: str
    sha256: str
    required: int
    approvers: list[dict[str, str]]  # {"principal", "key"}


@dataclass(frozen=True, kw_only=True)
class StepStarted(Event):
    """A step (or a group) starts; an inner step starts once per batch of its group."""

    kind: ClassVar[str] = "step_started"
    step: str
    index: int
    hosts: list[str]
    batches: int
    on_failure: str
    max_failures: int
    group: str | None = None  # an inner step: its group and batch; a group: is_group
    batch: int | None = None
    is_group: bool = False


@dataclass(frozen=True, kw_only=True)
class BatchStarted(Event):
    """A rolling batch of a step, or of a group (``step`` is then the group's name)."""

    kind: ClassVar[str] = "batch_started"
    step: str
    batch: int
    hosts: list[str]


@dataclass(frozen=True, kw_only=True)
class CommandStarted(Event):
    """A command starts for ``host`` (its result, ``command_finished``, is that host's);
    a delegated one runs on ``delegate`` (its name in the plan's hosts)."""

    kind: ClassVar[str] = "command_started"
    step: str
    host: str
    group: str | None = None
    batch: int | None = None
    cmd: str | None = None  # a command rendered at apply time, as shown (SPEC §8)
    item: int | None = None  # a loop's item (0-based)
    delegate: str | None = None  # delegate_to: the host the command runs on


@dataclass(frozen=True, kw_only=True)
class CommandOutput(Event):
    """A chunk of a running command's output (masked, per line), as it arrives."""

    kind: ClassVar[str] = "command_output"
    step: str
    host: str
    stream: str  # stdout | stderr
    data: str


@dataclass(frozen=True, kw_only=True)
class Registered(Event):
    """A step's result stored under its ``register`` name for these hosts, or a value of
    a ``set`` step (``is_set``: any JSON value); secrets are ``((secret:NAME))`` tokens,
    so ``--resume`` can restore the value."""

    kind: ClassVar[str] = "registered"
    step: str
    name: str
    hosts: list[str]
    value: Any
    is_set: bool = False


@dataclass(frozen=True, kw_only=True)
class CommandFinished(Event):
    kind: ClassVar[str] = "command_finished"
    result: CommandResult
    group: str | None = None
    batch: int | None = None

    def body(self) -> dict[str, Any]:
        where = {"group": self.group, "batch": self.batch} if self.group is not None else {}
        return {**self.result.to_dict(), **where}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> CommandFinished:
        return cls(
            run_id=d["run_id"],
            time=d["time"],
            result=CommandResult.from_dict(d),
            group=d.get("group"),
            batch=d.get("batch"),
        )


@dataclass(frozen=True, kw_only=True)
class StepFinished(Event):
    kind: ClassVar[str] = "step_finished"
    step: str
    index: int
    status: StepStatus
    counts: dict[str, int]
    duration: float
    group: str | None = None
    batch: int | None = None
    is_group: bool = False

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> StepFinished:
        return cls(
            run_id=d["run_id"],
            time=d["time"],
            step=d["step"],
            index=d["index"],
            status=StepStatus(d["status"]),
            counts=d["counts"],
            duration=d["duration"],
            group=d.get("group"),
            batch=d.get("batch"),
            is_group=d.get("is_group", False),
        )


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: RunStatus
    exit_code: int
    halted: str | None
    counts: dict[str, int]
    duration: float
    steps_not_run: list[str]

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> RunFinished:
        return cls(
            run_id=d["run_id"],
            time=d["time"],
            status=RunStatus(d["status"]),
            exit_code=d["exit_code"],
            halted=d.get("halted"),
            counts=d["counts"],
            duration=d["duration"],
            steps_not_run=d.get("steps_not_run", []),
        )


@dataclass(frozen=True, kw_only=True)
class ConsoleDropped(Event):
    """Only in the ``--output json`` stream, never in the journal: the ``dropped`` events
    before this one were not written, because stdout was not read in time (the console
    never pauses the run for its reader; the journal has them all)."""

    kind: ClassVar[str] = "console_dropped"
    dropped: int


KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        RunStarted,
        PlanApproved,
        StepStarted,
        BatchStarted,
        CommandStarted,
        CommandOutput,
        CommandFinished,
        Registered,
        StepFinished,
        RunFinished,
        ConsoleDropped,
    )
}


class Listener(Protocol):
    """Watches the run. One that raises is detached and the run goes on: observers never
    steer (a console whose pipe closed)."""

    def handle(self, event: Event) -> None:
        """Called for every event, in order. ``CommandStarted`` comes from worker threads;
        every other event from the runner's thread."""


@runtime_checkable
class EssentialListener(Listener, Protocol):
    """A listener the run cannot go on without (the journal): when it raises, the runner
    halts rather than run on with results it cannot record."""

    essential: ClassVar[Literal[True]]
