"""Failure paths through the runner (SPEC section 10): delegated results, once-per-batch
steps that fail, rescue and always (a group's and the runbook's), always after a halt and
after Ctrl-C, resume into rescue and always, unreachable hosts held out and brought back.

Plans come from real runbooks; commands run on the scripted ``FakeContext`` of
``test_runner`` (it records where each command ran, in order).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from runbook.errors import ConnectError
from runbook.model import events as ev
from runbook.model.command import Command, Outcome
from runbook.model.events import Registered
from runbook.run.runner import Resume, Runner
from tests.run.test_runner import HANG, FakeContext, make, run, run_bounded, statuses

WEB = """
name: patch
hosts:
  web: [web1, web2, web3, web4]
  lb: [lb1]
steps:
  - name: Patch
    hosts: web
    serial: 2
    max_failures: {max_failures}
    steps:
      - name: drain
        delegate_to: {delegate}
        run: lbctl drain {{{{ host.name }}}} on {{{{ delegate.name }}}}
      - name: patch
        run: patch
      - name: add
        delegate_to: {delegate}
        run: lbctl add {{{{ host.name }}}}
{extra}
  - name: after
    hosts: web
    run: after
"""


def web(tmp_path: Path, delegate: str = "controller", max_failures: int = 0, extra: str = ""):
    text = WEB.format(delegate=delegate, max_failures=max_failures, extra=extra)
    return make(tmp_path, text)


RESCUE = """    rescue:
      - name: note
        delegate_to: controller
        run: lbctl note {{ host.name }} {{ failed_step }} rc={{ failed_result.rc }}
    always:
      - name: log
        run: log
"""


def failing(*pairs: tuple[str, str], rc: int = 1):
    """Commands fail where (step, host the command runs on) is one of ``pairs``."""

    def script(c: Command) -> Outcome:
        if (c.step, c.host.name) in pairs:
            return Outcome(rc=rc, stderr=b"boom\n")
        return Outcome(rc=0, stdout=c.cmd.encode())

    return script


def result_of(result, step: str, host: str):
    return next(r for r in result.results if (r.step, r.host) == (step, host))


# -- delegate_to ----------------------------------------------------------------------------


def test_a_delegated_command_runs_on_the_delegate_and_its_result_is_the_targets(tmp_path):
    ctx = FakeContext(lambda c: Outcome(rc=0, stdout=c.cmd.encode()))
    result, rec = run(web(tmp_path, delegate="lb1"), ctx, forks=4)
    assert result.exit_code == 0
    # It ran on lb1, once per target, with `host` the target and `delegate` lb1 ...
    assert sorted(h for s, h in ctx.executed if s == "drain") == ["lb1"] * 4
    drain = result_of(result, "drain", "web3")
    assert drain.stdout == "lbctl drain web3 on lb1"
    # ... and is reported, journaled and counted per target.
    assert {r.host for r in result.results if r.step == "drain"} == {"web1", "web2", "web3", "web4"}
    started = {(e["step"], e["host"]): e.get("delegate") for e in rec.of(ev.CommandStarted.kind)}
    assert ("drain", "web3") in started and ("drain", "lb1") not in started
    # ... and each start says where it runs: on the delegate, or (no delegate) on the host.
    assert started[("drain", "web3")] == "lb1" and started[("add", "web1")] == "lb1"
    assert started[("patch", "web3")] is None
    # The delegate was connected before step 1, as every machine a command runs on.
    assert "lb1" in ctx.connected


def test_a_delegated_failure_fails_the_target_drops_it_and_counts(tmp_path):
    ctx = FakeContext(failing(("drain", "lb1")))
    # Only web2's drain fails: the fake decides by the machine, so script it by command.
    ctx.script = lambda c: (
        Outcome(rc=1) if "drain web2" in c.cmd else Outcome(rc=0, stdout=c.cmd.encode())
    )
    result, _ = run(web(tmp_path, delegate="lb1"), ctx, forks=4)
    st = statuses(result)
    assert st[("drain", "web2")] == "failed"
    assert st[("patch", "web2")] == "cancelled"  # dropped out of its batch
    assert st[("patch", "web1")] == "ok" and st[("add", "web1")] == "ok"
    # max_failures 0: one failed target halts before batch 2.
    assert st[("drain", "web3")] == "cancelled"
    assert result.exit_code == 1 and result.halted == "group 'Patch' failed on web2"


def test_delegated_commands_to_one_delegate_run_in_parallel(tmp_path):
    """Four targets delegate to the controller: all four run at once with --forks 4."""
    running, most = 0, 0
    lock = threading.Lock()
    all_in = threading.Barrier(4, timeout=HANG)

    def script(c: Command) -> Outcome:
        nonlocal running, most
        if c.step == "drain":
            with lock:
                running += 1
                most = max(most, running)
            all_in.wait()  # returns only once four drains run at the same time
            with lock:
                running -= 1
        return Outcome(rc=0)

    plan = make(
        tmp_path,
        """
        name: p
        hosts: {web: [web1, web2, web3, web4]}
        steps:
          - {name: drain, hosts: web, delegate_to: controller, run: "lbctl drain {{ host.name }}"}
        """,
    )
    result, _ = run(plan, FakeContext(script), forks=4)
    assert result.exit_code == 0 and most == 4


# -- a step run once for the batch ------------------------------------------------------------


ONCE = """
name: once
hosts: {web: [web1, web2, web3, web4]}
steps:
  - name: Patch
    hosts: web
    serial: 2
    max_failures: 1
    steps:
      - {name: drain, local: true, run: lbctl drain-batch}
      - {name: patch, run: patch}
  - {name: after, hosts: web, run: after}
