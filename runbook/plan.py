"""The plan as data: every command on every host, in execution order.

Built by ``planner.make_plan`` (pure), serialised by ``planfile``, run by ``runner``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.command import Command
from runbook.errors import Position
from runbook.spec import ExecSpec

Serial = int | str | list[int | str] | None


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

    @property
    def commands(self) -> list[Command]:
        return [c for batch in self.batches for c in batch]

    @property
    def on_failure(self) -> str:
        return self.spec.on_failure


@dataclass(frozen=True)
class Plan:
    name: str
    source: str
    digest: str
    steps: tuple[PlannedStep, ...]
    secret_names: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def commands(self) -> list[Command]:
        return [c for s in self.steps for c in s.commands]

    @property
    def host_names(self) -> list[str]:
        """Every host the plan touches, in first-use order."""
        return list(dict.fromkeys(c.host.name for c in self.commands))


@dataclass(frozen=True)
class Selection:
    """Which steps and hosts ``--tags/--skip-tags/--start-at/--limit`` keep."""

    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    start_at: str | None = None
