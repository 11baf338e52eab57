"""Planning values, checks and loops (SPEC §11): ``set``, ``assert``, ``loop``, templated
settings, and the input errors they bring — through the Python API (loader → inventory
→ planner), as ``runbook plan`` does.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from runbook.errors import InputError
from tests.e2e.helpers import runbook as runbook_cli
from tests.plan.test_planner import plan_of, write


@pytest.mark.parametrize(
    "field,text,suggestion",
    [
        ("when", "when: \"{{ role.stdout }} == 'primary'\"", "role.stdout == 'primary'"),
        ("until", "until: stdout != {{ boot.stdout }}", "stdout != boot.stdout"),
    ],
)
def test_braces_inside_an_expression_say_so(tmp_path, field, text, suggestion):
    path = write(
        tmp_path,
        f"""
        name: braces
        hosts: {{db: [d1]}}
        steps:
          - {{name: boot, hosts: db, run: boot-id, register: boot}}
          - {{name: role, hosts: db, run: role, register: role}}
          - name: act
            hosts: db
            run: act
            {text}
        """,
    )
    with pytest.raises(InputError) as info:
        plan_of(path)
    message = str(info.value)
    assert "an expression is Jinja already: write it without {{ }}" in message
    assert repr(suggestion) in message
    assert "expected token" not in message
    assert "rb.yml:9:" in message and "step 'act'" in message


def test_validate_plan_and_apply_count_steps_alike(tmp_path):
    """``validate`` said "2 steps" where ``plan`` said 4 for the same file."""
    path = write(
        tmp_path,
        """
        name: counted
        hosts: {g: [localhost]}
        steps:
          - {name: one, hosts: g, run: "true"}
          - name: group
            hosts: g
            steps:
              - {name: inner one, run: "true"}
              - {name: inner two, run: "true"}
        """,
    )
    validate = runbook_cli("validate", str(path))
    plan = runbook_cli("plan", str(path))
    apply = runbook_cli("apply", "--yes", str(path), cwd=tmp_path)
    assert validate.returncode == plan.returncode == apply.returncode == 0, apply.stderr
    assert "ok (4 steps, 1 host, 3 commands)" in validate.stdout
    assert "4 steps, 1 host, 3 commands" in plan.stdout
    assert "(4 steps, 1 host, 3 commands, forks 10)" in apply.stdout


# -- set ----------------------------------------------------------------------------------

DB = """
name: values
hosts:
  db:
    hosts:
      d1: {vars: {dbs: [app, billing]}}
      d2: {vars: {dbs: [app]}}
      d3: {vars: {dbs: []}}