"""


def test_a_failing_local_step_in_a_group_fails_every_host_of_its_batch(tmp_path):
    """The bug of issue 21: two failed drains counted as one failed "localhost"."""
    ctx = FakeContext(failing(("drain", "localhost")))
    result, rec = run(make(tmp_path, ONCE), ctx, forks=4)
    batch1 = [r for r in result.results if r.host in ("localhost", "web1", "web2")][:5]
    st = {(r.step, r.host): r.status.value for r in batch1}
    assert st[("drain", "localhost")] == "failed"
    assert st[("drain", "web1")] == st[("drain", "web2")] == "failed"  # each counted
    # Neither host of the batch is patched while still in the pool ...
    assert ("patch", "web1") not in ctx.executed and ("patch", "web2") not in ctx.executed
    assert st[("patch", "web1")] == st[("patch", "web2")] == "cancelled"
    # ... and two failures pass max_failures 1: the run halts before batch 2.
    assert result.exit_code == 1 and result.halted == "group 'Patch' failed on web1, web2"
    assert ctx.executed == [("drain", "localhost")]  # batch 2 never started
    group = [e for e in rec.of(ev.StepFinished.kind) if e["step"] == "Patch"][0]
    assert group["status"] == "failed"


def test_run_once_in_a_group_fails_its_batch_too(tmp_path):
    text = ONCE.replace("local: true", "run_once: true")
    ctx = FakeContext(failing(("drain", "web3")))
    result, _ = run(make(tmp_path, text.replace("max_failures: 1", "max_failures: 2")), ctx)
    st = statuses(result)
    assert st[("drain", "web3")] == "failed" and st[("drain", "web4")] == "failed"
    assert "run once for batch 2 on web3" in result_of(result, "drain", "web4").error
    assert st[("patch", "web4")] == "cancelled"
    assert result.exit_code == 0  # two failed hosts, max_failures 2: tolerated


def test_local_with_hosts_is_refused_pointing_to_delegate_to(tmp_path):
    import pytest

    from runbook.errors import SchemaError

    with pytest.raises(SchemaError) as err:
        make(tmp_path, "name: x\nsteps:\n  - {name: a, local: true, hosts: web, run: x}\n")
    assert "delegate_to: controller" in str(err.value) and "rb.yml:3:28:" in str(err.value)


# -- rescue and always --------------------------------------------------------------------------


def test_rescue_runs_on_the_failed_host_then_always_on_every_host(tmp_path):
    ctx = FakeContext(failing(("patch", "web2")))
    result, rec = run(web(tmp_path, extra=RESCUE), ctx, forks=1)
    st = statuses(result)
    # Batch 1: the inner steps, then rescue (web2 only, on the controller), then always
    # (both hosts), before anything of batch 2.
    batch1 = ctx.executed[: ctx.executed.index(("drain", "localhost"), 4)]
    assert [k for k in batch1 if k[0] in ("patch", "note", "log")] == [
        ("patch", "web1"),
        ("patch", "web2"),
        ("note", "localhost"),
        ("log", "web1"),
        ("log", "web2"),
    ]
    note = result_of(result, "note", "web2")
    assert note.stdout == "lbctl note web2 patch rc=1"  # failed_step, failed_result
    assert st[("note", "web1")] == "skipped"  # no step failed on it
    # web2 is rescued: not failed, not counted (max_failures 0 and no halt).
    assert st[("patch", "web2")] == "rescued"
    assert "rescued by 'note'" in result_of(result, "patch", "web2").error
    assert st[("add", "web2")] == "cancelled"  # it skipped the rest of the inner steps
    assert st[("patch", "web3")] == "ok" and st[("after", "web2")] == "ok"
    assert result.exit_code == 0 and result.counts()["rescued"] == 1
    assert result.counts()["failed"] == 0
    rescued = [e for e in rec.of(ev.CommandFinished.kind) if e["status"] == "rescued"]
    assert [(e["step"], e["host"], e["group"], e["batch"]) for e in rescued] == [
        ("patch", "web2", "Patch", 1)
    ]


def test_a_failed_rescue_fails_the_host_and_always_still_runs_before_the_halt(tmp_path):
    ctx = FakeContext(failing(("patch", "web2"), ("note", "localhost")))
    result, _ = run(web(tmp_path, extra=RESCUE), ctx, forks=2)
    st = statuses(result)
    assert st[("patch", "web2")] == "failed" and st[("note", "web2")] == "failed"
    assert st[("log", "web1")] == "ok" and st[("log", "web2")] == "ok"  # always, then halt
    assert ("log", "web3") not in ctx.executed and st[("log", "web3")] == "cancelled"
    assert result.exit_code == 1 and result.halted == "group 'Patch' failed on web2"


def test_always_failures_are_reported_and_never_halt(tmp_path):
    ctx = FakeContext(failing(("log", "web1")))
    result, _ = run(web(tmp_path, extra=RESCUE), ctx, forks=2)
    st = statuses(result)
    assert st[("log", "web1")] == "failed"
    assert st[("drain", "web3")] == "ok" and st[("after", "web1")] == "ok"
    assert result.exit_code == 0 and result.counts()["failed"] == 1


ALWAYS = """
name: es
hosts: {data: [es1, es2]}
steps:
  - {name: disable, hosts: data, run_once: true, run: disable allocation}
  - {name: restart, hosts: data, serial: 1, run: restart}
  - {name: check, hosts: data, run: check}
