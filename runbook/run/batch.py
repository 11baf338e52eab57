"""One batch of a group: its inner steps, then rescue, then always (SPEC sections 5, 10).

- **Inner steps** run in order on the batch. A host that fails one drops out of the
  rest (its later inner steps are ``cancelled``) and is failed, counted toward the
  group's ``max_failures``. A step run once for the batch (``local``, ``run_once``) that
  fails fails every host it ran for, each counted.
- **Rescue** steps then run on each host that failed an inner step, with ``failed_step``
  and ``failed_result`` set for it (the other hosts' rescue commands are ``skipped``). A
  host whose rescue steps all succeed is *rescued*: its failed result is replaced by one
  with status ``rescued``, and it is no longer failed or counted. A rescue step that fails
  leaves the host failed (its later rescue steps are ``cancelled``).
- **Always** steps run on every host of the batch, whatever happened, also when the
  batch passed ``max_failures`` (the group halts the run only after them) and after the
  first Ctrl-C. Their failures are reported, never counted.

On ``--resume`` a host the earlier run rescued stays rescued (its failed step is reported
``rescued`` again and its remaining inner and rescue steps are not run); rescue steps are
never skipped as "already ok" (they answer this run's failures); a group's always step is
skipped as already ok only for a host on which nothing else ran in this batch.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Protocol

from runbook.model.command import Command, CommandResult, Status, StepStatus
from runbook.model.events import BatchStarted, Event
from runbook.model.plan import PlannedBatch, PlannedGroup, PlannedStep, Section
from runbook.model.spec import OnFailure
from runbook.run.values import RunValues, register_value

Decide = Callable[[PlannedStep, Command], CommandResult | None]


class Engine(Protocol):
    """What a batch needs of the runner (``runner.Runner``)."""

    run_id: str
    values: RunValues

    def emit(self, event: Event) -> None: ...

    def stopped(self) -> bool: ...

    def always_phase(self) -> AbstractContextManager[None]: ...

    def earlier(self, command: Command) -> tuple[str, Status] | None: ...

    def _run_commands(
        self, step: PlannedStep, commands: tuple[Command, ...]
    ) -> Iterator[CommandResult]: ...

    def _finish(
        self, step: PlannedStep | None, raw: CommandResult, register: bool = True
    ) -> CommandResult: ...

    def _cancel(self, step: PlannedStep, commands: Iterable[Command]) -> Counter[Status]: ...

    def _step_started(
        self, index: int, step: PlannedStep, hosts: list[str], batches: int
    ) -> None: ...

    def _step_finished(
        self,
        index: int,
        name: str,
        status: StepStatus,
        counts: Counter[Status],
        started: float,
        *,
        step: PlannedStep | None = None,
        is_group: bool = False,
    ) -> None: ...


@dataclass
class _Failure:
    """An inner step a host failed: the step and its (masked) result."""

    step: PlannedStep
    result: CommandResult


@dataclass
class BatchRun:
    """Runs one batch; ``failed`` is the group's set of failed hosts, updated here."""

    engine: Engine
    index: int
    group: PlannedGroup
    batch: PlannedBatch
    failed: set[str]
    counts: Counter[Status] = field(default_factory=Counter)
    dropped: dict[str, str] = field(default_factory=dict)  # host → the inner step it failed
    failures: dict[str, _Failure] = field(default_factory=dict)
    settled: dict[str, str] = field(default_factory=dict)  # rescued in an earlier run: its id
    rescue_failed: dict[str, str] = field(default_factory=dict)  # host → the rescue step
    rescue_done: Counter[str] = field(default_factory=Counter)  # rescue steps passed, per host
    ran: set[str] = field(default_factory=set)  # hosts something ran on in this batch

    def run(self) -> Counter[Status]:
        b = self.batch
        self.engine.emit(
            BatchStarted(
                run_id=self.engine.run_id, step=self.group.name, batch=b.number, hosts=list(b.hosts)
            )
        )
        steps = {s: [p for p in b.steps if p.section is s] for s in Section}
        for step in steps[Section.MAIN]:
            self._part(step, self._main)
        if steps[Section.RESCUE]:
            self._rescue(steps[Section.RESCUE])
        if steps[Section.ALWAYS]:
            with self.engine.always_phase():
                for step in steps[Section.ALWAYS]:
                    self._part(step, self._always)
        return self.counts

    # -- one step of the batch -------------------------------------------------------------

    def _part(self, step: PlannedStep, decide: Decide) -> None:
        started = time.time()
        step_counts: Counter[Status] = Counter()
        todo = []
        for c in step.commands:
            decided = decide(step, c)
            if decided is None:
                todo.append(c)
            else:
                step_counts[self._record(step, self.engine._finish(step, decided))] += 1
        if self.engine.stopped():
            step_counts.update(self.engine._cancel(step, todo))
        else:
            self.engine._step_started(self.index, step, [c.host.name for c in todo], 1)
            for result in self.engine._run_commands(step, tuple(todo)):
                step_counts[self._record(step, result)] += 1
        own = sum(n for s, n in step_counts.items() if s.is_failure)
        if step.section is Section.MAIN:  # the group's policy, as it stands now; a step
            # that failed nowhere is ok even after an earlier inner step failed
            failures = len(self.failed) if own else 0
            policy = (self.group.on_failure, self.group.max_failures)
        else:  # its own results: they count toward nothing
            failures, policy = own, (OnFailure.HALT, 0)
        status = step_status(*policy, failures, step_counts)
        self.engine._step_finished(self.index, step.name, status, step_counts, started, step=step)
        self.counts.update(step_counts)

    def _record(self, step: PlannedStep, result: CommandResult) -> Status:
        """What a result means for its host in this batch; returns its status."""
        if result.attempts:
            self.ran.add(result.host)
        if step.section is Section.ALWAYS:
            return result.status  # reported, never counted
        if step.section is Section.RESCUE:
            if result.failed or result.status is Status.CANCELLED:
                self.rescue_failed.setdefault(result.host, step.name)
            elif result.host in self.failures:
                self.rescue_done[result.host] += 1
            return result.status
        if result.status is Status.RESCUED:  # rescued by an earlier run (--resume)
            self.dropped.setdefault(result.host, step.name)
            self.settled[result.host] = result.error or ""
        elif result.failed:
            self._fail(step, result)
        return result.status

    def _fail(self, step: PlannedStep, result: CommandResult) -> None:
        """A failed inner step: its host, or every host a once-per-batch command ran for."""
        for host in step.once_for or (result.host,):
            if host in self.dropped:
                continue
            own = result
            if host != result.host:  # the once-per-batch command failed for this host too
                own = self.engine._finish(
                    step,
                    replace(
                        result,
                        host=host,
                        attempts=0,
                        error=f"failed with the command run once for batch "
                        f"{self.batch.number} on {result.host}: {result.error}",
                    ),
                    register=False,
                )
                self.counts[own.status] += 1
            self.dropped[host] = step.name
            self.failed.add(host)
            self.failures[host] = _Failure(step, own)

    # -- decisions before a command runs ----------------------------------------------------

    def _main(self, step: PlannedStep, c: Command) -> CommandResult | None:
        host = c.host.name
        if host in self.dropped:
            why = f"dropped out of batch {self.batch.number}: failed {self.dropped[host]!r}"
            return CommandResult.decided(c, Status.CANCELLED, why)
        if step.once_for and all(h in self.dropped for h in step.once_for):
            why = f"every host it runs for dropped out of batch {self.batch.number}"
            return CommandResult.decided(c, Status.CANCELLED, why)
        return None

    def _rescue_for(self, step: PlannedStep, c: Command) -> CommandResult | None:
        host = c.host.name
        if host in self.rescue_failed:
            why = f"rescue failed at {self.rescue_failed[host]!r}"
            return CommandResult.decided(c, Status.CANCELLED, why)
        if host in self.settled:
            return CommandResult.decided(c, Status.SKIPPED, self.settled[host])
        if host not in self.failures:
            return CommandResult.decided(c, Status.SKIPPED, "rescue: no step failed on this host")
        return None

    def _always(self, step: PlannedStep, c: Command) -> CommandResult | None:
        earlier = self.engine.earlier(c)
        if earlier is not None and earlier[1] is Status.OK and c.host.name not in self.ran:
            return CommandResult.decided(c, Status.OK, f"already ok in run {earlier[0]}")
        return None

    # -- rescue ------------------------------------------------------------------------------

    def _rescue(self, steps: list[PlannedStep]) -> None:
        values = self.engine.values
        for host, failure in self.failures.items():
            values.set("failed_step", [host], failure.step.name)
            values.set("failed_result", [host], register_value(failure.result))
        for step in steps:
            self._part(step, self._rescue_for)
        names = ", ".join(repr(s.name) for s in steps)
        for host, failure in self.failures.items():
            if host in self.rescue_failed or self.rescue_done[host] < len(steps):
                continue
            old = failure.result
            rescued = replace(
                old,
                status=Status.RESCUED,
                error=f"{old.error or old.status.value}; rescued by {names}",
            )
            self.engine._finish(failure.step, rescued, register=False)
            self.counts[Status.RESCUED] += 1
            self.counts[old.status] -= 1
            self.failed.discard(host)


def step_status(
    on_failure: OnFailure, max_failures: int, failures: int, counts: Counter[Status]
) -> StepStatus:
    if on_failure == OnFailure.HALT and failures > max_failures:
        return StepStatus.FAILED
    if failures or counts.get(Status.RESCUED):  # a failure its rescue handled: tolerated
        return StepStatus.TOLERATED
    return StepStatus.CANCELLED if counts.get(Status.CANCELLED) else StepStatus.OK