vars: {prefix: pg}
steps:
"""


def plan_steps(tmp_path, steps: str, extra: dict | None = None):
    path = write(tmp_path, DB + textwrap.indent(textwrap.dedent(steps).lstrip("\n"), "  "))
    return plan_of(path, extra)


def step_named(plan, name: str):
    return next(s for s in plan.leaf_steps() if s.name == name)


def by_host(plan, name: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for c in step_named(plan, name).commands:
        out.setdefault(c.host.name, []).append(c)
    return out


def test_a_set_of_plan_time_values_is_computed_now_and_later_steps_render_with_it(tmp_path):
    plan = plan_steps(
        tmp_path,
        """
        - name: choose
          hosts: db
          run_once: true
          set: {winner: "{{ groups.db | sort | last }}", count: "{{ groups.db | length }}"}
        - name: per host
          hosts: db
          set: {label: "{{ prefix }}-{{ host.name }}", both: ["{{ winner }}", 1]}
        - name: use
          hosts: db
          run: echo {{ winner }} {{ count + 1 }} {{ label }} {{ both | join(',') }}
        """,
    )
    choose = step_named(plan, "choose")
    assert [c.host.name for c in choose.commands] == ["d1"]  # run once
    assert choose.commands[0].controlled.values == {"winner": "d3", "count": 3}
    assert choose.commands[0].cmd == 'set winner = "d3"\nset count = 3'
    assert choose.register_hosts == ("d1", "d2", "d3")  # every host gets the values
    use = by_host(plan, "use")
    # Not deferred: the values were known at plan time.
    assert {h: cs[0].cmd for h, cs in use.items()} == {
        h: f"echo d3 4 pg-{h} d3,1" for h in ("d1", "d2", "d3")
    }
    assert all(cs[0].templates is None for cs in use.values())


def test_a_set_that_reads_a_register_is_deferred_and_so_are_its_readers(tmp_path):
    plan = plan_steps(
        tmp_path,
        """
        - {name: lsn, hosts: db, run: lsn, register: lsn}
        - name: choose
          hosts: db
          run_once: true
          set:
            winner: "{{ groups.db | sort(attribute='x') | first if false else groups.db | max }}"
            best: "{{ groups.db | map('extract', hostvars, ['lsn', 'stdout']) | max }}"
        - {name: promote, hosts: db, run: "promote {{ winner }}", when: host.name == best}
        """,
    )
    choose = step_named(plan, "choose").commands[0]
    assert choose.controlled.values is None  # computed at run time
    assert choose.templates.registers == ("hostvars",)
    assert "set best = {{ groups.db | map('extract'" in choose.cmd
    promote = by_host(plan, "promote")["d1"][0]
    assert promote.templates.deferred and set(promote.templates.registers) == {"best", "winner"}
    text = runbook_cli("plan", str(tmp_path / "rb.yml")).stdout
    assert "(deferred: reads hostvars)" in text
    assert "(deferred: reads best, winner)" in text
    assert "when: 'd1' == best (decided at apply)" in text  # per host, what is known filled in


@pytest.mark.parametrize(
    "steps,message,line",
    [
        (
            "- {name: s, hosts: db, set: {prefix: x}}",
            "set 'prefix' has the same name as a variable",
            10,
        ),
        ("- {name: s, hosts: db, set: {x: '{{ nope }}'}}", "'nope' is undefined", 10),
        (
            "- {name: s, hosts: db, set: {x: 1}, register: r}",
            "register is not allowed on a set step",
            10,
        ),
        (
            "- {name: s, hosts: db, set: {x: 1}, timeout: 3}",
            "timeout is not allowed on a set step",
            10,
        ),
        ("- {name: a, hosts: db, assert: {message: m}}", "assert: 'that' is required", 10),
        ("- {name: a, hosts: db, assert: {that: '{{ x }} == 1'}}", "write it without {{ }}", 10),
        ("- {name: a, hosts: db, assert: {that: [nope == 1]}}", "'nope' is undefined", 10),
        (
            "- {name: l, hosts: db, run: 'echo {{ item }}', loop: '{{ prefix }}'}",
            "loop: expected a list, got str 'pg'",
            10,
        ),
        ("- {name: l, hosts: db, run: 'echo', loop: 3}", "loop: expected array or a template", 10),
        (
            "- {name: l, hosts: db, copy: {src: rb.yml, dest: /x}, loop: [1]}",
            "loop is for run steps",
            10,
        ),
        ("- {name: l, hosts: db, run: echo, loop_var: x}", "loop_var names a loop's item", 10),
    ],
)
def test_bad_values_checks_and_loops_are_input_errors(tmp_path, steps, message, line):
    with pytest.raises(InputError) as info:
        plan_steps(tmp_path, steps)
    assert message in str(info.value)
    assert f"rb.yml:{line}:" in str(info.value)


# -- assert -------------------------------------------------------------------------------


def test_an_assert_over_plan_time_values_is_decided_in_the_plan(tmp_path):
    plan = plan_steps(
        tmp_path,
        """
        - name: check
          hosts: db
          assert:
            that: ["prefix == 'pg'", "dbs | length > 0"]
            message: "{{ host.name }} has no database"
        - name: default message
          hosts: db
          assert: {that: "dbs | length < 2"}
        """,
    )
    check = {h: cs[0].controlled for h, cs in by_host(plan, "check").items()}
    assert (check["d1"].held, check["d2"].held, check["d3"].held) == (True, True, False)
    assert check["d3"].failure == "d3 has no database"
    default = by_host(plan, "default message")["d1"][0].controlled
    assert default.failure == "assertion failed: dbs | length < 2"
    text = runbook_cli("plan", str(tmp_path / "rb.yml")).stdout
    assert "d[1:2]  assert prefix == 'pg'\n            assert dbs | length > 0\n" in text
    assert "d3      assert prefix == 'pg'" in text and "(does not hold: d3 has no database)" in text


# -- loop ---------------------------------------------------------------------------------


def test_a_loop_gives_one_command_per_item_in_order(tmp_path):
    plan = plan_steps(
        tmp_path,
        """
        - name: create
          hosts: db
          loop: "{{ dbs }}"
          run: createdb {{ item | quote }}
          when: item != 'billing'
        - name: literal
          hosts: [d1]
          loop: ["{{ prefix }}-a", b]
          loop_var: name
          run: echo {{ name }}
        """,
    )
    create = by_host(plan, "create")
    assert [(c.cmd, c.item.index, c.item.value, c.skip_reason) for c in create["d1"]] == [
        ("createdb app", 0, "app", None),
        ("createdb {{ item | quote }}", 1, "billing", "when: item != 'billing'"),
    ]
    assert [c.cmd for c in create["d2"]] == ["createdb app"]
    assert create["d3"][0].item is None and create["d3"][0].skip_reason == "loop: no items"
    assert [c.cmd for c in by_host(plan, "literal")["d1"]] == ["echo pg-a", "echo b"]
    text = runbook_cli("plan", str(tmp_path / "rb.yml")).stdout
    assert "    loop: 2 items as item\n" in text
    assert "    d3  (skipped: loop: no items)\n    item 1\n      d[1:2]  $ createdb app\n" in text


def test_a_loop_over_a_registered_value_is_expanded_at_run_time(tmp_path):
    plan = plan_steps(
        tmp_path,
        """
        - {name: list, hosts: db, run: psql -l, register: listed}
        - name: vacuum
          hosts: db
          loop: "{{ listed.stdout_lines }}"
          run: vacuumdb {{ prefix }} {{ item }}
        """,
    )
    vacuum = by_host(plan, "vacuum")
    assert [len(cs) for cs in vacuum.values()] == [1, 1, 1]
    c = vacuum["d1"][0]
    assert c.loop.source == "{{ listed.stdout_lines }}" and c.loop.var == "item"
    assert c.templates.registers == ("listed",) and c.templates.values == {"prefix": "pg"}
    text = runbook_cli("plan", str(tmp_path / "rb.yml")).stdout
    assert (
        "(deferred: reads listed; loop decided at apply: {{ listed.stdout_lines }} as item)" in text
    )


def test_serial_batches_hosts_with_all_their_items(tmp_path):
    plan = plan_steps(
        tmp_path,
        """
        - name: two at a time
          hosts: db
          serial: 2
          max_failures: 50%
          loop: [a, b, c]
          run: echo {{ item }}
        """,
    )
    step = step_named(plan, "two at a time")
    assert [[(c.host.name, c.item.index) for c in b] for b in step.batches] == [
        [("d1", 0), ("d1", 1), ("d1", 2), ("d2", 0), ("d2", 1), ("d2", 2)],
        [("d3", 0), ("d3", 1), ("d3", 2)],
    ]
    assert step.max_failures == 1  # 50% of 3 hosts, not of 9 commands


# -- templated settings and confirm ---------------------------------------------------------


def test_settings_may_be_templates_rendered_at_plan_time(tmp_path):
    plan = plan_steps(
        tmp_path,
        """
        - name: slow
          hosts: db
          run: work
          timeout: "{{ 10 * (dbs | length + 1) }}"
          retries: "{{ tries }}"
          delay: "{{ pause }}"
        - name: rolling
          hosts: db
          run: restart
          serial: "{{ batch }}"
          max_failures: "{{ tolerated }}%"
        """,
        extra={"tries": "2", "pause": 0.5, "batch": 2, "tolerated": 34},
    )
    specs = {c.host.name: c.spec for c in step_named(plan, "slow").commands}
    assert {h: s.timeout for h, s in specs.items()} == {"d1": 30.0, "d2": 20.0, "d3": 10.0}
    assert {(s.retries, s.delay) for s in specs.values()} == {(2, 0.5)}
    rolling = step_named(plan, "rolling")
    assert rolling.serial == 2 and len(rolling.batches) == 2
    assert rolling.max_failures == 1  # floor(34% of 3)


@pytest.mark.parametrize(
    "setting,message",
    [
        ("serial: '{{ role.rc }}'", "serial reads 'role', which is known only at apply time"),
        (
            "serial: '{{ dbs | length }}'",
            "serial: 'dbs' is undefined (serial is rendered once per step",
        ),
        (
            "timeout: '{{ prefix }}'",
            "timeout: the template rendered 'pg', which is not a valid timeout",
        ),
        (
            "retries: '{{ 5000 }}'",
            "retries: the template rendered 5000, which is not a valid retries",
        ),
        ("max_failures: '{{ -1 }}'", "max_failures: the template rendered -1"),
    ],
)
def test_a_templated_setting_that_cannot_be_known_or_is_wrong_is_exit_2(tmp_path, setting, message):
    path = write(
        tmp_path,
        DB
        + "  - {name: role, hosts: db, run: role, register: role}\n"
        + f"  - name: s\n    hosts: db\n    run: x\n    {setting}\n",
    )
    done = runbook_cli("apply", "--yes", str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "rb.yml:14:" in done.stderr and "step 's'" in done.stderr
    assert not (tmp_path / ".runbook").exists()  # nothing ran, no journal


def test_confirm_is_rendered_and_may_read_a_registered_value(tmp_path):
    plan = plan_steps(
        tmp_path,
        """
        - {name: role, hosts: db, run: role, register: role}
        - {name: plain, hosts: db, run: x, confirm: "restart {{ groups.db | length }} hosts?"}
        - {name: later, hosts: db, run: y, confirm: "promote {{ host.name }} ({{ role.stdout }})?"}
        """,
    )
    assert step_named(plan, "plain").confirm == "restart 3 hosts?"
    later = step_named(plan, "later")
    assert later.confirm == "promote {{ host.name }} ({{ role.stdout }})?"
    assert later.confirm_templates.registers == ("role",)
    assert later.confirm_templates.values["host"]["name"] == "d1"


def test_a_saved_plan_keeps_loops_sets_and_asserts(tmp_path):
    from runbook.plan.saved import plan_from_dict, plan_to_dict

    plan = plan_steps(
        tmp_path,
        """
        - {name: role, hosts: db, run: role, register: role}
        - name: s
          hosts: db
          run_once: true
          set: {w: "{{ groups.db | last }}", r: "{{ role.rc }}"}
        - {name: a, hosts: db, assert: {that: "w == 'd3'", message: "{{ role.stdout }}"}}
        - {name: l, hosts: db, loop: "{{ dbs }}", run: "echo {{ item }} {{ role.rc }}"}
        - {name: dl, hosts: db, loop: "{{ role.stdout_lines }}", run: "echo {{ item }}"}
        - {name: c, hosts: db, run: z, confirm: "{{ role.stdout }}?"}
        """,
    )
    data = json.loads(json.dumps(plan_to_dict(plan)))
    again = plan_from_dict(data, str(tmp_path / "plan.json"))
    assert plan_to_dict(again) == data
    assert again.commands == plan.commands


def test_a_groups_templated_settings_shape_its_batches_and_reach_its_inner_steps(tmp_path):
    plan = plan_steps(
        tmp_path,
        """
        - name: rolling
          hosts: db
          serial: "{{ size }}"
          max_failures: "{{ size - 1 }}"
          timeout: "{{ 5 * size }}"
          steps:
            - {name: inherits, run: a}
            - {name: own, run: b, timeout: 9}
        """,
        extra={"size": 2},
    )
    group = plan.steps[0]
    assert [b.hosts for b in group.batches] == [("d1", "d2"), ("d3",)]
    assert group.max_failures == 1 and group.spec.timeout == 10.0
    timeouts = {
        (s.name, c.host.name): c.spec.timeout for s in plan.leaf_steps() for c in s.commands
    }
    assert timeouts[("inherits", "d3")] == 10.0 and timeouts[("own", "d3")] == 9.0
