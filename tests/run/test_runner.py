"""``runbook.run.runner.Runner``: the step loop and the failure policy, through the Python API.

Plans come from real runbooks (loader → inventory → planner); commands run on a scripted
``FakeContext`` (decides each command's outcome, records what ran), or on the real
``LocalExecutionContext`` for timeouts and kills. Where a test needs a command to be still
running while the runner reacts, the command waits on an observable condition of the run
(``result.halted``), never on a sleep.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from runbook.errors import ConnectError
from runbook.inventory.build import build_inventory
from runbook.load.loader import load_runbook
from runbook.model import events as ev
from runbook.model.command import Command, Outcome, Status
from runbook.model.events import Event
from runbook.plan.planner import Plan, make_plan
from runbook.run.contexts.base import ExecutionContext
from runbook.run.contexts.fault import FaultInjectingContext
from runbook.run.contexts.local import LocalExecutionContext
from runbook.run.runner import Resume, Runner, RunResult

HANG = 30.0


class FakeContext(ExecutionContext):
    """Runs nothing; ``script(command)`` decides the outcome. Records every attempt."""

    def __init__(self, script: Callable[[Command], Outcome] | None = None) -> None:
        self.script = script or (lambda c: Outcome(rc=0, stdout=f"{c.host.name}\n".encode()))
        self.lock = threading.Lock()
        self.executed: list[tuple[str, str]] = []
        self.connected: list[str] = []
        self.killed = 0

    def connect(self, host) -> None:
        with self.lock:
            self.connected.append(host.name)

    def execute(self, command: Command, on_output: object = None) -> Outcome:
        with self.lock:
            self.executed.append(command.key)
        return self.script(command)

    def kill_all(self) -> None:
        with self.lock:
            self.killed += 1


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self, *only: str) -> list[str]:
        return [e.kind for e in self.events if not only or e.kind in only]

    def of(self, kind: str) -> list[dict]:
        return [e.to_dict() for e in self.events if e.kind == kind]


def make(tmp_path: Path, text: str, extra: dict | None = None) -> Plan:
    path = tmp_path / "rb.yml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    rb = load_runbook(str(path))
    inv = build_inventory(rb.hosts, rb.inventory, rb.positions, rb.path)
    return make_plan(rb, inv, extra)


def run_bounded(runner: Runner) -> RunResult:
    """``runner.run()`` in a thread: a hang fails the test instead of the whole suite."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = runner.run()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="test-runner", daemon=True)
    thread.start()
    thread.join(HANG)
    if thread.is_alive():
        # Best effort clean-up, which must not hang the suite in turn.
        threading.Thread(target=runner.context.kill_all, daemon=True).start()
        pytest.fail(f"the run did not finish within {HANG}s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def run(plan: Plan, context: ExecutionContext, **kw) -> tuple[RunResult, Recorder]:
    rec = Recorder()
    listeners = [rec, *kw.pop("listeners", [])]
    runner = Runner(plan, context, run_id="test-run", listeners=listeners, **kw)
    return run_bounded(runner), rec


def statuses(result: RunResult) -> dict[tuple[str, str], str]:
    out = {}
    for r in result.results:
        assert (r.step, r.host) not in out, f"two results for {(r.step, r.host)}"
        out[(r.step, r.host)] = r.status.value
    return out


def fails_on(*hosts: str, step: str = "first", rc: int = 2) -> Callable[[Command], Outcome]:
    """Commands of ``step`` fail on ``hosts``; everything else succeeds."""

    def script(c: Command) -> Outcome:
        if c.step == step and c.host.name in hosts:
            return Outcome(rc=rc, stderr=b"boom\n")
        return Outcome(rc=0)

    return script


FOUR = """
name: four
hosts:
  g: [h1, h2, h3, h4]
steps:
  - name: first
    hosts: g
    run: echo 1
  - name: second
    hosts: g
    run: echo 2
"""


def with_step_options(text: str, step: str, **options) -> str:
    """Add ``key: value`` lines to the step named ``step`` (a test-local YAML edit)."""
    lines = textwrap.dedent(text).lstrip("\n").splitlines()
    i = lines.index(f"  - name: {step}")
    import json

    extra = [f"    {k}: {json.dumps(v)}" for k, v in options.items()]
    return "\n".join(lines[: i + 1] + extra + lines[i + 1 :]) + "\n"


# -- the happy path and events ------------------------------------------------------------


def test_all_ok_runs_every_command_once_in_step_order(tmp_path):
    ctx = FakeContext()
    result, rec = run(make(tmp_path, FOUR), ctx, forks=3)
    assert result.exit_code == 0 and result.status == "completed" and result.halted is None
    assert sorted(ctx.executed) == sorted(
        [(s, h) for s in ("first", "second") for h in ("h1", "h2", "h3", "h4")]
    )
    # A step finishes on all hosts before the next starts.
    firsts = [i for i, k in enumerate(ctx.executed) if k[0] == "first"]
    seconds = [i for i, k in enumerate(ctx.executed) if k[0] == "second"]
    assert max(firsts) < min(seconds)
    assert set(statuses(result).values()) == {"ok"}
    assert result.counts()["ok"] == 8
    # Remote hosts are connected once each, before step 1.
    assert sorted(ctx.connected) == ["h1", "h2", "h3", "h4"]


def test_event_stream_shape(tmp_path):
    result, rec = run(make(tmp_path, FOUR), FakeContext(), forks=2)
    kinds = rec.kinds(
        ev.RunStarted.kind,
        ev.StepStarted.kind,
        ev.CommandFinished.kind,
        ev.StepFinished.kind,
        ev.RunFinished.kind,
    )
    expected = (
        ["run_started", "step_started"]
        + ["command_finished"] * 4
        + ["step_finished", "step_started"]
        + ["command_finished"] * 4
        + ["step_finished", "run_finished"]
    )
    assert kinds == expected
    assert len(rec.of(ev.CommandStarted.kind)) == 8
    assert {e.run_id for e in rec.events} == {"test-run"}
    done = rec.of(ev.CommandFinished.kind)[0]
    fields = {"step", "host", "status", "rc", "stdout", "stderr", "started", "finished"}
    assert fields | {"attempts", "error"} <= set(done)
    assert done["stdout"] == f"{done['host']}\n"
    fin = rec.of(ev.RunFinished.kind)[0]
    assert fin["exit_code"] == 0 and fin["counts"]["ok"] == 8


# -- halt ---------------------------------------------------------------------------------


def test_halt_cancels_later_batches_and_steps(tmp_path):
    plan = make(tmp_path, with_step_options(FOUR, "first", serial=1))
    ctx = FakeContext(fails_on("h2"))
    result, rec = run(plan, ctx, forks=4)
    assert result.exit_code == 1 and result.status == "halted"
    assert result.halted == "step 'first' failed on h2"
    assert statuses(result) == {
        ("first", "h1"): "ok",
        ("first", "h2"): "failed",
        ("first", "h3"): "cancelled",
        ("first", "h4"): "cancelled",
        ("second", "h1"): "cancelled",
        ("second", "h2"): "cancelled",
        ("second", "h3"): "cancelled",
        ("second", "h4"): "cancelled",
    }
    assert ctx.executed == [("first", "h1"), ("first", "h2")]
    assert result.steps_not_run == ["second"]
    finished = {d["step"]: d["status"] for d in rec.of(ev.StepFinished.kind)}
    assert finished == {"first": "failed", "second": "cancelled"}
    # A step that never ran has no step_started.
    assert [d["step"] for d in rec.of(ev.StepStarted.kind)] == ["first"]


def test_halt_drains_pending_hosts_and_lets_in_flight_finish(tmp_path):
    hosts = [f"n{i:02d}" for i in range(12)]
    plan = make(
        tmp_path,
        "name: x\nhosts:\n  g: [" + ", ".join(hosts) + "]\n"
        "steps:\n  - name: s\n    hosts: g\n    run: echo\n",
    )
    holder: dict[str, Runner] = {}

    def script(c: Command) -> Outcome:
        if c.host.name == "n00":
            return Outcome(rc=1)
        # The next command is in flight when the failure is judged: it waits until the
        # runner has halted, and must still be allowed to finish.
        deadline = time.monotonic() + HANG
        while not holder["runner"].result.halted and time.monotonic() < deadline:
            time.sleep(0.001)
        return Outcome(rc=0)

    ctx = FakeContext(script)
    runner = Runner(plan, ctx, run_id="r", forks=1)
    holder["runner"] = runner
    result = run_bounded(runner)
    st = statuses(result)
    assert st[("s", "n00")] == "failed"
    assert st[("s", "n01")] == "ok"  # in flight at the halt: finished, not killed
    assert all(st[("s", h)] == "cancelled" for h in hosts[2:])
    assert ctx.executed == [("s", "n00"), ("s", "n01")]
    assert result.exit_code == 1


def test_continue_records_failures_and_goes_on(tmp_path):
    plan = make(tmp_path, with_step_options(FOUR, "first", on_failure="continue"))
    ctx = FakeContext(fails_on("h1", "h3"))
    result, rec = run(plan, ctx, forks=4)
    assert result.exit_code == 0 and result.halted is None
    st = statuses(result)
    assert [st[("first", h)] for h in ("h1", "h2", "h3", "h4")] == ["failed", "ok", "failed", "ok"]
    assert all(st[("second", h)] == "ok" for h in ("h1", "h2", "h3", "h4"))
    assert result.counts()["failed"] == 2
    assert {d["step"]: d["status"] for d in rec.of(ev.StepFinished.kind)} == {
        "first": "tolerated",
        "second": "ok",
    }


def test_continue_on_one_step_does_not_change_the_next_steps_policy(tmp_path):
    text = with_step_options(FOUR, "first", on_failure="continue")
    plan = make(tmp_path, text)
    script_first = fails_on("h1")
    script_second = fails_on("h1", step="second")
    ctx = FakeContext(lambda c: script_first(c) if c.step == "first" else script_second(c))
    result, _ = run(plan, ctx, forks=1)
    assert result.exit_code == 1  # step two halts (the default policy)
    assert result.halted == "step 'second' failed on h1"


@pytest.mark.parametrize(
    "max_failures,failing,exit_code,step_status",
    [
        (1, ("h3",), 0, "tolerated"),
        (1, ("h1", "h3"), 1, "failed"),
        (2, ("h1", "h3"), 0, "tolerated"),
        ("50%", ("h1", "h3"), 0, "tolerated"),  # 50% of 4 = 2 tolerated
        ("50%", ("h1", "h2", "h3"), 1, "failed"),
        ("25%", ("h4",), 0, "tolerated"),
        ("24%", ("h4",), 1, "failed"),  # floor(0.96) = 0 tolerated
        (0, ("h2",), 1, "failed"),
    ],
)
def test_max_failures(tmp_path, max_failures, failing, exit_code, step_status):
    plan = make(tmp_path, with_step_options(FOUR, "first", max_failures=max_failures))
    result, rec = run(plan, FakeContext(fails_on(*failing)), forks=4)
    assert result.exit_code == exit_code
    first = {d["step"]: d for d in rec.of(ev.StepFinished.kind)}["first"]
    assert first["status"] == step_status
    assert first["counts"]["failed"] == len(failing)
    second = [s for (step, _), s in statuses(result).items() if step == "second"]
    assert set(second) == ({"ok"} if exit_code == 0 else {"cancelled"})


def test_max_failures_counts_across_batches(tmp_path):
    plan = make(tmp_path, with_step_options(FOUR, "first", serial=2, max_failures=1))
    ctx = FakeContext(fails_on("h1", "h4"))
    result, _ = run(plan, ctx, forks=4)
    # One failure per batch; the second one (in batch 2) is the one too many.
    assert result.exit_code == 1
    assert result.halted == "step 'first' failed on h4"


# -- statuses ----------------------------------------------------------------------------


def test_unreachable_host_counts_as_a_failure(tmp_path):
    def script(c: Command) -> Outcome:
        if c.host.name == "h2":
            raise ConnectError("h2", "connection refused")
        return Outcome(rc=0)

    result, _ = run(make(tmp_path, FOUR), FakeContext(script), forks=4)
    st = statuses(result)
    assert st[("first", "h2")] == "unreachable"
    assert result.exit_code == 1
    bad = next(r for r in result.results if r.host == "h2" and r.step == "first")
    assert bad.error == "connection refused" and bad.rc is None


def test_retries_rerun_a_failed_command(tmp_path):
    attempts: dict[str, int] = {}

    def script(c: Command) -> Outcome:
        attempts[c.host.name] = attempts.get(c.host.name, 0) + 1
        # h1 succeeds on its 3rd attempt; h2 never does.
        ok = c.host.name == "h1" and attempts["h1"] == 3
        return Outcome(rc=0 if ok else 1)

    plan = make(
        tmp_path,
        """
        name: r
        hosts:
          g: [h1, h2]
        steps:
          - name: s
            hosts: g
            run: check
            retries: 3
            delay: 0
            on_failure: continue
        """,
    )
    result, _ = run(plan, FakeContext(script), forks=2)
    by_host = {r.host: r for r in result.results}
    assert (by_host["h1"].status, by_host["h1"].attempts) == (Status.OK, 3)
    assert (by_host["h2"].status, by_host["h2"].attempts) == (Status.FAILED, 4)
    assert attempts == {"h1": 3, "h2": 4}


def test_fault_injection_fails_matching_steps_without_executing(tmp_path):
    plan = make(
        tmp_path,
        """
        name: f
        hosts:
          g: [h1, h2]
        steps:
          - {name: db-migrate, hosts: g, run: migrate, on_failure: continue}
          - {name: web-restart, hosts: g, run: restart}
        """,
    )
    ctx = FakeContext()
    result, _ = run(plan, FaultInjectingContext(ctx, "db-"), forks=2)
    assert sorted(ctx.executed) == [("web-restart", "h1"), ("web-restart", "h2")]
    faulted = [r for r in result.results if r.step == "db-migrate"]
    assert [(r.status, r.rc, r.stderr) for r in faulted] == [
        (Status.FAILED, 1, "fault injection")
    ] * 2
    assert result.exit_code == 0


def test_when_false_is_skipped_and_not_a_failure(tmp_path):
    plan = make(
        tmp_path,
        """
        name: w
        hosts:
          g:
            hosts:
              h1: {vars: {go: true}}
              h2: {vars: {go: false}}
        steps:
          - {name: s, hosts: g, run: x, when: go}
        """,
    )
    ctx = FakeContext(lambda c: Outcome(rc=1))
    result, _ = run(plan, ctx)
    assert statuses(result) == {("s", "h1"): "failed", ("s", "h2"): "skipped"}
    assert ctx.executed == [("s", "h1")]


def test_resume_does_not_rerun_commands_already_ok(tmp_path):
    ctx = FakeContext()
    done = {("first", "h1"), ("first", "h2")}
    result, _ = run(make(tmp_path, FOUR), ctx, forks=2, resume=Resume("run-0", frozenset(done)))
    by_key = {(r.step, r.host): r for r in result.results}
    # Reported ok, with no attempt in this run, and never executed again.
    for key in done:
        assert (by_key[key].status, by_key[key].attempts) == (Status.OK, 0)
        assert "run-0" in by_key[key].error
        assert key not in ctx.executed
    assert sorted(ctx.executed) == sorted(
        [("first", "h3"), ("first", "h4")] + [("second", h) for h in ("h1", "h2", "h3", "h4")]
    )
    assert result.exit_code == 0


def test_declined_confirmation_halts_before_the_step(tmp_path):
    plan = make(tmp_path, with_step_options(FOUR, "second", confirm="Really?"))
    asked: list[str] = []
    ctx = FakeContext()

    def confirm(name: str, message: str | None) -> bool:
        asked.append(name)
        return False

    result, _ = run(plan, ctx, forks=4, confirm=confirm)
    assert asked == ["second"]
    assert result.exit_code == 1 and "not confirmed" in result.halted
    assert {k[0] for k in ctx.executed} == {"first"}
    assert result.steps_not_run == ["second"]


def test_a_bug_in_the_context_is_raised_not_hidden(tmp_path):
    class Oops(Exception):
        pass

    def script(c: Command) -> Outcome:
        if c.host.name == "h3":
            raise Oops("a bug, not a host failure")
        return Outcome(rc=0)

    rec = Recorder()
    runner = Runner(make(tmp_path, FOUR), FakeContext(script), run_id="r", forks=4, listeners=[rec])
    with pytest.raises(Oops):
        run_bounded(runner)
    # The run still ends properly: later steps cancelled, run_finished emitted.
    fin = rec.of(ev.RunFinished.kind)
    assert len(fin) == 1 and fin[0]["exit_code"] == 1
    st = statuses(runner.result)
    assert st[("first", "h3")] == "failed"
    bad = next(r for r in runner.result.results if (r.step, r.host) == ("first", "h3"))
    assert bad.error.startswith("internal error: Oops(")
    assert all(st[("second", h)] == "cancelled" for h in ("h1", "h2", "h3", "h4"))


def test_pool_threads_are_gone_after_the_run(tmp_path):
    def workers() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("runbook-worker")]

    assert workers() == []
    seen: list[list[str]] = []
    ctx = FakeContext(lambda c: seen.append(workers()) or Outcome(rc=0))
    run(make(tmp_path, FOUR), ctx, forks=8)
    assert seen and all(len(w) == 8 for w in seen)  # the pool was there during the run
    assert workers() == []  # and joined after it


