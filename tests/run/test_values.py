"""Registered values have one meaning everywhere (SPEC §11), through the runner.

One stdout (trailing newlines removed) for ``until``, ``when``, templates and registers;
a register of a host that did not run the step is an error to read, except its
``status`` and through ``default()``; ``hostvars[H].NAME is defined`` is false while H
has no value. Commands run on the scripted ``FakeContext`` of ``test_runner``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from runbook.model.command import Command, Outcome
from runbook.model.events import Registered
from runbook.run.runner import Resume
from tests.run.test_runner import FakeContext, make, run, statuses


def printing(outputs: dict[str, str]) -> Callable[[Command], Outcome]:
    """Each step prints ``outputs[step]`` (with its newline, as commands do); any other
    step prints its rendered command."""

    def script(c: Command) -> Outcome:
        return Outcome(rc=0, stdout=(outputs.get(c.step, c.cmd) + "\n").encode())

    return script


def result_of(result, step: str, host: str):
    return next(r for r in result.results if (r.step, r.host) == (step, host))


UNTIL = """
name: until
hosts: {g: [h1]}
steps:
  - {name: first, hosts: g, run: boot-id, register: first}
  - name: same
    hosts: g
    run: boot-id
    until: stdout == first.stdout
  - name: changed
    hosts: g
    run: boot-id
    until: stdout != first.stdout
    on_failure: continue
  - name: lines
    hosts: g
    run: boot-id
    until: stdout_lines == ['b1'] and stdout_lines == first.stdout_lines
"""


def test_until_and_a_register_agree_on_stdout(tmp_path):
    """Regression: ``until`` saw the trailing newline the register strips, so
    ``stdout == first.stdout`` never held and ``stdout != boot.stdout`` held at once."""
    plan = make(tmp_path, UNTIL)
    same = dict.fromkeys(["first", "same", "changed", "lines"], "b1")
    result, _ = run(plan, FakeContext(printing(same)))
    st = statuses(result)
    assert st[("same", "h1")] == "ok"
    assert st[("lines", "h1")] == "ok"
    # The same boot id printed again: the wait for a new one has not finished.
    assert st[("changed", "h1")] == "failed"
    assert result_of(result, "changed", "h1").error == "until not met: stdout != first.stdout"


NOT_RUN = """
name: skipped
hosts: {db: [d1, d2]}
steps:
  - name: Find the LSN
    hosts: db
    when: host.name == 'd1'
    run: lsn
    register: lsn
  - name: status
    hosts: db
    run: "echo {{ lsn.status }}"
  - name: default
    hosts: db
    run: "echo lsn={{ lsn.stdout | default('none') }} defined={{ lsn.stdout is defined }}"
  - name: stdout
    hosts: db
    on_failure: continue
    run: "echo lsn={{ lsn.stdout }}"
  - name: rc
    hosts: db
    on_failure: continue
    run: "echo rc={{ hostvars['d2'].lsn.rc }}"
"""


def test_a_skipped_register_is_readable_by_status_and_default_only(tmp_path):
    plan = make(tmp_path, NOT_RUN)
    result, _ = run(plan, FakeContext(printing({"Find the LSN": "0/3000060"})))
    assert result_of(result, "status", "d2").stdout == "echo skipped\n"
    assert result_of(result, "status", "d1").stdout == "echo ok\n"
    assert result_of(result, "default", "d1").stdout == "echo lsn=0/3000060 defined=True\n"
    assert result_of(result, "default", "d2").stdout == "echo lsn=none defined=False\n"
    # lsn={{ lsn.stdout }} rendered "lsn=" silently; now the command fails, naming the
    # host and the step that skipped it.
    assert result_of(result, "stdout", "d1").stdout == "echo lsn=0/3000060\n"
    bad = result_of(result, "stdout", "d2")
    assert bad.status.value == "failed" and bad.attempts == 0
    assert "host 'd2' has no 'stdout': step 'Find the LSN' was skipped there" in bad.error
    assert "when: host.name == 'd1'" in bad.error and "rb.yml:18:" in bad.error
    rc = result_of(result, "rc", "d1")
    assert rc.status.value == "failed" and "host 'd2' has no 'rc'" in rc.error


HOSTVARS = """
name: batches
hosts: {g: [h1, h2, h3]}
steps:
  - name: rolling
    hosts: g
    serial: 1
    steps:
      - {name: mark, run: mark, register: mark}
      - name: look
        run: "echo {{ hostvars['h3'].mark is defined }} {{ hostvars['h1'].mark is defined }}"
  - name: unknown
    hosts: g
    run: "echo {{ hostvars['nohost'] is defined }}"
