"""A unit of work (``Command``: one step on one host) and what became of it."""

from __future__ import annotations

import enum
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runbook.errors import Position
from runbook.model.controller import Controlled, Loop, LoopItem, controlled_to_dict
from runbook.model.files import Transfer
from runbook.model.runbook import Host
from runbook.model.spec import ExecSpec
from runbook.model.waits import WaitAction


class Status(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    # A group's inner step failed on the host and its rescue steps all succeeded: this
    # result replaces that failure (SPEC section 10).
    RESCUED = "rescued"

    @property
    def is_failure(self) -> bool:
        """Failures count against ``max_failures``; skipped, cancelled and rescued do not."""
        return self in (Status.FAILED, Status.TIMED_OUT, Status.UNREACHABLE)


def status_counts(statuses: Iterable[Status]) -> dict[str, int]:
    """Every status with its count (zeros included), in ``Status`` order: the one tally
    behind ``step_finished``/``run_finished``, the recap, ``runs`` and ``show``."""
    c = Counter(statuses)
    return {s.value: c.get(s, 0) for s in Status}


def counts_text(counts: Mapping[str, int]) -> str:
    """``3 ok, 1 failed``: the statuses that occur, in the order given."""
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


class StepStatus(enum.StrEnum):
    """How a step ended: every host ok; failures within the tolerance; failed (the run
    halts); or never run (cancelled)."""

    OK = "ok"
    TOLERATED = "tolerated"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Templates:
    """A command's templates and where each is written: what the planner renders for a
    step on each host. A command rendered at apply time keeps them, plus the values they
    read (SPEC §8): it reads a registered value (``deferred``: known only at run time) or
    a secret (``secret``: never rendered into anything shown or stored)."""

    run: str
    env: tuple[tuple[str, str], ...] = ()  # the runbook's env templates, in order
    step_env: tuple[tuple[str, str], ...] = ()  # the step's (they see the runbook's as env)
    when: str | None = None
    values: dict[str, Any] = field(default_factory=dict)  # bound at plan time
    secrets: tuple[str, ...] = ()  # secret names read
    registers: tuple[str, ...] = ()  # registered names read (``hostvars`` included)
    positions: dict[str, Position] = field(default_factory=dict, compare=False)

    @property
    def deferred(self) -> bool:
        return bool(self.registers)

    @property
    def secret(self) -> bool:
        return bool(self.secrets)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"run": self.run}
        if self.env:
            d["env"] = [list(kv) for kv in self.env]
        if self.step_env:
            d["step_env"] = [list(kv) for kv in self.step_env]
        if self.when is not None:
            d["when"] = self.when
        d["values"] = self.values
        if self.secrets:
            d["secrets"] = list(self.secrets)
        if self.registers:
            d["registers"] = list(self.registers)
        d["positions"] = {k: str(p) for k, p in self.positions.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Templates:
        return cls(
            run=str(d["run"]),
            env=tuple((str(k), str(v)) for k, v in d.get("env", ())),
            step_env=tuple((str(k), str(v)) for k, v in d.get("step_env", ())),
            when=d.get("when"),
            values=dict(d.get("values", {})),
            secrets=tuple(d.get("secrets", ())),
            registers=tuple(d.get("registers", ())),
            positions={k: Position.parse(v) for k, v in d.get("positions", {}).items()},
        )


@dataclass(frozen=True)
class Command:
    """A rendered command for one host, ready to run. Built by the planner, never mutated.

    ``spec`` is shared with the planned step. ``skip_reason`` is set when the planner
    decided not to run it (``when`` was false); such a command is reported ``skipped``
    without touching the host. ``host`` is always the host the command is *for* (its
    result, journal and resume are that host's); a delegated command runs on
    ``delegate`` instead (``runs_on``).
    """

    step: str
    host: Host
    cmd: str
    env: dict[str, str] = field(default_factory=dict)
    spec: ExecSpec = ExecSpec()
    # Runbook vars the ``until`` expression reads, bound at plan time.
    until_vars: dict[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None
    # Set when the command is rendered at apply time; ``cmd``/``env`` are then only its
    # shown form (the template, or a rendering with secret stand-ins).
    templates: Templates | None = None
    # A copy or fetch instead of a shell command; ``cmd`` is then its summary.
    transfer: Transfer | None = None
    # delegate_to: the machine it runs on (the controller: a local host).
    delegate: Host | None = None
    # A wait_for or reboot instead of a shell command; ``cmd`` is then its summary.
    wait: WaitAction | None = None
    # One item of a ``loop`` (the host's items run in order); a loop whose list is known
    # only at run time (expanded into items then); a ``set`` or ``assert``, evaluated on
    # the controller (``cmd`` is then its summary).
    item: LoopItem | None = None
    loop: Loop | None = None
    controlled: Controlled | None = None
    # Where ``until`` is written: a run-time error evaluating it names FILE:LINE.
    until_at: Position | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.step, self.host.name)

    @property
    def runs_on(self) -> Host:
        """Where the command executes: its delegate, else its host."""
        return self.delegate or self.host

    @property
    def is_shell(self) -> bool:
        """A shell command (not a copy, fetch, wait, reboot, set or assert, whose ``cmd`` is
        a summary)."""
        return self.transfer is None and self.wait is None and self.controlled is None

    @property
    def item_index(self) -> int | None:
        return None if self.item is None else self.item.index

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
        if self.spec.until is not None and self.until_at is not None:
            d["until_at"] = str(self.until_at)
        if self.skip_reason:
            d["skipped"] = self.skip_reason
        if self.templates is not None:
            if self.templates.deferred:
                d["deferred"] = True
            if self.templates.secret:
                d["secret"] = True
            d["templates"] = self.templates.to_dict()
        if self.transfer is not None:
            d["transfer"] = self.transfer.to_dict()
        if self.delegate is not None:
            d["delegate"] = self.delegate.name
        if self.wait is not None:
            d["wait"] = self.wait.to_dict()
        if self.item is not None:
            d["item"] = self.item.to_dict()
        if self.loop is not None:
            d["loop"] = self.loop.to_dict()
        if self.controlled is not None:
            d.update(controlled_to_dict(self.controlled))
        return d


@dataclass
class Outcome:
    """What an execution context observed for one attempt. A transfer also says whether
    it wrote a file (``changed``) and the digest of what it wrote or found."""

    rc: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False
    killed: bool = False
    changed: bool | None = None
    sha256: str | None = None
    backup: str | None = None  # a copy with ``backup``: the file it kept ("" if none)
    dropped: dict[str, int] = field(default_factory=dict)  # stream → bytes past the cap


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
    # copy and fetch only: whether a file was written, where, and the content's sha256
    # (a template that reads a secret: its stand-in rendering's, SPEC §8).
    changed: bool | None = None
    dest: str | None = None
    sha256: str | None = None
    item: int | None = None  # a loop's item (0-based): each item has its own result
    # a copy with ``backup: true``: the replaced file's new path, "" when none was replaced
    backup: str | None = None
    # Bytes of stdout/stderr left out past the output cap (runbook.run.capture): the kept
    # text has a note line where they were.
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def failed(self) -> bool:
        return self.status.is_failure

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)

    @property
    def where(self) -> str:
        """The host, and a loop's item (1-based) when it is one: how surfaces name it."""
        return self.host if self.item is None else f"{self.host} item {self.item + 1}"

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
            **({"dropped": dict(self.dropped)} if self.dropped else {}),
            **{k: v for k, v in self.transfer_fields().items() if v is not None},
            **({"item": self.item} if self.item is not None else {}),
        }

    def transfer_fields(self) -> dict[str, Any]:
        """What a copy or fetch adds to its result (and to a registered value); a copy
        with ``backup`` adds its backup's path."""
        fields = {"changed": self.changed, "dest": self.dest, "sha256": self.sha256}
        if self.backup is not None:
            fields["backup"] = self.backup
        return fields

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
            dropped=dict(d.get("dropped") or {}),
            changed=d.get("changed"),
            dest=d.get("dest"),
            sha256=d.get("sha256"),
            item=d.get("item"),
            backup=d.get("backup"),
        )

    @classmethod
    def decided(cls, command: Command, status: Status, error: str | None) -> CommandResult:
        """A result reached without running anything (skipped, cancelled, resumed...); a
        copy or fetch that did not run changed nothing."""
        now = time.time()
        result = cls(
            command.step,
            command.host.name,
            status,
            started=now,
            finished=now,
            error=error,
            item=command.item_index,
        )
        return result.transferred(command)

    def transferred(self, command: Command, outcome: Outcome | None = None) -> CommandResult:
        """A copy's or fetch's result gets changed, dest and the digest it may show (one
        that did not run, ``outcome`` None, changed nothing)."""
        t = command.transfer
        if t is not None:
            self.changed = bool(outcome and outcome.changed)
            self.dest = t.dest
            self.sha256 = outcome.sha256 if outcome is not None else None
            if t.backup:
                self.backup = (outcome.backup if outcome is not None else None) or ""
        return self


def decode(data: bytes) -> str:
    """Output is bytes; reports are text. Invalid UTF-8 is replaced, never fatal."""
    return data.decode("utf-8", errors="replace")