# -- interrupts ---------------------------------------------------------------------------


def test_interrupt_during_retry_delay_ends_the_run(tmp_path):
    """A retry delay waits on the halt event: an interrupt does not wait it out."""
    plan = make(
        tmp_path,
        """
        name: i
        steps:
          - name: s
            hosts: localhost
            run: check
            retries: 5
            delay: 600
          - name: later
            hosts: localhost
            run: never
        """,
    )
    first_attempt = threading.Event()

    def script(c: Command) -> Outcome:
        first_attempt.set()
        return Outcome(rc=1)

    ctx = FakeContext(script)
    runner = Runner(plan, ctx, run_id="r", forks=1)
    threading.Thread(
        target=lambda: first_attempt.wait(HANG) and runner.interrupt(), daemon=True
    ).start()
    result = run_bounded(runner)
    assert result.exit_code == 130 and result.status == "interrupted"
    st = statuses(result)
    assert st == {("s", "localhost"): "failed", ("later", "localhost"): "cancelled"}
    assert ctx.executed == [("s", "localhost")]
    assert ctx.killed == 0  # one interrupt halts; it does not kill


def test_second_interrupt_kills_in_flight_commands(tmp_path):
    tag = f"1000.{uuid.uuid4().int % 10**6:06d}"
    marker = tmp_path / "started"
    plan = make(
        tmp_path,
        f"""
        name: k
        steps:
          - name: long
            hosts: localhost
            run: touch {marker}; sleep {tag} & sleep {tag}; wait
            timeout: 600
        """,
    )
    ctx = LocalExecutionContext(kill_grace=1.0)
    runner = Runner(plan, ctx, run_id="r", forks=1)

    def interrupter() -> None:
        deadline = time.monotonic() + HANG
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        runner.interrupt()
        runner.interrupt()

    threading.Thread(target=interrupter, daemon=True).start()
    result = run_bounded(runner)
    (r,) = result.results
    assert r.status is Status.FAILED and r.error == "killed: the run was interrupted"
    assert result.exit_code == 130
    assert _pgrep(f"sleep {tag}") == []