"""


def test_hostvars_of_a_host_with_no_value_yet_is_not_defined(tmp_path):
    plan = make(tmp_path, HOSTVARS)
    result, _ = run(plan, FakeContext(printing({})))
    looks = {r.host: r.stdout for r in result.results if r.step == "look"}
    # h3 is in the last batch: it has no mark while h1 and h2 run.
    assert looks == {"h1": "echo False True\n", "h2": "echo False True\n", "h3": "echo True True\n"}
    assert {r.stdout for r in result.results if r.step == "unknown"} == {"echo False\n"}


GROUP_STATUS = """
name: group status
hosts: {g: [h1, h2]}
steps:
  - name: group
    hosts: g
    serial: 1
    max_failures: 1
    steps:
      - {name: breaks, run: breaks}
      - {name: fine, run: fine}
"""


def test_an_inner_step_reports_its_own_status_not_its_groups(tmp_path):
    def script(c: Command) -> Outcome:
        return Outcome(rc=1 if (c.step, c.host.name) == ("breaks", "h1") else 0)

    result, rec = run(make(tmp_path, GROUP_STATUS), FakeContext(script))
    assert result.exit_code == 0
    finished = [(e["step"], e.get("batch"), e["status"]) for e in rec.of("step_finished")]
    # Batch 2 (h2) failed nowhere: its steps said "tolerated: 1 ok", the group's count.
    assert finished == [
        ("breaks", 1, "tolerated"),
        ("fine", 1, "cancelled"),  # h1 dropped out of the rest of its batch
        ("breaks", 2, "ok"),
        ("fine", 2, "ok"),
        ("group", None, "tolerated"),
    ]


# -- loops ------------------------------------------------------------------------------

LOOP = """
name: loop
hosts: {db: [d1, d2]}
steps:
  - name: create
    hosts: db
    loop: [app, billing, audit]
    run: createdb {{ item }}
    register: created
    on_failure: continue
  - name: report
    hosts: db
    run: >-
      echo {{ created.status }} {{ created.results | map(attribute='status') | join(',') }}
      {{ created.results | map(attribute='item') | join(',') }}
