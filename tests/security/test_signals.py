"""Signal handlers only record; the runner's loop acts (SPEC §6, issue: a Ctrl-C at the
wrong moment deadlocked on the pool's lock held by ``submit``)."""

from __future__ import annotations

import faulthandler
import os
import signal
import threading

from runbook.model.command import Command, Outcome
from runbook.model.plan import Plan, PlannedStep
from runbook.model.runbook import Host
from runbook.run.contexts.base import ExecutionContext
from runbook.run.runner import Runner


class Instant(ExecutionContext):
    def execute(self, command: Command, on_output: object = None) -> Outcome:
        return Outcome(rc=0)

    def kill_all(self) -> None:
        pass


def _plan(hosts: int, steps: int) -> Plan:
    planned = []
    for s in range(steps):
        cmds = tuple(
            Command(f"s{s}", Host(f"h{i}", connection="local"), "true") for i in range(hosts)
        )
        planned.append(PlannedStep(f"s{s}", position=None, batches=(cmds,)))  # type: ignore[arg-type]
    return Plan("storm", "storm.yml", "", tuple(planned))


def _storm_run(runner: Runner) -> object:
    """``runner.run()`` in the main thread while another thread sends it SIGINTs as fast
    as it can; the handler is the one ``apply`` installs (``runner.interrupt``)."""
    previous = signal.signal(signal.SIGINT, lambda *_: runner.interrupt())
    stop = threading.Event()

    def storm() -> None:
        while not stop.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    killer = threading.Thread(target=storm, daemon=True)
    try:
        killer.start()
        return runner.run()
    finally:
        stop.set()
        killer.join()
        signal.signal(signal.SIGINT, previous)


def test_a_storm_of_interrupts_during_submit_never_deadlocks() -> None:
    """Before the fix the handler halted the pool itself, taking the lock ``submit``
    holds: this storm deadlocked or overflowed the stack within a few runs. Now every run
    ends interrupted, with every command reported."""
    faulthandler.dump_traceback_later(120, exit=True)  # a deadlock fails, never hangs CI
    try:
        for _ in range(20):
            runner = Runner(_plan(hosts=500, steps=4), Instant(), run_id="storm", forks=2)
            result = _storm_run(runner)
            assert result.exit_code == 130  # type: ignore[attr-defined]
            assert len(result.results) == 2000  # type: ignore[attr-defined]
    finally:
        faulthandler.cancel_dump_traceback_later()