# -- timeouts on the local context ----------------------------------------------------------


def _pgrep(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, timeout=HANG)
    return [p for p in out.stdout.split() if p != str(os.getpid())]


def test_timeout_kills_the_whole_process_group(tmp_path):
    tag = f"1000.{uuid.uuid4().int % 10**6:06d}"
    plan = make(
        tmp_path,
        f"""
        name: t
        steps:
          - name: slow
            hosts: localhost
            timeout: 0.5
            run: echo before; sleep {tag} & sleep {tag}; wait
        """,
    )
    result, _ = run(plan, LocalExecutionContext(kill_grace=1.0))
    (r,) = result.results
    assert r.status is Status.TIMED_OUT
    assert r.stdout == "before\n"  # output up to the kill is kept
    assert "timed out after 0.5s" in r.error
    assert _pgrep(f"sleep {tag}") == []
    assert result.exit_code == 1


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path):
    tag = f"1000.{uuid.uuid4().int % 10**6:06d}"
    plan = make(
        tmp_path,
        f"""
        name: t
        steps:
          - name: stubborn
            hosts: localhost
            timeout: 0.5
            run: trap '' TERM; sleep {tag} & sleep {tag}; wait
        """,
    )
    result, _ = run(plan, LocalExecutionContext(kill_grace=0.5))
    (r,) = result.results
    assert r.status is Status.TIMED_OUT
    assert r.rc == -9
    assert _pgrep(f"sleep {tag}") == []


