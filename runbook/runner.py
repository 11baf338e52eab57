"""The step loop: batches through the ``WorkerPool``, the failure policy, interrupts.

Policy (SPEC §3): ``halt`` — once a step's failures exceed ``max_failures`` nothing new
starts, in-flight commands finish within their timeout, everything left is ``cancelled``
and the run ends halted. ``continue`` — failures are recorded and the run goes on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runbook import events as ev
from runbook.command import Command, CommandResult, Status, run_command
from runbook.contexts.base import ExecutionContext
from runbook.errors import ConnectError
from runbook.events import Event, Listener
from runbook.planner import Plan, PlannedStep
from runbook.pool import WorkerPool

EXIT_OK, EXIT_HALTED, EXIT_INTERRUPTED = 0, 1, 130


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
    def status(self) -> str:
        if self.interrupted:
            return "interrupted"
        return "halted" if self.halted else "completed"

    def counts(self) -> dict[str, int]:
        c = Counter(r.status.value for r in self.results)
        return {s.value: c.get(s.value, 0) for s in Status}


class Runner:
    def __init__(
        self,
        plan: Plan,
        context: ExecutionContext,
        *,
        run_id: str,
        forks: int = 10,
        listeners: Iterable[Listener] = (),
        fault_point: str | None = None,
        mask: Callable[[str], str] = str,
        confirm: Callable[[PlannedStep], bool] | None = None,
        done: set[tuple[str, str]] | None = None,
        resumes: str | None = None,
    ) -> None:
        self.plan = plan
        self.context = context
        self.run_id = run_id
        self.forks = max(1, forks)
        self.listeners = list(listeners)
        self.fault_point = fault_point or None
        self.mask = mask
        self.confirm = confirm
        self.done = done or set()  # (step, host) already ok in an earlier run: --resume
        self.resumes = resumes
        self._halt = threading.Event()
        self._emit_lock = threading.Lock()
        self._interrupts = 0
        self.result = RunResult(run_id)

    # -- control, callable from a signal handler ------------------------------------------
    def halt(self, reason: str) -> None:
        if not self.result.halted:
            self.result.halted = reason
        self._halt.set()
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.halt()

    def interrupt(self) -> None:
        """First call: halt. Second: kill what is in flight (remote process trees too)."""
        self._interrupts += 1
        self.result.interrupted = True
        self.halt("interrupted")
        if self._interrupts >= 2:
            threading.Thread(target=self.context.kill_all, name="runbook-kill", daemon=True).start()

    # -- the run ------------------------------------------------------------------------------
    def emit(self, kind: str, **data: Any) -> None:
        event = Event(kind, {"run_id": self.run_id, **data})
        with self._emit_lock:
            for listener in self.listeners:
                listener.handle(event)

    def run(self) -> RunResult:
        res = self.result
        res.started = time.time()
        plan = self.plan
        self.emit(
            ev.RUN_STARTED,
            runbook=plan.name,
            source=plan.source,
            digest=plan.digest,
            steps=[s.name for s in plan.steps],
            hosts=len({c.host.name for c in plan.commands}),
            commands=len(plan.commands),
            forks=self.forks,
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
                ev.RUN_FINISHED,
                status=res.status,
                exit_code=res.exit_code,
                halted=res.halted,
                counts=res.counts(),
                duration=round(res.finished - res.started, 6),
                steps_not_run=res.steps_not_run,
            )
        if bug is not None:
            raise bug
        return res

    def _preconnect(self) -> None:
        """Open every remote connection in parallel before step 1 (handshakes dominate)."""
        hosts = {c.host.name: c.host for c in self.plan.commands if not c.host.is_local}
        for host in hosts.values():
            self._pool.submit(self._connect, host)
        for done in self._pool.join(len(hosts)):
            if done.error is not None:
                raise done.error

    def _connect(self, host: Any) -> None:
        # A failure is remembered by the context: the host's commands come out unreachable.
        with contextlib.suppress(ConnectError):
            self.context.connect(host)

    def _run_step(self, index: int, step: PlannedStep) -> BaseException | None:
        started = time.time()
        counts: Counter[str] = Counter()
        bug: BaseException | None = None
        confirmable = not self._halt.is_set() and self.confirm is not None and step.confirm
        if confirmable and not self.confirm(step):
            self.halt(f"step {step.name!r} was not confirmed")
        if self._halt.is_set():
            self.result.steps_not_run.append(step.name)
            for cmd in step.commands:
                counts[self._finish(self._cancelled(cmd)).status.value] += 1
            self._step_finished(index, step, "cancelled", counts, started)
            return None
        self.emit(
            ev.STEP_STARTED,
            step=step.name,
            index=index,
            hosts=[c.host.name for c in step.commands],
            batches=len(step.batches),
            on_failure=step.on_failure,
            max_failures=step.max_failures,
        )
        failures = 0
        for b, batch in enumerate(step.batches):
            if self._halt.is_set():
                for cmd in batch:
                    counts[self._finish(self._cancelled(cmd)).status.value] += 1
                continue
            if len(step.batches) > 1:
                self.emit(
                    ev.BATCH_STARTED,
                    step=step.name,
                    batch=b + 1,
                    hosts=[c.host.name for c in batch],
                )
            for cmd in batch:
                if cmd.key in self.done:
                    # Reported ok (attempts 0): the host is done, by an earlier run.
                    earlier = CommandResult.decided(
                        cmd, Status.OK, f"already ok in run {self.resumes}"
                    )
                    counts[self._finish(earlier).status.value] += 1
                else:
                    self._pool.submit(self._execute, cmd)
            expected = sum(1 for c in batch if c.key not in self.done)
            for _ in range(expected):
                done = None
                while done is None:
                    done = self._pool.get(timeout=0.2)
                result = self._collect(done)
                if done.error is not None:
                    bug = bug or done.error
                counts[result.status.value] += 1
                if result.failed:
                    failures += 1
                    if step.on_failure == "halt" and failures > step.max_failures:
                        self.halt(f"step {step.name!r} failed on {result.host}")
        halting = step.on_failure == "halt" and failures > step.max_failures
        status = "failed" if halting else ("tolerated" if failures else "ok")
        if status == "ok" and counts.get("cancelled"):
            status = "cancelled"
        self._step_finished(index, step, status, counts, started)
        return bug

    def _execute(self, cmd: Command) -> CommandResult:
        self.emit(ev.COMMAND_STARTED, step=cmd.step, host=cmd.host.name)
        return run_command(
            cmd, self.context, fault_point=self.fault_point, cancel=self._halt, mask=self.mask
        )

    def _collect(self, done: Any) -> CommandResult:
        cmd: Command = done.item
        if done.cancelled:
            result = self._cancelled(cmd)
        elif done.error is not None:
            result = CommandResult.decided(cmd, Status.FAILED, f"internal error: {done.error!r}")
        else:
            result = done.result
        return self._finish(result)

    def _cancelled(self, cmd: Command) -> CommandResult:
        return CommandResult.decided(cmd, Status.CANCELLED, self.result.halted)

    def _finish(self, result: CommandResult) -> CommandResult:
        self.result.results.append(result)
        self.emit(ev.COMMAND_FINISHED, **result.to_dict())
        return result

    def _step_finished(
        self, index: int, step: PlannedStep, status: str, counts: Counter[str], started: float
    ) -> None:
        self.emit(
            ev.STEP_FINISHED,
            step=step.name,
            index=index,
            status=status,
            counts={s.value: counts.get(s.value, 0) for s in Status},
            duration=round(time.time() - started, 6),
        )
