"""``runbook diff`` over set, assert and loop steps (SPEC §9, §11): what they compute,
check or repeat is compared like a command — per host, and per item for a loop."""

from __future__ import annotations

from runbook.diff.compare import ADDED, CHANGED, REMOVED, diff_plans
from tests.diff.test_diff import diff, only_step, plan, round_trip

LOOP = """
- name: create
  hosts: db
  loop: [app, billing]
  run: createdb {{ item }}
"""


def test_a_loop_compares_item_by_item(tmp_path):
    d = diff(tmp_path, LOOP, LOOP.replace("[app, billing]", "[app, billing, audit]"))
    step = only_step(d)
    [added] = step.commands
    assert added.change == ADDED and added.hosts == ("db1 item 3",)
    assert added.new.cmd == "createdb audit" and added.new.loop == {"item": "audit", "var": "item"}
    d = diff(tmp_path, LOOP, LOOP.replace("[app, billing]", "[app, ledger]"))
    [changed] = only_step(d).commands
    assert changed.change == CHANGED and changed.hosts == ("db1 item 2",)
    assert [(c.name, c.old, c.new) for c in changed.details][0] == (
        "cmd", "createdb billing", "createdb ledger"
    )  # fmt: skip


def test_a_set_and_an_assert_compare_as_what_they_compute_and_check(tmp_path):
    old = """
    - {name: choose, hosts: db, set: {winner: "{{ groups.web | first }}"}}
    - {name: check, hosts: db, assert: {that: "winner != ''", message: "no winner"}}
    """
    new = old.replace("| first", "| last").replace("no winner", "nobody won")
    d = diff(tmp_path, old, new)
    choose, check = d.steps
    [c] = choose.commands
    assert (c.old.cmd, c.new.cmd) == ('set winner = "web01"', 'set winner = "web04"')
    [a] = check.commands
    details = {x.name: (x.old, x.new) for x in a.details}
    assert "cmd" not in details  # the summary is the same: the check's fields say more
    # The summary does not show the message: the check's own fields say what changed.
    assert details["controlled"][0]["assert"]["message"] == "no winner"
    assert details["controlled"][1]["assert"]["message"] == "nobody won"
    removed = diff(tmp_path, old, "- {name: check, hosts: db, run: 'true'}")
    assert {s.name: s.status for s in removed.steps} == {"choose": REMOVED, "check": CHANGED}


STEPS = """
- {name: role, hosts: db, run: role, register: role}
- {name: choose, hosts: db, set: {w: "{{ role.stdout }}", n: "{{ groups.web | length }}"}}
- {name: check, hosts: db, assert: {that: "n == 4"}}
- {name: each, hosts: db, loop: "{{ role.stdout_lines }}", run: "x {{ item }}"}
"""


def test_a_saved_plan_with_loops_sets_and_asserts_is_no_difference(tmp_path):
    p = plan(tmp_path, STEPS + LOOP)
    assert not diff_plans(p, round_trip(p)).changed


def test_the_diff_text_shows_sets_and_asserts_without_a_shell_prompt(tmp_path):
    from runbook.diff.views import render

    d = diff(tmp_path, "- {name: s, hosts: db, set: {w: 1}}", "- {name: s, hosts: db, set: {w: 2}}")
    text = render(d, "text")
    assert "- set w = 1\n" in text and "+ set w = 2\n" in text and "$ set" not in text