def test_timeout_on_one_host_does_not_delay_the_others(tmp_path):
    # Not a speed assertion: the fast host's own duration is measured by the runner.
    plan = make(
        tmp_path,
        """
        name: t
        hosts:
          g:
            hosts:
              fast: {connection: local}
              slow: {connection: local}
        steps:
          - name: s
            hosts: g
            timeout: 1
            on_failure: continue
            run: "{{ 'true' if host.name == 'fast' else 'sleep 30' }}"
        """,
    )
    result, _ = run(plan, LocalExecutionContext(kill_grace=0.5), forks=2)
    st = statuses(result)
    assert st == {("s", "fast"): "ok", ("s", "slow"): "timed_out"}
    assert result.exit_code == 0


class _FailsAtSecond:
    """A listener that raises when the step ``second`` starts."""

    def __init__(self) -> None:
        self.calls = 0

    def handle(self, event: Event) -> None:
        self.calls += 1
        if isinstance(event, ev.StepStarted) and event.step == "second":
            raise OSError("disk full")


class _EssentialFailsAtSecond(_FailsAtSecond):
    essential = True  # as the journal: results it cannot record would be lost


@pytest.mark.parametrize("essential", [False, True], ids=["observer", "essential"])
def test_a_failing_listener_is_detached_unless_it_is_essential(tmp_path, essential):
    """Observers never steer: one that raises is dropped and the run completes; an
    ``EssentialListener`` (the journal) that raises halts the run before ``second`` runs."""
    listener = _EssentialFailsAtSecond() if essential else _FailsAtSecond()
    assert isinstance(listener, ev.EssentialListener) is essential
    ctx = FakeContext()
    result, rec = run(make(tmp_path, FOUR), ctx, listeners=[listener])
    ran = {step for step, _ in ctx.executed}
    if essential:
        assert result.exit_code == 1 and "_EssentialFailsAtSecond failed" in result.halted
        assert ran == {"first"}
    else:
        assert result.exit_code == 0 and result.halted is None
        assert ran == {"first", "second"}
    assert rec.kinds("run_finished") == ["run_finished"]
