"""Step groups through the runner: batch by batch, drop-out, policy between batches,
register and deferred rendering at run time, resume inside a batch (SPEC §5, §8).

Plans come from real runbooks; commands run on the scripted ``FakeContext`` of
``test_runner`` (it records what ran, in order).
"""

from __future__ import annotations

from pathlib import Path

from runbook.model.command import Command, Outcome
from runbook.model.events import Registered
from runbook.run.runner import Resume
from tests.run.test_runner import FakeContext, make, run, statuses

BROKERS = """
name: rolling
hosts:
  brokers: [b1, b2, b3, b4]
steps:
  - name: restart
    hosts: brokers
    serial: 2
    max_failures: {max_failures}
    on_failure: {on_failure}
    steps:
      - {{name: stop, run: stop}}
      - {{name: start, run: start}}
      - {{name: wait, run: wait}}
  - {{name: after, hosts: brokers, run: after}}
"""


def brokers(tmp_path: Path, max_failures: int = 0, on_failure: str = "halt"):
    return make(tmp_path, BROKERS.format(max_failures=max_failures, on_failure=on_failure))


def failing(step: str, host: str):
    def script(c: Command) -> Outcome:
        return Outcome(rc=1) if (c.step, c.host.name) == (step, host) else Outcome(rc=0)

    return script


def test_every_inner_step_runs_on_a_batch_before_the_next_batch_starts(tmp_path):
    ctx = FakeContext()
    result, _ = run(brokers(tmp_path), ctx, forks=4)
    assert result.exit_code == 0
    order = [(step, host) for step, host in ctx.executed if step != "after"]
    # Within a batch the hosts run in parallel: compare (step, batch) order only.
    batch_of = {"b1": 1, "b2": 1, "b3": 2, "b4": 2}
    phases = [(batch_of[h], s) for s, h in order]
    assert phases == sorted(phases, key=lambda p: (p[0], ["stop", "start", "wait"].index(p[1])))
    assert sorted(order) == sorted((s, h) for s in ("stop", "start", "wait") for h in batch_of)


def test_a_host_that_fails_drops_out_of_the_rest_of_its_batch_and_the_batch_finishes(tmp_path):
    ctx = FakeContext(failing("start", "b1"))
    result, _ = run(brokers(tmp_path), ctx, forks=4)
    st = statuses(result)
    assert st[("start", "b1")] == "failed"
    assert st[("wait", "b1")] == "cancelled"  # dropped out of batch 1
    assert st[("wait", "b2")] == "ok"  # the survivor finished the batch
    # Past max_failures (0): no new batch, the run halts, later steps never run.
    assert {st[(s, h)] for s in ("stop", "start", "wait") for h in ("b3", "b4")} == {"cancelled"}
    assert st[("after", "b1")] == "cancelled"
    assert result.exit_code == 1 and "group 'restart' failed on b1" in result.halted
    dropped = next(r for r in result.results if (r.step, r.host) == ("wait", "b1"))
    assert "dropped out of batch 1: failed 'start'" in dropped.error


def test_failures_within_max_failures_let_the_next_batch_start(tmp_path):
    ctx = FakeContext(failing("stop", "b3"))
    result, _ = run(brokers(tmp_path, max_failures=1), ctx, forks=4)
    st = statuses(result)
    assert st[("stop", "b3")] == "failed" and st[("start", "b3")] == "cancelled"
    assert st[("wait", "b4")] == "ok" and st[("after", "b1")] == "ok"
    assert result.exit_code == 0


def test_continue_goes_on_to_the_next_batch_after_the_limit(tmp_path):
    ctx = FakeContext(failing("stop", "b1"))
    result, _ = run(brokers(tmp_path, on_failure="continue"), ctx, forks=4)
    st = statuses(result)
    assert st[("stop", "b1")] == "failed" and st[("wait", "b3")] == "ok"
    assert result.exit_code == 0