"""


def fail_on(step: str, host: str, needle: str) -> Callable[[Command], Outcome]:
    def script(c: Command) -> Outcome:
        if (c.step, c.host.name) == (step, host) and needle in c.cmd:
            return Outcome(rc=3, stderr=b"no space\n")
        return Outcome(rc=0, stdout=(c.cmd + "\n").encode())

    return script


def test_loop_items_run_in_order_and_the_first_failure_skips_the_rest(tmp_path):
    ctx = FakeContext(fail_on("create", "d2", "billing"))
    result, rec = run(make(tmp_path, LOOP), ctx, forks=4)
    ran = [(s, h) for s, h in ctx.executed if s == "create"]
    assert sorted(ran) == sorted([("create", "d1")] * 3 + [("create", "d2")] * 2)
    items = [(r.host, r.item, r.status.value) for r in result.results if r.step == "create"]
    assert sorted(items) == [
        ("d1", 0, "ok"), ("d1", 1, "ok"), ("d1", 2, "ok"),
        ("d2", 0, "ok"), ("d2", 1, "failed"), ("d2", 2, "skipped"),
    ]  # fmt: skip
    skipped = next(r for r in result.results if (r.host, r.item) == ("d2", 2))
    assert skipped.error == "item 2 failed"
    # Each host's items in order: an item starts only after the one before it ended.
    order = {
        h: [r.item for r in result.results if r.step == "create" and r.host == h]
        for h in ("d1", "d2")
    }
    assert order == {"d1": [0, 1, 2], "d2": [0, 1, 2]}
    reports = {r.host: r.stdout for r in result.results if r.step == "report"}
    assert reports == {
        "d1": "echo ok ok,ok,ok app,billing,audit\n",
        "d2": "echo failed ok,failed,skipped app,billing,audit\n",
    }
    registered = {e["hosts"][0]: e["value"] for e in rec.of("registered")}
    assert registered["d2"]["status"] == "failed"
    assert registered["d2"]["results"][0]["stdout"] == "createdb app"
    started = [(e["host"], e["item"]) for e in rec.of("command_started") if e["step"] == "create"]
    assert ("d2", 2) not in started and ("d1", 2) in started
    # The step is on two hosts, whatever its number of items.
    (create,) = [e for e in rec.of("step_started") if e["step"] == "create"]
    assert create["hosts"] == ["d1", "d2"]
    assert result.exit_code == 0  # on_failure: continue


def test_a_loop_over_a_registered_list_is_expanded_just_before_it_runs(tmp_path):
    plan = make(
        tmp_path,
        """
        name: r
        hosts: {db: [d1, d2]}
        steps:
          - {name: list, hosts: db, run: list, register: listed}
          - name: each
            hosts: db
            loop: "{{ listed.stdout_lines }}"
            run: "vacuum {{ item }}"
          - name: not a list
            hosts: db
            loop: "{{ listed.rc }}"
            run: "never {{ item }}"
        """,
    )
    outputs = {"d1": "app\nbilling\n", "d2": ""}

    def script(c: Command) -> Outcome:
        if c.step == "list":
            return Outcome(rc=0, stdout=outputs[c.host.name].encode())
        return Outcome(rc=0, stdout=(c.cmd + "\n").encode())

    ctx = FakeContext(script)
    result, _ = run(plan, ctx)
    each = sorted((r.host, r.item, r.stdout) for r in result.results if r.step == "each")
    assert each == [("d1", 0, "vacuum app\n"), ("d1", 1, "vacuum billing\n"), ("d2", None, "")]
    empty = next(r for r in result.results if (r.step, r.host) == ("each", "d2"))
    assert empty.status.value == "skipped" and empty.error == "loop: no items"
    bad = [r for r in result.results if r.step == "not a list"]
    assert {r.status.value for r in bad} == {"failed"}
    assert "loop: expected a list, got int" in bad[0].error and "rb.yml:11:" in bad[0].error
    assert not [k for k in ctx.executed if k[0] == "not a list"]


# -- set and assert ----------------------------------------------------------------------

CHOOSE = """
name: choose
hosts: {db: [d1, d2, d3]}
steps:
  - {name: lsn, hosts: db, run: lsn, register: lsn}
  - name: choose
    hosts: db
    run_once: true
    set:
      winner: "{{ groups.db | map('extract', hostvars, ['lsn', 'stdout']) | max }}"
  - name: check
    hosts: db
    assert:
      that: ["lsn.stdout != winner"]
      message: "{{ host.name }} is the most advanced ({{ lsn.stdout }})"
    on_failure: continue
  - {name: after, hosts: db, run: "echo {{ winner }}"}
