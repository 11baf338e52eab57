"""The step loop: steps and groups through the ``WorkerPool``, the failure policy, interrupts.

Policy (SPEC §3, §8): ``halt`` — once a step's failures exceed ``max_failures`` nothing new
starts, in-flight commands finish within their timeout, everything left is ``cancelled``
and the run ends halted. ``continue`` — failures are recorded and the run goes on. A
group counts failed hosts over all its batches; a host that fails an inner step drops out
of the rest of its batch, the batch's other hosts finish it, and only then does ``halt``
stop the run (``continue`` goes on to the next batch).

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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from runbook.errors import ConnectError, TemplateError
from runbook.model.command import Command, CommandResult, Status, StepStatus, status_counts
from runbook.model.events import (
    BatchStarted,
    CommandFinished,
    CommandOutput,
    CommandStarted,
    EssentialListener,
    Event,
    Listener,
    Registered,
    RunFinished,
    RunStarted,
    RunStatus,
    StepFinished,
    StepStarted,
)
from runbook.model.plan import Plan, PlannedBatch, PlannedGroup, PlannedStep
from runbook.model.runbook import Host
from runbook.model.spec import OnFailure
from runbook.run.contexts.base import ExecutionContext
from runbook.run.execute import run_command
from runbook.run.output import OutputRelay
from runbook.run.pool import Completed, WorkerPool
from runbook.run.values import RunValues

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


@dataclass(frozen=True)
class Resume:
    """What an earlier run already did: ``(step, host)`` pairs that ended ok, and the
    values it registered."""

    run_id: str
    done: frozenset[tuple[str, str]] = frozenset()
    registered: tuple[Registered, ...] = ()  # as journaled (secrets as tokens)


@dataclass(frozen=True)
class _Job:
    """One command for the pool: as it runs, and as the journal shows it."""

    step: PlannedStep
    command: Command
    shown: str | None = None


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
        confirm: Callable[[str, str | None], bool] | None = None,
        resume: Resume | None = None,
        notify: Callable[[str], None] = lambda message: None,
        values: RunValues | None = None,
    ) -> None:
        self.plan = plan
        self.context = context
        self.run_id = run_id
        self.forks = max(1, forks)
        self.listeners = list(listeners)
        self.mask = mask
        self.confirm = confirm  # confirm(name, message) -> proceed?
        self.resume = resume
        self.notify = notify
        self.values = values or RunValues(plan, {}, mask)
        self._halt = threading.Event()
        self._emit_lock = threading.Lock()
        self._interrupts = 0  # written by interrupt(); read by the loop
        self._acted = 0
        self._running = 0  # commands submitted and not yet collected
        self._bug: BaseException | None = None
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
            n = self._running
            if self._acted == 1:
                self.halt("interrupted")
                self.notify(
                    f"halting: waiting for {n} running command{'' if n == 1 else 's'}; "
                    "Ctrl-C again kills them"
                )
            elif self._acted == 2:
                self.notify(f"killing {n} running command{'' if n == 1 else 's'}")
                threading.Thread(
                    target=self.context.kill_all, name="runbook-kill", daemon=True
                ).start()

    # -- events ---------------------------------------------------------------------------
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
        if isinstance(listener, EssentialListener):
            self.halt(f"{what} failed: {exc!r}")
        if not isinstance(exc, BrokenPipeError):
            self.notify(f"{what} stopped ({exc!r}); the run goes on, the journal has it all")

    # -- the run ------------------------------------------------------------------------------
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
                steps=[item.name for item in plan.steps],
                hosts=len(plan.host_names),
                commands=len(plan.commands),
                forks=self.forks,
            )
        )
        self._pool = WorkerPool(self.forks)
        try:
            self._restore()
            self._preconnect()
            for index, item in enumerate(plan.steps):
                if isinstance(item, PlannedGroup):
                    self._run_group(index, item)
                else:
                    self._run_step(index, item)
                if self._bug is not None:
                    self.halt(f"internal error: {self._bug!r}")
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
        if self._bug is not None:
            raise self._bug
        return res

    def _restore(self) -> None:
        """--resume: the values the earlier run registered, journaled again here."""
        for reg in self.resume.registered if self.resume else ():
            value = self.values.restored(dict(reg.value))
            self.values.set(reg.name, list(reg.hosts), value)
            self._registered(reg.step, reg.name, list(reg.hosts), value)

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

    def _confirmed(self, name: str, message: str | None) -> bool:
        """Ask, unless halted already or there is nothing to ask; a no halts the run."""
        self._act_on_interrupts()
        if self._halt.is_set() or self.confirm is None or not message:
            return not self._halt.is_set()
        if not self.confirm(name, message):
            self.halt(f"step {name!r} was not confirmed")
        self._act_on_interrupts()
        return not self._halt.is_set()

    # -- steps ----------------------------------------------------------------------------
    def _run_step(self, index: int, step: PlannedStep) -> None:
        started = time.time()
        counts: Counter[Status] = Counter()
        if not self._confirmed(step.name, step.confirm):
            self._not_run(index, step, started)
            return
        self._step_started(index, step, [c.host.name for c in step.commands], len(step.batches))
        failures = 0
        for b, batch in enumerate(step.batches, 1):
            if self._halt.is_set():
                counts.update(self._cancel(step, batch))
                continue
            if len(step.batches) > 1:
                hosts = [c.host.name for c in batch]
                self.emit(BatchStarted(run_id=self.run_id, step=step.name, batch=b, hosts=hosts))
            for result in self._run_commands(step, batch):
                counts[result.status] += 1
                failures += result.failed
                if (
                    result.failed
                    and step.on_failure == OnFailure.HALT
                    and failures > step.max_failures
                ):
                    self.halt(f"step {step.name!r} failed on {result.host}")
        status = _step_status(step.on_failure, step.max_failures, failures, counts)
        self._step_finished(index, step.name, status, counts, started)

    def _run_group(self, index: int, group: PlannedGroup) -> None:
        started = time.time()
        counts: Counter[Status] = Counter()
        hosts = group.host_names
        self.emit(
            StepStarted(
                run_id=self.run_id,
                step=group.name,
                index=index,
                hosts=hosts,
                batches=len(group.batches),
                on_failure=group.on_failure,
                max_failures=group.max_failures,
                is_group=True,
            )
        )
        failed: set[str] = set()
        for batch in group.batches:
            if self._halt.is_set() or not self._confirmed(group.name, group.confirm):
                for step in batch.steps:
                    counts.update(self._cancel(step, step.commands))
                continue
            counts.update(self._run_batch(index, group, batch, failed))
            if group.on_failure == OnFailure.HALT and len(failed) > group.max_failures:
                self.halt(f"group {group.name!r} failed on {', '.join(sorted(failed))}")
        if not counts or all(s is Status.CANCELLED for s in counts.elements()):
            self.result.steps_not_run.append(group.name)
        status = _step_status(group.on_failure, group.max_failures, len(failed), counts)
        self._step_finished(index, group.name, status, counts, started, is_group=True)

    def _run_batch(
        self, index: int, group: PlannedGroup, batch: PlannedBatch, failed: set[str]
    ) -> Counter[Status]:
        """Every inner step on one batch; a host that fails drops out of the rest of it."""
        counts: Counter[Status] = Counter()
        self.emit(
            BatchStarted(
                run_id=self.run_id, step=group.name, batch=batch.number, hosts=list(batch.hosts)
            )
        )
        dropped: dict[str, str] = {}  # host → the inner step it failed
        for step in batch.steps:
            started = time.time()
            step_counts: Counter[Status] = Counter()
            live = [c for c in step.commands if c.host.name not in dropped]
            for c in step.commands:
                if c.host.name in dropped:
                    why = f"dropped out of batch {batch.number}: failed {dropped[c.host.name]!r}"
                    step_counts[self._finish(step, _decided(c, Status.CANCELLED, why)).status] += 1
            if self._halt.is_set():
                step_counts.update(self._cancel(step, tuple(live)))
            else:
                self._step_started(index, step, [c.host.name for c in live], 1)
                for result in self._run_commands(step, tuple(live)):
                    step_counts[result.status] += 1
                    if result.failed:
                        dropped.setdefault(result.host, step.name)
                        failed.add(result.host)
            status = _step_status(group.on_failure, group.max_failures, len(failed), step_counts)
            self._step_finished(index, step.name, status, step_counts, started, step=step)
            counts.update(step_counts)
        return counts

    def _not_run(self, index: int, step: PlannedStep, started: float) -> None:
        self.result.steps_not_run.append(step.name)
        counts = self._cancel(step, step.commands)
        self._step_finished(index, step.name, StepStatus.CANCELLED, counts, started)

    def _cancel(self, step: PlannedStep, commands: Iterable[Command]) -> Counter[Status]:
        return Counter(self._finish(step, self._cancelled(c)).status for c in commands)

    # -- commands -------------------------------------------------------------------------
    def _run_commands(
        self, step: PlannedStep, commands: tuple[Command, ...]
    ) -> Iterator[CommandResult]:
        """Submit commands and yield each (masked) result as it arrives."""
        assert self._pool is not None
        expected = 0
        for cmd in commands:
            decided = self._decided_now(cmd)
            if decided is not None:  # ok in the earlier run: its restored value stands
                yield self._finish(step, decided, register=False)
                continue
            try:
                job = _Job(step, self.values.executable(cmd), self._shown(cmd))
            except TemplateError as exc:  # at run time: this command fails, never exit 2
                yield self._finish(step, _decided(cmd, Status.FAILED, f"{exc}"))
                continue
            self._running += 1
            expected += 1
            self._pool.submit(self._execute, job)
        for _ in range(expected):
            done = self._next()
            self._running -= 1
            yield self._finish(done.item.step, self._collect(done))

    def _decided_now(self, cmd: Command) -> CommandResult | None:
        if self.resume is not None and cmd.key in self.resume.done:
            # Reported ok (attempts 0): the host is done, by an earlier run.
            return _decided(cmd, Status.OK, f"already ok in run {self.resume.run_id}")
        return None

    def _shown(self, cmd: Command) -> str | None:
        return self.values.shown(cmd) if cmd.templates is not None else None

    def _execute(self, job: _Job) -> CommandResult:
        cmd, step = job.command, job.step
        self.emit(
            CommandStarted(
                run_id=self.run_id,
                step=cmd.step,
                host=cmd.host.name,
                group=step.group,
                batch=step.batch,
                cmd=job.shown,
            )
        )
        relay = self._relay(cmd)
        try:
            return run_command(cmd, self.context, cancel=self._halt, on_output=relay)
        finally:
            relay.finish()

    def _relay(self, cmd: Command) -> OutputRelay:
        def emit(stream: str, text: str) -> None:
            self.emit(
                CommandOutput(
                    run_id=self.run_id, step=cmd.step, host=cmd.host.name, stream=stream, data=text
                )
            )

        pattern = getattr(self.mask, "pattern", None)
        return OutputRelay(emit, self.mask, pattern, getattr(self.mask, "longest", 0))

    def _collect(self, done: Completed) -> CommandResult:
        cmd: Command = done.item.command
        if done.cancelled:
            return self._cancelled(cmd)
        if done.error is not None:
            self._bug = self._bug or done.error
            return _decided(cmd, Status.FAILED, f"internal error: {done.error!r}")
        result: CommandResult = done.result
        return result

    def _cancelled(self, cmd: Command) -> CommandResult:
        return _decided(cmd, Status.CANCELLED, self.result.halted)

    def _finish(
        self, step: PlannedStep | None, raw: CommandResult, register: bool = True
    ) -> CommandResult:
        """Register the raw result; record and announce it masked."""
        if step is not None and register:
            registered = self.values.record(step, raw)
            if registered is not None and step.register is not None:
                self._registered(step.name, step.register, *registered)
        mask = self.mask
        result = replace(
            raw,
            stdout=mask(raw.stdout),
            stderr=mask(raw.stderr),
            error=None if raw.error is None else mask(raw.error),
        )
        self.result.results.append(result)
        group, batch = (step.group, step.batch) if step is not None else (None, None)
        self.emit(CommandFinished(run_id=self.run_id, result=result, group=group, batch=batch))
        return result

    def _registered(self, step: str, name: str, hosts: list[str], value: dict[str, object]) -> None:
        self.emit(
            Registered(
                run_id=self.run_id,
                step=step,
                name=name,
                hosts=hosts,
                value=self.values.journaled(value),
            )
        )

    def _step_started(self, index: int, step: PlannedStep, hosts: list[str], batches: int) -> None:
        self.emit(
            StepStarted(
                run_id=self.run_id,
                step=step.name,
                index=index,
                hosts=hosts,
                batches=batches,
                on_failure=step.on_failure,
                max_failures=step.max_failures,
                group=step.group,
                batch=step.batch,
            )
        )

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
    ) -> None:
        self.emit(
            StepFinished(
                run_id=self.run_id,
                step=name,
                index=index,
                status=status,
                counts=status_counts(counts.elements()),
                duration=round(time.time() - started, 6),
                group=step.group if step else None,
                batch=step.batch if step else None,
                is_group=is_group,
            )
        )


def _decided(cmd: Command, status: Status, error: str | None) -> CommandResult:
    return CommandResult.decided(cmd, status, error)


def _step_status(
    on_failure: OnFailure, max_failures: int, failures: int, counts: Counter[Status]
) -> StepStatus:
    if on_failure == OnFailure.HALT and failures > max_failures:
        return StepStatus.FAILED
    if failures:
        return StepStatus.TOLERATED
    return StepStatus.CANCELLED if counts.get(Status.CANCELLED) else StepStatus.OK
