"""The step loop: steps and groups through the ``WorkerPool``, the failure policy, interrupts.

Policy (SPEC §3, §8): ``halt`` — once a step's failures exceed ``max_failures`` nothing new
starts, in-flight commands finish within their timeout, everything left is ``cancelled``
and the run ends halted. ``continue`` — failures are recorded and the run goes on. A
group counts failed hosts over all its batches; a host that fails an inner step drops out
of the rest of its batch, the batch's other hosts finish it (then rescue and always:
``batch``), and only then does ``halt`` stop the run (``continue`` goes on to the next
batch).

Always steps (SPEC §10) — a group's, and the runbook's after the steps or a halt — run
in an *always phase*: after a halt (the first Ctrl-C included) the pool takes work again
under a fresh halt flag, which the second Ctrl-C sets. Their failures are reported and
never halt, so they change no exit code. A host that came back ``unreachable`` is held
out of later steps (``reach``) until a wait or reboot brings it back.

Interrupts follow ``concurrent.futures``' rule: whoever receives the signal only records
it (``interrupt``); the runner's own loop, which polls at least every ``POLL`` seconds,
acts on it. A signal handler that called into the pool could deadlock on a lock the main
thread holds.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from runbook.errors import ConnectError, TemplateError
from runbook.model.command import Command, CommandResult, Status, StepStatus, status_counts
from runbook.model.controller import NO_ITEMS
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
from runbook.model.plan import Plan, PlannedGroup, PlannedStep, Section
from runbook.model.runbook import Host
from runbook.model.spec import OnFailure
from runbook.run.batch import BatchRun, step_status
from runbook.run.contexts.base import ExecutionContext
from runbook.run.controller_steps import derived_strings, evaluate_on_controller, recomputed
from runbook.run.execute import run_command
from runbook.run.loops import Chains, item_value
from runbook.run.output import OutputRelay
from runbook.run.pool import Completed, WorkerPool
from runbook.run.reach import Reach
from runbook.run.values import RunValues, register_value, with_item

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
    """What earlier runs already did: ``(step, host)`` pairs that ended ok (a loop's
    items: ``(step, host, item)``), and the values they registered; ``rescued``: inner
    steps whose failure a rescue handled; ``left_out``: commands of the resumed run that
    are not done and that ``--limit``/``--tags``/``--start-at`` leave out of this one."""

    run_id: str
    done: frozenset[tuple[str, str]] = frozenset()
    registered: tuple[Registered, ...] = ()  # as journaled (secrets as tokens)
    rescued: frozenset[tuple[str, str]] = frozenset()
    done_items: frozenset[tuple[str, str, int]] = frozenset()  # a loop's items ok
    left_out: tuple[tuple[str, str], ...] = ()


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
        opening: Iterable[Event] = (),
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
        self.opening = tuple(opening)  # emitted right after run_started (plan_approved)
        self._halt = threading.Event()
        self._kill = threading.Event()  # the second Ctrl-C: always steps stop too
        self.reach = Reach()
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
                then = ", then running the always steps" if _has_always(self.plan) else ""
                self.notify(
                    f"halting: waiting for {n} running command{'' if n == 1 else 's'}{then}; "
                    "Ctrl-C again kills them"
                )
            elif self._acted == 2:
                self._kill.set()
                self.halt("interrupted")
                self.notify(
                    f"killing {n} running command{'' if n == 1 else 's'}"
                    + ("; no always step starts" if _has_always(self.plan) else "")
                )
                threading.Thread(
                    target=self.context.kill_all, name="runbook-kill", daemon=True
                ).start()

    def stopped(self) -> bool:
        """Nothing new may start (a halt, or the second Ctrl-C in an always phase)."""
        return self._halt.is_set()

    @contextlib.contextmanager
    def always_phase(self) -> Iterator[None]:
        """Always steps run even after a halt: the pool takes work again under a fresh
        halt flag (set by the second Ctrl-C, or a journal that fails); the run's halt
        stands after them. After the second Ctrl-C nothing starts."""
        halted = self._halt
        if not halted.is_set() or self._kill.is_set():
            yield
            return
        assert self._pool is not None
        self._halt = threading.Event()
        self._pool.reopen()
        try:
            yield
        finally:
            self._halt = halted
            self._pool.halt()

    def earlier(self, command: Command) -> tuple[str, Status] | None:
        """What an earlier run (``--resume``) made of ``command``: (its id, status)."""
        r = self.resume
        if r is None:
            return None
        done = (
            (*command.key, command.item.index) in r.done_items
            if command.item is not None
            else command.key in r.done
        )
        if done:
            return r.run_id, Status.OK
        if command.key in r.rescued:
            return r.run_id, Status.RESCUED
        return None

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
        # A protocol check sees the attribute, not its value: essential = False is not.
        if isinstance(listener, EssentialListener) and listener.essential:
            self.halt(f"{what} failed: {exc!r}")
            self.notify(
                f"{what} stopped ({exc!r}); the run halts: nothing new starts, running "
                "commands finish; results from now on are not journaled"
            )
        elif not isinstance(exc, BrokenPipeError):
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
                step_count=plan.step_count,
            )
        )
        for event in self.opening:
            self.emit(event)
        self._pool = WorkerPool(self.forks)
        try:
            self._restore()
            self._preconnect()
            finals = [(i, s) for i, s in enumerate(plan.steps) if s.section is Section.ALWAYS]
            for index, item in enumerate(plan.steps):
                if item.section is not Section.ALWAYS:
                    self._run_item(index, item)
            if finals:
                with self.always_phase():
                    for index, item in finals:
                        self._run_item(index, item)
            self._left_out()
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

    def _run_item(self, index: int, item: PlannedStep | PlannedGroup) -> None:
        if isinstance(item, PlannedGroup):
            self._run_group(index, item)
        else:
            self._run_step(index, item)
        if self._bug is not None:
            self.halt(f"internal error: {self._bug!r}")

    def _left_out(self) -> None:
        """A narrowed resume finishes its part, not the run it resumes: while what it left
        out is not done, it does not report "completed" (exit 1, saying what is left)."""
        left = self.resume.left_out if self.resume is not None else ()
        if not left or self.result.halted:
            return
        shown = ", ".join(f"{step!r} on {host}" for step, host in left[:3])
        more = f" and {len(left) - 3} more" if len(left) > 3 else ""
        assert self.resume is not None
        self.result.halted = (
            f"run {self.resume.run_id} is not finished: {shown}{more} not done, left out by "
            f"--limit/--tags/--start-at; resume {self.resume.run_id} again to finish it"
        )

    def _restore(self) -> None:
        """--resume: the values the earlier run registered, journaled again here (but
        what a ``set`` computed from a secret: it is computed again)."""
        again = {c.step for c in self.plan.commands if recomputed(c)}
        for reg in self.resume.registered if self.resume else ():
            if reg.step in again:
                continue
            hosts = list(reg.hosts)
            value = self.values.restored(reg.value, hosts[0] if hosts else "", reg.step, reg.is_set)
            self.values.set(reg.name, hosts, value)
            self._registered(reg.step, reg.name, hosts, value, reg.is_set)

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
        hosts = {c.runs_on.name: c.runs_on for c in self.plan.commands if not c.runs_on.is_local}
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
        first = step.commands[0].host.name if step.commands else None
        if not self._confirmed(step.name, self.values.confirm_text(step, first)):
            self._not_run(index, step, started)
            return
        self._step_started(index, step, [c.host.name for c in step.commands], len(step.batches))
        failures = 0
        for b, batch in enumerate(step.batches, 1):
            if self._halt.is_set():
                counts.update(self._cancel(step, batch))
                continue
            if len(step.batches) > 1:
                hosts = list(dict.fromkeys(c.host.name for c in batch))
                self.emit(BatchStarted(run_id=self.run_id, step=step.name, batch=b, hosts=hosts))
            for result in self._run_commands(step, batch):
                counts[result.status] += 1
                failures += result.failed
                halts = step.on_failure == OnFailure.HALT and step.section is not Section.ALWAYS
                if result.failed and halts and failures > step.max_failures:
                    self.halt(f"step {step.name!r} failed on {result.host}")
        status = step_status(step.on_failure, step.max_failures, failures, counts)
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
            first = batch.hosts[0] if batch.hosts else None
            if self._halt.is_set() or not self._confirmed(
                group.name, self.values.confirm_text(group, first)
            ):
                for step in batch.steps:
                    counts.update(self._cancel(step, step.commands))
                continue
            counts.update(BatchRun(self, index, group, batch, failed).run())
            halts = group.on_failure == OnFailure.HALT and group.section is not Section.ALWAYS
            if halts and len(failed) > group.max_failures:
                self.halt(f"group {group.name!r} failed on {', '.join(sorted(failed))}")
        if not counts or all(s is Status.CANCELLED for s in counts.elements()):
            self.result.steps_not_run.append(group.name)
        status = step_status(group.on_failure, group.max_failures, len(failed), counts)
        self._step_finished(index, group.name, status, counts, started, is_group=True)

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
        """Submit commands and yield each (masked) result as it arrives. A loop's items
        run in order on each host (``Chains``): the next is started when the one before
        it ended; a ``set`` or ``assert`` is evaluated here, on the controller."""
        assert self._pool is not None
        chains = Chains(commands)
        ready = deque(chains.first)
        expected = 0
        while ready or expected:
            if ready:
                started = self._start(step, chains, ready.popleft())
                if started is None:
                    expected += 1
                    continue
                raw, fresh = started
            else:
                done = self._next()
                self._running -= 1
                expected -= 1
                raw, fresh = self._collect(done), True
                self.reach.note(done.item.command, raw)
            yield from self._ended(step, chains, raw, fresh, ready)

    def _start(
        self, step: PlannedStep, chains: Chains, cmd: Command
    ) -> tuple[CommandResult, bool] | None:
        """Start ``cmd``: None when it went to the pool; else its result, decided now,
        and whether this run decided it (not ``--resume``'s earlier run)."""
        assert self._pool is not None
        decided = self._decided_now(step, cmd)
        if decided is not None:  # out of reach (registered), or ok in the earlier run
            return decided, decided.status is Status.CANCELLED
        if cmd.loop is not None:  # a list known only now: its items, the first started
            try:
                items = self.values.expanded(cmd)
            except TemplateError as exc:
                return _decided(cmd, Status.FAILED, f"{exc}"), True
            if not items:
                return _decided(cmd, Status.SKIPPED, NO_ITEMS), True
            return self._start(step, chains, chains.expanded(items))
        if cmd.controlled is not None:
            if self._halt.is_set():
                return self._cancelled(cmd), True
            return self._on_controller(step, cmd), True
        try:
            job = _Job(step, self.values.executable(cmd), self._shown(cmd))
        except TemplateError as exc:  # at run time: this command fails, never exit 2
            return _decided(cmd, Status.FAILED, f"{exc}"), True
        self._running += 1
        self._pool.submit(self._execute, job)
        return None

    def _ended(
        self,
        step: PlannedStep,
        chains: Chains,
        raw: CommandResult,
        fresh: bool,
        ready: deque[Command],
    ) -> Iterator[CommandResult]:
        """Record a result; a loop's item starts the host's next one, or ends its loop."""
        if raw.item is None:
            yield self._finish(step, raw, register=fresh)
            return
        value = item_value(raw, step.register, self.values.value_of, fresh)
        yield self._finish(step, raw, register=False)
        following, rest = chains.after(raw, value, fresh)
        if following is not None:
            ready.append(following)
        for result in rest:
            chains.record(result, register_value(result))
            yield self._finish(step, result, register=False)
        if chains.done(raw.host) and step.register is not None:
            registered = chains.registered(raw.host, with_item)
            if registered is not None:
                hosts = list(step.register_hosts) if step.run_once or step.local else [raw.host]
                self.values.set(step.register, hosts, registered)
                self._registered(step.name, step.register, hosts, registered)

    def _on_controller(self, step: PlannedStep, cmd: Command) -> CommandResult:
        """A ``set`` or ``assert``, evaluated now; a ``set``'s values given to its hosts
        and journaled (what a secret made, as its stand-ins make it)."""
        evaluated = evaluate_on_controller(cmd, self.values)
        if evaluated.values is not None and evaluated.shown is not None:
            hosts = list(step.register_hosts) if step.run_once or step.local else [cmd.host.name]
            secret = recomputed(cmd)
            if secret:
                self._mask_also(derived_strings(evaluated.values))
            for name, value in evaluated.values.items():
                shown = evaluated.shown[name] if secret else None
                self.values.set(name, hosts, value, shown)
                self._registered(step.name, name, hosts, evaluated.shown[name], is_set=True)
        return evaluated.result

    def _mask_also(self, texts: list[str]) -> None:
        """Mask what a ``set`` made of a secret from now on, as the secret itself."""
        more = getattr(self.mask, "with_values", None)
        if texts and callable(more):
            self.mask = more(texts)
            self.values.mask = self.mask

    def _decided_now(self, step: PlannedStep, cmd: Command) -> CommandResult | None:
        """A result without running: the host is out of reach, or (``--resume``) an earlier
        run did it — only the steps proper: rescue and always steps answer this run."""
        held = self.reach.held(cmd, step.section)
        if held is not None:
            return _decided(cmd, *held)
        if step.section is not Section.MAIN or recomputed(cmd):
            # computed from a secret: journaled only as stand-ins, so computed again
            return None
        earlier = self.earlier(cmd)
        if earlier is None:
            return None
        run_id, status = earlier
        if status is Status.RESCUED:
            return _decided(cmd, Status.RESCUED, f"rescued in run {run_id}")
        # Reported ok (attempts 0): the host is done, by an earlier run.
        return _decided(cmd, Status.OK, f"already ok in run {run_id}")

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
                item=cmd.item_index,
                delegate=None if cmd.delegate is None else cmd.delegate.name,
            )
        )
        relay = self._relay(cmd)
        try:
            return run_command(
                cmd, self.context, cancel=self._halt, on_output=relay, kill=self._kill
            )
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
        if result.status is Status.RESCUED:  # it replaces the failure it rescued
            _drop_failure(self.result.results, result)
        self.result.results.append(result)
        group, batch = (step.group, step.batch) if step is not None else (None, None)
        self.emit(CommandFinished(run_id=self.run_id, result=result, group=group, batch=batch))
        return result

    def _registered(
        self, step: str, name: str, hosts: list[str], value: object, is_set: bool = False
    ) -> None:
        self.emit(
            Registered(
                run_id=self.run_id,
                step=step,
                name=name,
                hosts=hosts,
                value=self.values.journaled(value),
                is_set=is_set,
            )
        )

    def _step_started(self, index: int, step: PlannedStep, hosts: list[str], batches: int) -> None:
        """``hosts``: of the step's commands, once each (a loop has a command per item)."""
        self.emit(
            StepStarted(
                run_id=self.run_id,
                step=step.name,
                index=index,
                hosts=list(dict.fromkeys(hosts)),
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


def _drop_failure(results: list[CommandResult], rescued: CommandResult) -> None:
    """Remove the latest failed result of the step and host ``rescued`` is for."""
    for i in range(len(results) - 1, -1, -1):
        r = results[i]
        if (r.step, r.host) == (rescued.step, rescued.host) and r.failed:
            del results[i]
            return


def _has_always(plan: Plan) -> bool:
    """Whether a halted run of ``plan`` still runs always steps (a group's or its own)."""
    if any(item.section is Section.ALWAYS for item in plan.steps):
        return True
    return any(isinstance(item, PlannedGroup) and item.always for item in plan.steps)