def test_confirm_is_asked_before_each_batch(tmp_path):
    plan = make(
        tmp_path,
        """
        name: c
        hosts: {g: [h1, h2, h3]}
        steps:
          - name: grp
            hosts: g
            serial: 1
            confirm: next batch?
            steps:
              - {name: one, run: x}
        """,
    )
    asked: list[str] = []

    def confirm(name: str, message: str | None) -> bool:
        asked.append(name)
        return len(asked) < 3  # yes, yes, no

    result, _ = run(plan, FakeContext(), confirm=confirm)
    assert asked == ["grp", "grp", "grp"]
    assert statuses(result) == {
        ("one", "h1"): "ok",
        ("one", "h2"): "ok",
        ("one", "h3"): "cancelled",
    }
    assert result.exit_code == 1


REGISTER = """
name: r
hosts: {db: [d1, d2, d3]}
steps:
  - {name: role, hosts: db, run: role, register: role}
  - name: act
    hosts: db
    when: role.stdout == "primary"
    run: "act on {{ host.name }} ({{ role.stdout }}, rc {{ role.rc }})"
  - name: report
    hosts: db
    run_once: true
    run: "{% for h in groups['db'] if hostvars[h].role.stdout == 'primary' %}{{ h }}{% endfor %}"
"""


def roles(c: Command) -> Outcome:
    if c.step == "role":
        return Outcome(rc=0, stdout=b"primary\n" if c.host.name == "d2" else b"replica\n")
    return Outcome(rc=0, stdout=c.cmd.encode())


def test_registered_values_render_deferred_commands_just_before_they_run(tmp_path):
    ctx = FakeContext(roles)
    result, rec = run(make(tmp_path, REGISTER), ctx, forks=3)
    st = statuses(result)
    assert st[("act", "d1")] == "skipped" and st[("act", "d3")] == "skipped"
    act = next(r for r in result.results if (r.step, r.host) == ("act", "d2"))
    assert act.stdout == "act on d2 (primary, rc 0)"
    report = next(r for r in result.results if r.step == "report")
    assert report.stdout == "d2"
    registered = [e for e in rec.events if isinstance(e, Registered)]
    assert {(e.hosts[0], e.value["stdout"]) for e in registered} == {
        ("d1", "replica"),
        ("d2", "primary"),
        ("d3", "replica"),
    }


def test_a_render_error_at_run_time_fails_that_command_with_file_and_line(tmp_path):
    plan = make(
        tmp_path,
        """
        name: r
        hosts: {db: [d1]}
        steps:
          - {name: role, hosts: db, run: role, register: role}
          - {name: act, hosts: db, run: "act {{ role.stdout.split()[3] }}"}
          - {name: later, hosts: db, run: later}
        """,
    )
    result, _ = run(plan, FakeContext(roles), forks=1)
    act = next(r for r in result.results if r.step == "act")
    assert act.status.value == "failed"
    assert "rb.yml:5:" in act.error  # the run template's line, as at plan time
    assert result.exit_code == 1  # a failure, never exit 2 after something ran


def test_resume_restores_registered_values_so_the_same_commands_render(tmp_path):
    plan = make(tmp_path, REGISTER)
    done = frozenset(("role", h) for h in ("d1", "d2", "d3"))
    registered = tuple(
        Registered(
            run_id="run-0",
            step="role",
            name="role",
            hosts=[h],
            value={
                "status": "ok",
                "rc": 0,
                "stdout": "primary" if h == "d3" else "replica",
                "stderr": "",
            },
        )
        for h in ("d1", "d2", "d3")
    )
    ctx = FakeContext(roles)
    result, rec = run(plan, ctx, forks=3, resume=Resume("run-0", done, registered))
    assert ("role", "d1") not in ctx.executed  # done in the earlier run
    act = next(r for r in result.results if r.step == "act" and r.status.value == "ok")
    assert act.host == "d3" and act.stdout == "act on d3 (primary, rc 0)"
    # The resumed run journals again what it restored.
    assert len([e for e in rec.events if isinstance(e, Registered)]) == 3


def test_resume_inside_a_batch_is_host_precise(tmp_path):
    plan = brokers(tmp_path)
    done = frozenset({("stop", "b1"), ("stop", "b2"), ("start", "b1")})
    ctx = FakeContext()
    result, _ = run(plan, ctx, forks=4, resume=Resume("run-0", done))
    ran = set(ctx.executed)
    assert ("stop", "b1") not in ran and ("start", "b1") not in ran
    assert ("start", "b2") in ran and ("wait", "b1") in ran
    assert statuses(result)[("start", "b1")] == "ok"
    assert result.exit_code == 0
