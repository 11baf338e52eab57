"""The step loop: batches through the ``WorkerPool``, the failure policy, interrupts.

Policy (SPEC §3): ``halt`` — once a step's failures exceed ``max_failures`` nothing new
starts, in-flight commands finish within their timeout, everything left is ``cancelled``
and the run ends halted. ``continue`` — failures are recorded and the run goes on.

Interrupts follow ``concurrent.futures``' rule: whoever receives the signal only records
it (``interrupt``); the runner's own loop, which polls at least every ``POLL`` seconds,
acts on it. A signal handler that called into the pool could deadlock on a lock the main
thread holds.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from runbook.command import Command, CommandResult, Status, StepStatus
from runbook.contexts.base import ExecutionContext
from runbook.errors import ConnectError
from runbook.events import (
    BatchStarted,
    CommandFinished,
    CommandStarted,
    Event,
    Listener,
    RunFinished,
    RunStarted,
    RunStatus,
    StepFinished,
    StepStarted,
)
from runbook.execute import run_command
from runbook.model import Host
from runbook.plan import Plan, PlannedStep
from runbook.pool import Completed, WorkerPool

EXIT_OK, EXIT_HALTED, EXIT_INTERRUPTED = 0, 1, 130
POLL = 0.2  # seconds: how late an interrupt may be acted on


@dataclass
class RunResult:
    run_id: str
    results: list[CommandResult] = field(default_factory=list)
    halted: str | None = None  # why the run halted, if it did
    interrupted: bool = False
    started: float = 0.0
    finished: float = 0.0
    steps_not_run: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_HALTED if self.halted else EXIT_OK

    @property
    def status(self) -> RunStatus:
        if self.interrupted:
            return RunStatus.INTERRUPTED
        return RunStatus.HALTED if self.halted else RunStatus.COMPLETED

    def counts(self) -> dict[str, int]:
        return status_counts(r.status for r in self.results)


def status_counts(statuses: Iterable[Status]) -> dict[str, int]:
    """Every status with its count (zeros included), in ``Status`` order."""
    c = Counter(statuses)
    return {s.value: c.get(s, 0) for s in Status}


@dataclass(frozen=True)
class Resume:
    """What an earlier run already did: ``(step, host)`` pairs that ended ok."""

    run_id: str
    done: frozenset[tuple[str, str]] = frozenset()


class Runner:
    def __init__(
        self,
        plan: Plan,
        context: ExecutionContext,
        *,
        run_id: str,
        forks: int = 10,
        listeners: Iterable[Listener] = (),
        mask: Callable[[str], str] = str,
        confirm: Callable[[PlannedStep], bool] | None = None,
        resume: Resume | None = None,
        notify: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.plan = plan
        self.context = context
        self.run_id = run_id
        self.forks = max(1, forks)
        self.listeners = list(listeners)
        self.mask = mask
        self.confirm = confirm
        self.resume = resume
        self.notify = notify
        self._halt = threading.Event()
        self._emit_lock = threading.Lock()
        self._interrupts = 0  # written by interrupt(); read by the loop
        self._acted = 0
        self._running = 0  # commands submitted and not yet collected
        self._pool: WorkerPool | None = None
        self.result = RunResult(run_id)

    # -- control --------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Ctrl-C: safe from a signal handler or any thread — it only records. The loop
        halts on the first and kills what is in flight on the second."""
        self._interrupts += 1

    def halt(self, reason: str) -> None:
        """Start nothing new. Called from the runner's thread (or before ``run``)."""
        if not self.result.halted:
            self.result.halted = reason
        self._halt.set()
        if self._pool is not None:
            self._pool.halt()

    def _act_on_interrupts(self) -> None:
        while self._acted < self._interrupts:
            self._acted += 1
            self.result.interrupted = True
            if self._acted == 1:
                self.halt("interrupted")
                self.notify(
                    f"halting: waiting for {self._running} running "
                    f"command{'' if self._running == 1 else 's'}; Ctrl-C again kills them"
                )
            elif self._acted == 2:
                self.notify(f"killing {self._running} running command(s)")
                threading.Thread(
                    target=self.context.kill_all, name="runbook-kill", daemon=True
                ).start()

    # -- the run ------------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        """Observers never steer: a listener that raises is detached and the run goes on
        (a console whose pipe closed, ``| head``). Only an essential listener (the
        journal: results that cannot be recorded would be lost) halts the run instead."""
        with self._emit_lock:
            for listener in list(self.listeners):
                try:
                    listener.handle(event)
                except Exception as exc:
                    self._listener_failed(listener, exc)

    def _listener_failed(self, listener: Listener, exc: Exception) -> None:
        self.listeners.remove(listener)
        what = type(listener).__name__
        if getattr(listener, "essential", False):
            self.halt(f"{what} failed: {exc!r}")
        if not isinstance(exc, BrokenPipeError):
            self.notify(f"{what} stopped ({exc!r}); the run goes on, the journal has it all")

    def run(self) -> RunResult:
        res = self.result
        res.started = time.time()
        plan = self.plan
        self.emit(
            RunStarted(
                run_id=self.run_id,
                runbook=plan.name,
                source=plan.source,
                digest=plan.digest,
                steps=[s.name for s in plan.steps],
                hosts=len(plan.host_names),
                commands=len(plan.commands),
                forks=self.forks,
            )
        )
        self._pool = WorkerPool(self.forks)
        bug: BaseException | None = None
        try:
            self._preconnect()
            for index, step in enumerate(plan.steps):
                bug = self._run_step(index, step) or bug
                if bug is not None:
                    self.halt(f"internal error: {bug!r}")
        finally:
            self._pool.halt()
            self._pool.shutdown(timeout=5)
            res.finished = time.time()
            self.emit(
                RunFinished(
                    run_id=self.run_id,
                    status=res.status,
                    exit_code=res.exit_code,
                    halted=res.halted,
                    counts=res.counts(),
                    duration=round(res.finished - res.started, 6),
                    steps_not_run=res.steps_not_run,
                )
            )
        if bug is not None:
            raise bug
        return res

    def _next(self) -> Completed:
        """The next completed item, acting on interrupts while waiting."""
        assert self._pool is not None
        while True:
            self._act_on_interrupts()
            done = self._pool.get(timeout=POLL)
            if done is not None:
                return done

    def _preconnect(self) -> None:
        """Open every remote connection in parallel before step 1 (handshakes dominate)."""
        assert self._pool is not None
        hosts = {c.host.name: c.host for c in self.plan.commands if not c.host.is_local}
        for host in hosts.values():
            self._pool.submit(self._connect, host)
        for _ in hosts:
            done = self._next()
            if done.error is not None:
                raise done.error

    def _connect(self, host: Host) -> None:
        # A failure is remembered by the context: the host's commands come out unreachable.
        with contextlib.suppress(ConnectError):
            self.context.connect(host)

    def _run_step(self, index: int, step: PlannedStep) -> BaseException | None:
        started = time.time()
        counts: Counter[Status] = Counter()
        self._act_on_interrupts()
        confirmable = not self._halt.is_set() and self.confirm is not None and step.confirm
        if confirmable and self.confirm is not None and not self.confirm(step):
            self.halt(f"step {step.name!r} was not confirmed")
        self._act_on_interrupts()
        if self._halt.is_set():
            self.result.steps_not_run.append(step.name)
            for cmd in step.commands:
                counts[self._finish(self._cancelled(cmd)).status] += 1
            self._step_finished(index, step, StepStatus.CANCELLED, counts, started)
            return None
        self.emit(
            StepStarted(
                run_id=self.run_id,
                step=step.name,
                index=index,
                hosts=[c.host.name for c in step.commands],
                batches=len(step.batches),
                on_failure=step.on_failure,
                max_failures=step.max_failures,
            )
        )
        failures = 0
        bug: BaseException | None = None
        for b, batch in enumerate(step.batches):
            if self._halt.is_set():
                for cmd in batch:
                    counts[self._finish(self._cancelled(cmd)).status] += 1
                continue
            if len(step.batches) > 1:
                self.emit(
                    BatchStarted(
                        run_id=self.run_id,
                        step=step.name,
                        batch=b + 1,
                        hosts=[c.host.name for c in batch],
                    )
                )
            for result, error in self._run_batch(batch):
                bug = bug or error
                counts[result.status] += 1
                if result.failed:
                    failures += 1
                    if step.on_failure == "halt" and failures > step.max_failures:
                        self.halt(f"step {step.name!r} failed on {result.host}")
        self._step_finished(index, step, _step_status(step, failures, counts), counts, started)
        return bug

    def _run_batch(
        self, batch: tuple[Command, ...]
    ) -> Iterable[tuple[CommandResult, BaseException | None]]:
        """Submit a batch and yield each result as it arrives (with a stored bug, if any)."""
        assert self._pool is not None
        expected = 0
        for cmd in batch:
            if self.resume is not None and cmd.key in self.resume.done:
                # Reported ok (attempts 0): the host is done, by an earlier run.
                earlier = CommandResult.decided(
                    cmd, Status.OK, f"already ok in run {self.resume.run_id}"
                )
                yield self._finish(earlier), None
            else:
                self._running += 1
                expected += 1
                self._pool.submit(self._execute, cmd)
        for _ in range(expected):
            done = self._next()
            self._running -= 1
            yield self._finish(self._collect(done)), done.error

    def _execute(self, cmd: Command) -> CommandResult:
        self.emit(CommandStarted(run_id=self.run_id, step=cmd.step, host=cmd.host.name))
        return run_command(cmd, self.context, cancel=self._halt, mask=self.mask)

    def _collect(self, done: Completed) -> CommandResult:
        cmd: Command = done.item
        if done.cancelled:
            return self._cancelled(cmd)
        if done.error is not None:
            return CommandResult.decided(cmd, Status.FAILED, f"internal error: {done.error!r}")
        result: CommandResult = done.result
        return result

    def _cancelled(self, cmd: Command) -> CommandResult:
        return CommandResult.decided(cmd, Status.CANCELLED, self.result.halted)

    def _finish(self, result: CommandResult) -> CommandResult:
        self.result.results.append(result)
        self.emit(CommandFinished(run_id=self.run_id, result=result))
        return result

    def _step_finished(
        self,
        index: int,
        step: PlannedStep,
        status: StepStatus,
        counts: Counter[Status],
        started: float,
    ) -> None:
        self.emit(
            StepFinished(
                run_id=self.run_id,
                step=step.name,
                index=index,
                status=status,
                counts=status_counts(counts.elements()),
                duration=round(time.time() - started, 6),
            )
        )


def _step_status(step: PlannedStep, failures: int, counts: Counter[Status]) -> StepStatus:
    if step.on_failure == "halt" and failures > step.max_failures:
        return StepStatus.FAILED
    if failures:
        return StepStatus.TOLERATED
    return StepStatus.CANCELLED if counts.get(Status.CANCELLED) else StepStatus.OK
