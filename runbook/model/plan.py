"""The plan as data: every command on every host, in execution order.

Built by ``plan.planner.make_plan``, serialised by ``plan.saved``, run by ``run.runner``. A
plan is a sequence of steps and groups; a group is a sequence of batches, each holding
the inner steps planned for that batch's hosts, then its rescue and always steps. The
runbook's own ``always`` steps come last, marked by their ``section``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from runbook.errors import Position, UsageError
from runbook.model.command import Command, Templates
from runbook.model.spec import ExecSpec, OnFailure

Serial = int | str | list[int | str] | None


class Section(enum.StrEnum):
    """Where a planned step belongs (SPEC section 10): the steps proper; a group's rescue
    steps (hosts that failed an inner step); always steps (a group's: every host of the
    batch; the runbook's: after the steps or a halt)."""

    MAIN = "steps"
    RESCUE = "rescue"
    ALWAYS = "always"


@dataclass(frozen=True)
class PlannedStep:
    name: str
    position: Position
    batches: tuple[tuple[Command, ...], ...]
    spec: ExecSpec = ExecSpec()
    hosts: str | list[str] = "all"
    max_failures: int = 0  # spec.max_failures resolved against the step's host count
    confirm: str | None = None
    tags: tuple[str, ...] = ()
    run_once: bool = False
    local: bool = False
    serial: Serial = None
    register: str | None = None
    # Who gets the registered value: every targeted host, even when one command (run_once,
    # local) ran for them all.
    register_hosts: tuple[str, ...] = ()
    group: str | None = None  # inside a group: its name and the batch (1-based)
    batch: int | None = None
    section: Section = Section.MAIN
    # A command run once (run_once, local) for these hosts: if it fails, each of them
    # fails (inside a group; SPEC section 10).
    once_for: tuple[str, ...] = ()
    # A confirm text that reads a registered value: rendered when it is asked.
    confirm_templates: Templates | None = None
    discover: bool = False  # read-only, run by `plan --check` (SPEC §12)

    @property
    def commands(self) -> list[Command]:
        return [c for batch in self.batches for c in batch]

    @property
    def on_failure(self) -> OnFailure:
        return self.spec.on_failure


@dataclass(frozen=True)
class PlannedBatch:
    number: int  # 1-based
    hosts: tuple[str, ...]
    steps: tuple[PlannedStep, ...]

    @property
    def commands(self) -> list[Command]:
        return [c for s in self.steps for c in s.commands]


@dataclass(frozen=True)
class PlannedGroup:
    """Rolling batches across several steps: every inner step runs on a batch before the
    next batch starts. The failure policy counts failed hosts over the whole group."""

    name: str
    position: Position
    batches: tuple[PlannedBatch, ...]
    spec: ExecSpec = ExecSpec()
    hosts: str | list[str] = "all"
    max_failures: int = 0
    confirm: str | None = None  # asked before each batch
    tags: tuple[str, ...] = ()
    serial: Serial = None
    inner: tuple[str, ...] = ()  # inner step names, in order
    rescue: tuple[str, ...] = ()  # rescue step names, in order
    always: tuple[str, ...] = ()  # always step names, in order
    section: Section = Section.MAIN
    confirm_templates: Templates | None = None  # see PlannedStep

    @property
    def commands(self) -> list[Command]:
        return [c for b in self.batches for c in b.commands]

    @property
    def on_failure(self) -> OnFailure:
        return self.spec.on_failure

    @property
    def host_names(self) -> list[str]:
        return [h for b in self.batches for h in b.hosts]


PlanItem = PlannedStep | PlannedGroup


@dataclass(frozen=True)
class Plan:
    name: str
    source: str
    digest: str
    steps: tuple[PlanItem, ...]
    secret_names: tuple[str, ...] = ()
    # Every inventory host's vars, for templates that read ``hostvars`` at apply time
    # (kept only when one does).
    hostvars: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)
    files: tuple[str, ...] = ()  # the runbook and its includes, for --resume's check
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def commands(self) -> list[Command]:
        return [c for s in self.steps for c in s.commands]

    @property
    def host_names(self) -> list[str]:
        """Every host the plan touches, in first-use order."""
        return list(dict.fromkeys(c.host.name for c in self.commands))

    def leaf_steps(self) -> Iterator[PlannedStep]:
        """Every planned step in execution order (a group's, batch by batch)."""
        for item in self.steps:
            if isinstance(item, PlannedGroup):
                for batch in item.batches:
                    yield from batch.steps
            else:
                yield item

    @property
    def step_count(self) -> int:
        """How many steps the plan has, groups and their inner steps each counted once:
        the one count ``validate``, ``plan`` and the console show."""
        return len(self.step_names)

    @property
    def step_names(self) -> list[str]:
        """Top-level steps and groups, then inner (rescue, always) steps after their
        group, in order."""
        out: list[str] = []
        for item in self.steps:
            out.append(item.name)
            if isinstance(item, PlannedGroup):
                out += [*item.inner, *item.rescue, *item.always]
        return out


@dataclass(frozen=True)
class Selection:
    """Which steps and hosts ``--tags/--skip-tags/--start-at/--limit`` keep (applied by
    ``plan.select``). An empty or blank value is refused here, whoever builds one (the
    CLI, the API): ``--limit "$UNSET"`` in a script must not mean the whole fleet."""

    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    start_at: str | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and not self.limit.replace(",", "").replace(":", "").strip():
            _blank("--limit", self.limit, "hosts or groups")
        for flag, values in (("--tags", self.tags), ("--skip-tags", self.skip_tags)):
            for value in values:
                if not value.strip():
                    _blank(flag, value, "a tag")
        if self.start_at is not None and not self.start_at.strip():
            _blank("--start-at", self.start_at, "a step")


def _blank(flag: str, value: str, what: str) -> None:
    raise UsageError(f"{flag} {value!r} is empty: name {what}, or leave {flag} out")