always:
  - {name: enable, local: true, run: enable allocation}
  - {name: report, local: true, run: report}
"""


def test_runbook_always_runs_after_the_steps_and_after_a_halt_keeping_the_exit_code(tmp_path):
    ctx = FakeContext()
    result, rec = run(make(tmp_path, ALWAYS), ctx)
    assert ctx.executed[-2:] == [("enable", "localhost"), ("report", "localhost")]
    assert result.exit_code == 0
    ctx = FakeContext(failing(("restart", "es1")))
    result, rec = run(make(tmp_path, ALWAYS), ctx)
    assert ("restart", "es2") not in ctx.executed  # halted ...
    assert ctx.executed[-2:] == [("enable", "localhost"), ("report", "localhost")]  # ... then
    assert result.exit_code == 1 and result.halted == "step 'restart' failed on es1"
    assert statuses(result)[("enable", "localhost")] == "ok"
    assert "enable" not in result.steps_not_run and "check" in result.steps_not_run
    # A failing always step changes nothing: the next always step runs, exit code stays.
    ctx = FakeContext(failing(("enable", "localhost")))
    result, _ = run(make(tmp_path, ALWAYS), ctx)
    assert ctx.executed[-1] == ("report", "localhost")
    assert result.exit_code == 0 and result.halted is None
    assert statuses(result)[("enable", "localhost")] == "failed"


def test_the_first_ctrl_c_still_runs_always_steps_and_the_second_kills_them(tmp_path):
    restarting, enabling = threading.Event(), threading.Event()
    finish_restart, killed = threading.Event(), threading.Event()

    def script(c: Command) -> Outcome:
        if c.step == "restart":
            restarting.set()
            finish_restart.wait(HANG)
        if c.step == "enable":
            enabling.set()
            killed.wait(HANG)  # until the second Ctrl-C kills it
            return Outcome(rc=None, killed=True)
        return Outcome(rc=0)

    class Killable(FakeContext):
        def kill_all(self) -> None:
            super().kill_all()
            killed.set()

    notes: list[str] = []
    ctx = Killable(script)
    runner = Runner(make(tmp_path, ALWAYS), ctx, run_id="r", forks=2, notify=notes.append)

    def operator() -> None:
        restarting.wait(HANG)
        runner.interrupt()  # the first Ctrl-C: halt; the always steps are still to come
        deadline = time.monotonic() + HANG
        while not runner.result.halted and time.monotonic() < deadline:
            time.sleep(0.01)
        finish_restart.set()
        enabling.wait(HANG)
        runner.interrupt()  # the second: kill the always step in flight, start no other

    threading.Thread(target=operator, daemon=True).start()
    result = run_bounded(runner)
    st = statuses(result)
    assert st[("restart", "es1")] == "ok"  # in flight at the first Ctrl-C: finished
    assert st[("restart", "es2")] == "cancelled" and st[("check", "es1")] == "cancelled"
    assert st[("enable", "localhost")] == "failed"  # killed by the second Ctrl-C
    assert st[("report", "localhost")] == "cancelled"  # never started
    assert ("report", "localhost") not in ctx.executed
    assert result.exit_code == 130 and ctx.killed == 1
    assert "then running the always steps" in notes[0]
    assert "no always step starts" in notes[1]


def test_an_always_step_that_fails_does_not_halt_the_always_steps_after_a_halt(tmp_path):
    ctx = FakeContext(failing(("restart", "es1"), ("enable", "localhost")))
    result, _ = run(make(tmp_path, ALWAYS), ctx)
    assert ctx.executed[-1] == ("report", "localhost")
    assert result.exit_code == 1 and result.halted == "step 'restart' failed on es1"


# -- resume -------------------------------------------------------------------------------------


def test_resume_of_a_halted_run_runs_the_rest_then_the_always_steps_again(tmp_path):
    plan = make(tmp_path, ALWAYS)
    done = frozenset(
        {("disable", "es1"), ("restart", "es1"), ("enable", "localhost"), ("report", "localhost")}
    )
    ctx = FakeContext()
    result, _ = run(plan, ctx, resume=Resume("run-0", done))
    assert ("restart", "es1") not in ctx.executed and ("restart", "es2") in ctx.executed
    assert ctx.executed[-2:] == [("enable", "localhost"), ("report", "localhost")]
    assert result.exit_code == 0


def test_resume_into_rescue_keeps_a_rescued_host_rescued(tmp_path):
    """The earlier run rescued web2 in batch 1, then died in batch 2 (web3 failed and
    was being rescued). The resumed run does not patch web2 again nor rescue it again;
    it retries web3 (whose failure no rescue handled), rescues it anew when it fails
    again, and runs the always steps of every batch something ran in."""
    plan = web(tmp_path, extra=RESCUE)
    ok = {("drain", h) for h in ("web1", "web2", "web3", "web4")}
    ok |= {("patch", "web1"), ("add", "web1"), ("note", "web2"), ("patch", "web4")}
    ok |= {("log", "web1"), ("log", "web2"), ("note", "web3")}
    resume = Resume("run-0", frozenset(ok), rescued=frozenset({("patch", "web2")}))
    ctx = FakeContext(failing(("patch", "web3")))
    result, _ = run(plan, ctx, forks=1, resume=resume)
    st = statuses(result)
    ran = set(ctx.executed)
    # Batch 1: nothing runs again; web2 stays rescued, its rescue and the rest are not run.
    assert st[("patch", "web2")] == "rescued" and ("patch", "web2") not in ran
    assert st[("add", "web2")] == "cancelled" and st[("note", "web2")] == "skipped"
    assert ("log", "web1") not in ran and ("log", "web2") not in ran  # nothing else ran
    # Batch 2: web3 retried, failed again, rescued again (rescue steps are never "done").
    assert ("patch", "web3") in ran and st[("patch", "web3")] == "rescued"
    assert result_of(result, "note", "web3").attempts == 1
    assert ("log", "web3") in ran and ("log", "web4") in ran  # something ran in batch 2
    assert result.exit_code == 0


def test_resume_restores_registered_values_before_rescue_reads_them(tmp_path):
    plan = make(
        tmp_path,
        """
        name: r
        hosts: {g: [h1]}
        steps:
          - {name: version, hosts: g, run: cat version, register: old}
          - name: grp
            hosts: g
            steps:
              - {name: upgrade, run: upgrade}
            rescue:
              - {name: restore, run: "restore {{ old.stdout }}"}
        """,
    )
    registered = (
        Registered(
            run_id="run-0",
            step="version",
            name="old",
            hosts=["h1"],
            value={"status": "ok", "rc": 0, "stdout": "1.2", "stderr": ""},
        ),
    )
    ctx = FakeContext(
        lambda c: Outcome(rc=1) if c.step == "upgrade" else Outcome(rc=0, stdout=c.cmd.encode())
    )
    result, _ = run(plan, ctx, resume=Resume("run-0", frozenset({("version", "h1")}), registered))
    assert result_of(result, "restore", "h1").stdout == "restore 1.2"
    assert statuses(result)[("upgrade", "h1")] == "rescued"


# -- unreachable hosts ---------------------------------------------------------------------------


class Flaky(FakeContext):
    """Hosts in ``down`` refuse every connection and command until taken out of it."""

    def __init__(self, down: set[str]) -> None:
        super().__init__()
        self.down = down
        self.reconnects: list[str] = []

    def execute(self, command: Command, on_output: object = None) -> Outcome:
        with self.lock:
            self.executed.append(command.key)
        if command.host.name in self.down:
            raise ConnectError(command.host.name, "connection refused")
        return Outcome(rc=0)

    def reconnect(self, host) -> None:
        self.reconnects.append(host.name)
        if host.name in self.down:
            self.down.discard(host.name)  # it comes back at the first poll after
            raise ConnectError(host.name, "connection refused")


UNREACHABLE = """
name: u
hosts: {g: [h1, h2]}
defaults: {on_failure: continue}
steps:
  - {name: one, hosts: g, run: one}
  - {name: two, hosts: g, run: two}
  - {name: lb, hosts: g, delegate_to: controller, run: "lb {{ host.name }}"}
  - name: back
    hosts: g
    wait_for: {connection: up, timeout: 30, delay: 0.01}
  - {name: three, hosts: g, run: three}