"""


def test_set_and_assert_are_evaluated_on_the_controller_at_run_time(tmp_path):
    lsns = {"d1": "0/30", "d2": "0/50", "d3": "0/40"}

    def script(c: Command) -> Outcome:
        if c.step == "lsn":
            return Outcome(rc=0, stdout=f"{lsns[c.host.name]}\n".encode())
        return Outcome(rc=0, stdout=(c.cmd + "\n").encode())

    ctx = FakeContext(script)
    result, rec = run(make(tmp_path, CHOOSE), ctx)
    # No command ran for the controller's steps.
    assert {s for s, _ in ctx.executed} == {"lsn", "after"}
    st = statuses(result)
    assert st[("choose", "d1")] == "ok" and ("choose", "d2") not in st  # run once
    assert (st[("check", "d1")], st[("check", "d2")], st[("check", "d3")]) == ("ok", "failed", "ok")
    check = next(r for r in result.results if (r.step, r.host) == ("check", "d2"))
    assert check.error == "d2 is the most advanced (0/50)" and check.rc is None
    assert {r.stdout for r in result.results if r.step == "after"} == {"echo 0/50\n"}
    sets = [e for e in rec.of("registered") if e.get("is_set")]
    assert [(e["name"], e["hosts"], e["value"]) for e in sets] == [
        ("winner", ["d1", "d2", "d3"], "0/50")
    ]
    assert next(r for r in result.results if r.step == "choose").stdout == 'set winner = "0/50"\n'


def test_resume_restores_set_values_and_continues_a_loop_at_its_first_item_not_ok(tmp_path):
    plan = make(
        tmp_path,
        """
        name: r
        hosts: {db: [d1]}
        steps:
          - {name: role, hosts: db, run: role, register: role}
          - {name: choose, hosts: db, set: {target: "{{ role.stdout }}-new"}}
          - name: each
            hosts: db
            loop: [a, b, c]
            run: "do {{ item }} {{ target }}"
            register: each
          - name: report
            hosts: db
            run: "echo {{ each.results | map(attribute='stdout') | join('|') }}"
        """,
    )
    done = frozenset({("role", "d1"), ("choose", "d1")})
    registered = (
        Registered(run_id="run-0", step="role", name="role", hosts=["d1"],
                   value={"status": "ok", "rc": 0, "stdout": "primary", "stderr": ""}),
        Registered(run_id="run-0", step="choose", name="target", hosts=["d1"],
                   value="primary-new", is_set=True),
        Registered(run_id="run-0", step="each", name="each", hosts=["d1"],
                   value={"status": "failed", "results": [
                       {"status": "ok", "rc": 0, "stdout": "earlier a", "stderr": "", "item": "a"},
                       {"status": "failed", "rc": 1, "stdout": "", "stderr": "", "item": "b"},
                       {"status": "skipped", "skip_reason": "item 2 failed", "item": "c"},
                   ]}),
    )  # fmt: skip
    ctx = FakeContext(printing({}))
    resume = Resume("run-0", done, registered, done_items=frozenset({("each", "d1", 0)}))
    result, _ = run(plan, ctx, resume=resume)
    assert ctx.executed == [("each", "d1"), ("each", "d1"), ("report", "d1")]
    each = [(r.item, r.status.value, r.stdout) for r in result.results if r.step == "each"]
    assert each == [(0, "ok", ""), (1, "ok", "do b primary-new\n"), (2, "ok", "do c primary-new\n")]
    report = next(r for r in result.results if r.step == "report")
    # The item ok in the earlier run keeps what it registered then.
    assert report.stdout == "echo earlier a|do b primary-new|do c primary-new\n"


def test_a_confirm_that_reads_a_register_is_rendered_when_it_is_asked(tmp_path):
    plan = make(
        tmp_path,
        """
        name: r
        hosts: {db: [d1, d2]}
        steps:
          - {name: role, hosts: db, run: role, register: role}
          - {name: promote, hosts: db, run: promote, confirm: "promote {{ role.stdout }}?"}
        """,
    )
    asked: list[tuple[str, str | None]] = []

    def confirm(name: str, message: str | None) -> bool:
        asked.append((name, message))
        return True

    run(plan, FakeContext(printing({"role": "replica"})), confirm=confirm)
    assert asked == [("promote", "promote replica?")]


SECRET_SET = """
name: secret set
hosts: {db: [d1]}
secrets: {pw: {env: PW}}
steps:
  - name: derive
    hosts: db
    set: {token: "{{ pw | upper }}-{{ host.name }}"}
  - {name: use, hosts: db, run: "login {{ token }}"}
"""


def test_a_set_computed_from_a_secret_is_shown_as_stand_ins_and_computed_again_on_resume(
    tmp_path,
):
    from runbook.inventory.build import build_inventory
    from runbook.load.loader import load_runbook
    from runbook.load.secrets import Masker
    from runbook.plan.planner import make_plan
    from runbook.run.values import RunValues

    path = tmp_path / "rb.yml"
    path.write_text(SECRET_SET.lstrip("\n"))
    rb = load_runbook(str(path))
    secrets = {"pw": "s3cret"}
    plan = make_plan(
        rb, build_inventory(rb.hosts, rb.inventory, rb.positions, rb.path), None, secrets
    )
    derive = plan.commands[0]
    assert derive.templates.secrets == ("pw",) and derive.controlled.values is None

    def values() -> RunValues:
        return RunValues(plan, secrets, Masker(secrets.values()))

    seen: list[str] = []

    def script(c: Command) -> Outcome:  # the command echoes what it got
        seen.append(c.cmd)
        return Outcome(rc=0, stdout=f"{c.cmd}\n".encode())

    result, rec = run(plan, FakeContext(script), values=values(), mask=Masker(secrets.values()))
    assert seen == ["login S3CRET-d1"]  # the real value, in memory only
    journaled = json.dumps([e.to_dict() for e in rec.events])
    assert "S3CRET" not in journaled and "s3cret" not in journaled
    assert rec.of("command_started")[0]["cmd"] == "login ********-d1"
    assert result.results[-1].stdout == "login ********\n"  # its output masked as well
    [registered] = rec.of("registered")
    assert registered["value"] == "********-d1"  # the stand-in, upper-cased
    # Resumed after "use" failed: the set is computed again, never taken from the journal.
    seen.clear()
    resume = Resume(
        "run-0", frozenset({("derive", "d1")}), (Registered(**registered_args(registered)),)
    )
    run(plan, FakeContext(script), values=values(), resume=resume)
    assert seen == ["login S3CRET-d1"]


def registered_args(event: dict) -> dict:
    return {k: event[k] for k in ("run_id", "step", "name", "hosts", "value", "is_set")}