"""


def test_an_unreachable_host_stays_out_until_a_wait_for_connection_brings_it_back(tmp_path):
    ctx = Flaky({"h2"})
    result, _ = run(make(tmp_path, UNREACHABLE), ctx, forks=2)
    st = statuses(result)
    assert st[("one", "h2")] == "unreachable"
    # Out of the later steps: not tried again, and not counted again.
    assert st[("two", "h2")] == "cancelled" and ("two", "h2") not in ctx.executed
    assert "h2 unreachable since step 'one'" in result_of(result, "two", "h2").error
    assert st[("lb", "h2")] == "cancelled"  # a delegated step is for the host: out too
    # The wait polls until the host accepts a new session, and brings it back.
    assert st[("back", "h2")] == "ok" and ctx.reconnects.count("h2") == 2
    assert st[("three", "h2")] == "ok" and ("three", "h2") in ctx.executed
    assert result.counts()["unreachable"] == 1


def test_a_wait_that_times_out_says_what_it_saw_last(tmp_path):
    class Down(Flaky):
        def reconnect(self, host) -> None:
            self.reconnects.append(host.name)
            raise ConnectError(host.name, "connection refused by 127.0.0.1:22")

    text = UNREACHABLE.replace("timeout: 30, delay: 0.01", "timeout: 0.2, delay: 0.05")
    result, _ = run(make(tmp_path, text), Down({"h2"}), forks=2)
    back = result_of(result, "back", "h2")
    assert back.status.value == "timed_out"
    assert back.error == (
        "connection not up after 0.2s (last seen: connection refused by 127.0.0.1:22)"
    )
    assert statuses(result)[("three", "h2")] == "cancelled"  # still out


def test_rescue_runs_delegated_steps_for_an_unreachable_host(tmp_path):
    ctx = Flaky({"web2"})
    result, _ = run(web(tmp_path, extra=RESCUE), ctx, forks=2)
    st = statuses(result)
    assert st[("patch", "web2")] == "rescued"  # its rescue runs on the controller
    assert st[("log", "web2")] == "cancelled"  # its always step runs on it: held out
    assert "web2 unreachable since step 'patch'" in result_of(result, "log", "web2").error
    assert result.exit_code == 0


def test_a_once_per_batch_step_does_not_run_when_every_host_of_the_batch_dropped_out(tmp_path):
    text = """
name: es
hosts: {es: [es1, es2]}
steps:
  - name: nodes
    hosts: es
    serial: 1
    max_failures: 1
    steps:
      - {name: start, run: start}
      - {name: enable, local: true, run: enable allocation}
"""
    ctx = FakeContext(failing(("start", "es1")))
    result, _ = run(make(tmp_path, text), ctx)
    assert ctx.executed == [("start", "es1"), ("start", "es2"), ("enable", "localhost")]
    first = [r for r in result.results if r.step == "enable"][0]
    assert first.status.value == "cancelled"
    assert first.error == "every host it runs for dropped out of batch 1"


def test_a_delegate_out_of_reach_fails_the_targets_it_would_run_for(tmp_path):
    """A drained host must not be left out of the pool silently: when the balancer host
    is unreachable, "add back" is a failure of each web host, not a cancellation."""
    ctx = Flaky({"lb1"})
    result, _ = run(web(tmp_path, delegate="lb1", max_failures=4), ctx, forks=2)
    st = statuses(result)
    assert st[("drain", "web1")] == "unreachable"  # tried: it went out of reach here
    assert ctx.executed.count(("drain", "lb1")) == 2  # batch 1's two drains, then held
    web3 = result_of(result, "drain", "web3")
    assert web3.status.value == "unreachable"
    assert web3.error.startswith("delegate lb1 unreachable since step 'drain'")
    assert result.exit_code == 0 and result.counts()["unreachable"] == 4


def test_the_recap_lists_a_rescued_host_with_a_rescued_column(tmp_path):
    import io

    from runbook.cli.recap import recap

    result, _ = run(web(tmp_path, extra=RESCUE), FakeContext(failing(("patch", "web2"))))
    out = io.StringIO()
    recap(result, None, out)
    lines = out.getvalue().splitlines()
    assert lines[2] == (
        "| host | ok | failed | timed_out | unreachable | skipped | cancelled | rescued |"
    )
    assert lines[3].startswith("| web2 |") and lines[3].endswith("|         1 |       1 |")
    # Without a rescue, no rescued column.
    result, _ = run(web(tmp_path), FakeContext(failing(("patch", "web2"))))
    out = io.StringIO()
    recap(result, None, out)
    assert "rescued" not in out.getvalue()
