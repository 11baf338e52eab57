"""``diff_plans`` and its renderings: what a procedure change runs differently (SPEC §9).

Plans come from the real planner (``load_runbook`` → ``build_inventory`` → ``make_plan``)
on small runbooks; nothing here starts a process except the golden cases, which run
``runbook diff`` as an operator does (``tests/golden/diff.{txt,json,md}``: the reviewed
output for ``tests/data/runbooks/diff_{old,new}.yml``; regenerate with
``UPDATE_GOLDEN=1 pytest tests/test_diff.py -k golden`` and read the diff before
committing it).
"""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

from runbook.diff.compare import ADDED, CHANGED, MOVED, REMOVED, UNCHANGED, PlanDiff, diff_plans
from runbook.diff.views import diff_json, diff_markdown, diff_text, summary
from runbook.inventory.build import build_inventory
from runbook.load.loader import load_runbook, schema
from runbook.load.secrets import resolve_secrets
from runbook.model.plan import Plan, Selection
from runbook.model.spec import ExecSpec
from runbook.plan.planner import make_plan
from runbook.plan.saved import plan_from_dict, plan_to_dict
from tests.e2e.helpers import runbook as runbook_cli

TESTS = Path(__file__).resolve().parents[1]
DATA = TESTS / "data" / "runbooks"
GOLDEN = TESTS / "golden"

HOSTS = """
hosts:
  web:
    hosts:
      web01: {address: 10.0.0.1}
      web02: {address: 10.0.0.2}
      web03: {address: 10.0.0.3}
      web04: {address: 10.0.0.4}
  db:
    hosts:
      db1: {address: 10.0.1.1}
"""


def plan(tmp_path: Path, steps: str, head: str = HOSTS, name: str = "rb.yml", **env: str) -> Plan:
    """A runbook (``head`` + ``steps``) planned as ``runbook plan`` plans it."""
    text = "name: diff test\n" + textwrap.dedent(head).strip("\n") + "\nsteps:\n"
    text += textwrap.indent(textwrap.dedent(steps).strip("\n"), "  ") + "\n"
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    rb = load_runbook(str(path))
    inv = build_inventory(rb.hosts, rb.inventory, rb.positions, rb.path)
    return make_plan(rb, inv, None, resolve_secrets(rb.secrets, env), None)


def diff(tmp_path: Path, old: str, new: str, head: str = HOSTS, **env: str) -> PlanDiff:
    a = plan(tmp_path, old, head, "old.yml", **env)
    b = plan(tmp_path, new, head, "new.yml", **env)
    return diff_plans(a, b)


def only_step(d: PlanDiff):
    assert len(d.steps) == 1, [s.name for s in d.steps]
    return d.steps[0]


def settings(step) -> dict[str, tuple]:
    return {c.name: (c.old, c.new) for c in step.settings}


def round_trip(p: Plan) -> Plan:
    """The plan as ``plan --out`` saves it and ``apply PLAN.json`` reads it back."""
    return plan_from_dict(json.loads(json.dumps(plan_to_dict(p))), p.source)


# -- nothing changed ------------------------------------------------------------------------

STEPS = """
- name: restart
  hosts: web
  serial: 2
  run: systemctl restart app --id {{ host.name }}
- name: check
  hosts: all
  run: curl -fsS http://{{ host.address }}/health
"""


def test_the_same_runbook_is_no_difference(tmp_path):
    d = diff(tmp_path, STEPS, STEPS)
    assert not d.changed
    assert (d.plan, d.hosts, d.steps) == ((), (), ())
    assert summary(d).startswith("no differences")


def test_comments_and_layout_are_no_difference(tmp_path):
    """The digest differs (the bytes do); what runs does not."""
    reflowed = "# a comment\n" + STEPS.replace("hosts: web\n", "hosts: 'web'   # the web tier\n")
    d = diff(tmp_path, STEPS, reflowed)
    assert not d.changed


# -- the acceptance case: only the batch size -------------------------------------------------


def test_serial_change_is_exactly_a_batch_change(tmp_path):
    d = diff(tmp_path, STEPS, STEPS.replace("serial: 2", "serial: 3"))
    step = only_step(d)
    assert (step.name, step.status, step.moved) == ("restart", CHANGED, False)
    assert settings(step) == {
        "serial": (2, 3),
        "batches": (
            [["web01", "web02"], ["web03", "web04"]],
            [["web01", "web02", "web03"], ["web04"]],
        ),
    }
    assert step.commands == ()  # every host runs the same command, in another batch
    assert (d.plan, d.hosts) == ((), ())
    assert d.affected_hosts() == ["web01", "web02", "web03", "web04"]


def test_serial_change_that_keeps_the_batches_is_still_shown(tmp_path):
    d = diff(tmp_path, STEPS, STEPS.replace("serial: 2", 'serial: "50%"'))
    assert settings(only_step(d)) == {"serial": (2, "50%")}


# -- commands, env, hosts -----------------------------------------------------------------


def test_changed_command_groups_the_hosts_with_the_same_change(tmp_path):
    step = "- {name: s, hosts: all, run: 'echo {{ v }}'}"
    head = HOSTS + "vars: {v: 1}\n"
    new_head = head.replace("db1: {address: 10.0.1.1}", "db1: {address: 10.0.1.1, vars: {v: 2}}")
    a = plan(tmp_path, step, head, "a.yml")
    b = plan(tmp_path, step.replace("echo", "echo -n"), new_head, "b.yml")
    changed = only_step(diff_plans(a, b))
    by_hosts = {c.hosts: (c.change, c.old.cmd, c.new.cmd) for c in changed.commands}
    assert by_hosts == {
        ("web01", "web02", "web03", "web04"): (CHANGED, "echo 1", "echo -n 1"),
        ("db1",): (CHANGED, "echo 1", "echo -n 2"),
    }
    assert changed.settings == ()
    assert [c.name for c in changed.commands[0].details] == ["cmd"]
    assert "~ web[01:04]\n        - $ echo 1\n        + $ echo -n 1\n" in diff_text(
        diff_plans(a, b)
    )


def test_a_multi_line_command_shows_its_unchanged_lines_once(tmp_path):
    old = "- name: s\n  hosts: db\n  run: |\n    stop --fast\n    wait 10\n    start\n"
    text = diff_text(diff(tmp_path, old, old.replace("wait 10", "wait 30")))
    assert "        - $ stop --fast\n" not in text
    assert "          $ stop --fast\n        -   wait 10\n        +   wait 30\n" in text
    assert "            start\n" in text


def test_env_added_removed_and_changed_per_host(tmp_path):
    old = "- {name: s, hosts: web, run: env, env: {A: '1', B: 'x y', C: keep}}"
    new = "- {name: s, hosts: web, run: env, env: {A: '2', C: keep, D: \"it's\"}}"
    step = only_step(diff(tmp_path, old, new))
    (cd,) = step.commands
    assert cd.hosts == ("web01", "web02", "web03", "web04")
    assert [(c.name, c.kind, c.old, c.new) for c in cd.details] == [
        ("env.A", CHANGED, "1", "2"),
        ("env.B", REMOVED, "x y", None),
        ("env.D", ADDED, None, "it's"),
    ]
    text = diff_text(diff(tmp_path, old, new))
    assert "env B: 'x y' → (none)" in text  # shell-quoted as the plan shows env
    assert "env D: (none) → 'it'\"'\"'s'" in text


def test_hosts_added_and_removed(tmp_path):
    old = "- {name: s, hosts: 'web01:web02', run: uptime}"
    new = "- {name: s, hosts: 'web02:web03:web04', run: uptime}"
    step = only_step(diff(tmp_path, old, new))
    assert step.hosts_added == ["web03", "web04"]
    assert step.hosts_removed == ["web01"]
    assert settings(step) == {"hosts": ("web01:web02", "web02:web03:web04")}
    kinds = [(c.change, c.hosts) for c in step.commands]
    assert kinds == [(ADDED, ("web03", "web04")), (REMOVED, ("web01",))]


def test_host_connection_changes_are_grouped(tmp_path):
    steps = "- {name: s, hosts: all, run: uptime}"
    new_head = HOSTS.replace("{address: 10.0.0.", "{user: deploy, address: 10.0.0.")
    new_head = new_head.replace("web04: {user: deploy, address: 10.0.0.4}", "web04: {}")
    a = plan(tmp_path, steps, HOSTS, "a.yml")
    b = plan(tmp_path, steps, new_head, "b.yml")
    d = diff_plans(a, b)
    assert d.steps == ()
    grouped = [(h.hosts, [(c.name, c.kind, c.old, c.new) for c in h.changes]) for h in d.hosts]
    assert grouped == [
        (("web01", "web02", "web03"), [("user", ADDED, None, "deploy")]),
        (("web04",), [("address", REMOVED, "10.0.0.4", None)]),
    ]
    assert d.affected_hosts() == ["web01", "web02", "web03", "web04"]
    assert "connection changed on 4 hosts" in summary(d)


def test_skipped_by_when(tmp_path):
    old = "- {name: s, hosts: web, run: vacuumdb, when: host.name == 'web01'}"
    new = "- {name: s, hosts: web, run: vacuumdb, when: host.name != 'web04'}"
    step = only_step(diff(tmp_path, old, new))
    changes = {c.hosts: [(x.name, x.old, x.new) for x in c.details] for c in step.commands}
    assert set(changes) == {("web02", "web03"), ("web04",)}
    # web04 was skipped and still is, for the other expression; web01 runs in both.
    assert changes[("web04",)] == [
        ("skipped", "when: host.name == 'web01'", "when: host.name != 'web04'")
    ]
    assert changes[("web02", "web03")] == [
        ("skipped", "when: host.name == 'web01'", None),
    ]


# -- step settings ------------------------------------------------------------------------

# One case per step option: what it was, what it becomes, and the setting name and values
# the diff must report. Every ExecSpec field has a case (checked below): the comparison
# is generic over ExecSpec, and a new option deserves a line here.
SETTING_CASES = [
    ("timeout", "timeout: 30", "timeout: 60", (30.0, 60.0)),
    ("shell", "", "shell: /bin/sh", ("/bin/bash", "/bin/sh")),
    ("become", "", "become: true", (False, True)),
    ("become_user", "become: true", "{become: true, become_user: app}", (None, "app")),
    ("retries", "retries: 1", "retries: 4", (1, 4)),
    ("delay", "{retries: 2, delay: 1}", "{retries: 2, delay: 5}", (1.0, 5.0)),
    (
        "until",
        "{retries: 2, until: rc == 0}",
        "{retries: 2, until: rc == 1}",
        ("rc == 0", "rc == 1"),
    ),
    ("on_failure", "", "on_failure: continue", ("halt", "continue")),
    ("max_failures", "max_failures: 1", "max_failures: '50%'", (1, 2)),  # resolved: 50% of 4
    ("run_once", "", "run_once: true", (False, True)),
    ("confirm", "", "confirm: Sure?", (None, "Sure?")),
    ("tags", "tags: [a]", "tags: [a, b]", (["a"], ["a", "b"])),
    ("register", "", "register: out", (None, "out")),
]


def _with(option: str) -> str:
    if not option:
        return "- {name: s, hosts: web, run: uptime}"
    inner = option[1:-1] if option.startswith("{") else option
    return "- {name: s, hosts: web, run: uptime, " + inner + "}"


@pytest.mark.parametrize("name,old,new,values", SETTING_CASES, ids=[c[0] for c in SETTING_CASES])
def test_a_changed_setting_is_reported_alone(tmp_path, name, old, new, values):
    step = only_step(diff(tmp_path, _with(old), _with(new)))
    reported = settings(step)
    if name == "run_once":  # one command instead of four: the others are removed
        assert step.hosts_removed == ["web02", "web03", "web04"]
    else:
        assert step.commands == ()
    assert reported == {name: values}


def test_every_exec_spec_field_has_a_setting_case():
    assert {f.name for f in fields(ExecSpec)} <= {c[0] for c in SETTING_CASES}


def test_local_step_change(tmp_path):
    old = "- {name: s, hosts: db, run: uptime}"
    new = "- {name: s, local: true, run: uptime}"
    step = only_step(diff(tmp_path, old, new))
    assert settings(step)["local"] == (False, True)
    assert step.hosts_added == ["localhost"] and step.hosts_removed == ["db1"]


# -- steps added, removed, moved ------------------------------------------------------------

ORDER = """
- {name: a, hosts: db, run: echo a}
- {name: b, hosts: db, run: echo b}
- {name: c, hosts: db, run: echo c}
- {name: d, hosts: db, run: echo d}
"""


def test_steps_added_removed_and_moved(tmp_path):
    new = """
    - {name: a, hosts: db, run: echo a}
    - {name: d, hosts: db, run: echo d}
    - {name: c, hosts: db, run: echo c}
    - {name: e, hosts: db, run: echo e}
    """
    d = diff(tmp_path, ORDER, new)
    got = [(s.name, s.status, s.old_index, s.new_index, s.moved) for s in d.steps]
    # b is removed where it was (after a); c and d swapped: one move is the least.
    assert got == [
        ("b", REMOVED, "2", None, False),
        ("d", MOVED, "4", "2", True),
        ("e", ADDED, None, "4", False),
    ]
    assert d.counts() == {CHANGED: 0, ADDED: 1, REMOVED: 1, MOVED: 1}
    assert summary(d) == "1 step added, 1 removed, 1 moved; 1 host affected"


def test_a_removed_first_step_stays_first(tmp_path):
    new = ORDER.split("\n", 2)[2]  # without a
    d = diff(tmp_path, ORDER, new)
    assert [(s.name, s.status) for s in d.steps] == [("a", REMOVED)]
    assert "- a    removed (was [1])" in diff_text(d)


def test_an_added_step_shows_its_settings_and_commands(tmp_path):
    new = ORDER + "- {name: e, hosts: web, run: echo e, serial: 2, timeout: 9}\n"
    (step,) = diff(tmp_path, ORDER, new).steps
    assert step.status == ADDED
    assert settings(step) == {
        "hosts": (None, "web"),
        "serial": (None, 2),
        "timeout": (None, 9.0),
        "batches": (None, [["web01", "web02"], ["web03", "web04"]]),
    }
    assert [(c.change, c.hosts, c.new.cmd) for c in step.commands] == [
        (ADDED, ("web01", "web02", "web03", "web04"), "echo e")
    ]


def test_a_moved_step_that_also_changed(tmp_path):
    new = ORDER.replace("- {name: a, hosts: db, run: echo a}\n", "")
    new += "- {name: a, hosts: db, run: echo A}\n"
    (step,) = diff(tmp_path, ORDER, new).steps
    assert (step.name, step.status, step.moved) == ("a", CHANGED, True)
    assert (step.old_index, step.new_index) == ("1", "4")


# -- groups -------------------------------------------------------------------------------

GROUP = """
- name: roll
  hosts: web
  serial: 2
  steps:
    - {name: stop, run: stop app}
    - {name: start, run: start app}
    - {name: tell, local: true, run: echo batch done}
"""


def test_group_serial_is_a_batch_change_and_nothing_else_of_its_steps(tmp_path):
    d = diff(tmp_path, GROUP, GROUP.replace("serial: 2", "serial: 1"))
    (group,) = d.steps
    assert (group.kind, group.status) == ("group", CHANGED)
    assert settings(group) == {
        "serial": (2, 1),
        "batches": (
            [["web01", "web02"], ["web03", "web04"]],
            [["web01"], ["web02"], ["web03"], ["web04"]],
        ),
    }
    # The controller's step runs once per batch: two runs more.
    (tell,) = group.steps
    assert tell.name == "tell"
    assert tell.hosts_added == ["localhost (batch 3)", "localhost (batch 4)"]
    assert tell.settings == ()


def test_inner_step_change_inside_an_unchanged_group(tmp_path):
    new = GROUP.replace("start app", "start app --fast")
    (group,) = diff(tmp_path, GROUP, new).steps
    assert (group.name, group.status, group.settings) == ("roll", UNCHANGED, ())
    (start,) = group.steps
    assert (start.name, start.group, start.new_index) == ("start", "roll", "1.2")
    assert [c.hosts for c in start.commands] == [("web01", "web02", "web03", "web04")]
    d = diff(tmp_path, GROUP, new)
    assert d.counts()[CHANGED] == 1  # the inner step; the group itself did not change
    assert "group: inner steps changed" in diff_text(d)


def test_inner_step_added_and_a_step_moved_into_the_group(tmp_path):
    old = "- {name: pre, hosts: web, run: echo pre}\n" + GROUP
    new = GROUP.replace(
        "    - {name: start",
        "    - {name: pre, run: echo pre}\n    - {name: warm, run: warm}\n    - {name: start",
    )
    d = diff(tmp_path, old, new)
    (group,) = d.steps
    inner = {s.name: s for s in group.steps}
    assert inner["warm"].status == ADDED
    assert inner["pre"].status == CHANGED
    assert settings(inner["pre"])["group"] == (None, "roll")


def test_group_policy_is_compared_on_the_group_not_its_steps(tmp_path):
    new = GROUP.replace("serial: 2", "serial: 2\n  max_failures: 1\n  on_failure: continue")
    (group,) = diff(tmp_path, GROUP, new).steps
    assert settings(group) == {"on_failure": ("halt", "continue"), "max_failures": (0, 1)}
    assert group.steps == ()


# -- commands rendered at apply time ----------------------------------------------------------

DEFERRED = """
- {name: find, hosts: db, run: cat /role, register: role}
- {name: use, hosts: web, run: 'echo {{ role.stdout }} {{ port }}'}
"""


def test_deferred_template_change(tmp_path):
    head = HOSTS + "vars: {port: 1}\n"
    new = DEFERRED.replace("role.stdout }}", "role.stdout | trim }}")
    step = only_step(diff(tmp_path, DEFERRED, new, head))
    (cd,) = step.commands
    # The shown command is rendered but for what reads the register (SPEC §12).
    assert [(c.name, c.old, c.new) for c in cd.details] == [
        ("cmd", "echo {{ role.stdout }} 1", "echo {{ role.stdout | trim }} 1"),
        (
            "template.run",
            "echo {{ role.stdout }} {{ port }}",
            "echo {{ role.stdout | trim }} {{ port }}",
        ),
    ]
    assert cd.new.deferred == ("role",)


def test_deferred_value_change_shows_in_its_bound_values(tmp_path):
    """The template is the same; what it will render to is not (and the shown command,
    rendered but for what reads the register, says so too)."""
    a = plan(tmp_path, DEFERRED, HOSTS + "vars: {port: 1}\n", "a.yml")
    b = plan(tmp_path, DEFERRED, HOSTS + "vars: {port: 2}\n", "b.yml")
    (cd,) = only_step(diff_plans(a, b)).commands
    assert [(c.name, c.old, c.new) for c in cd.details] == [
        ("cmd", "echo {{ role.stdout }} 1", "echo {{ role.stdout }} 2"),
        ("values.port", 1, 2),
    ]
    assert "values port: 1 → 2" in diff_text(diff_plans(a, b))


SECRET_HEAD = HOSTS + "secrets:\n  pw: {env: DIFF_TEST_PW}\n"
SECRET = "- {name: login, hosts: db, run: 'login --password {{ pw }}', env: {TOKEN: '{{ pw }}'}}"


def test_a_secret_whose_value_changed_is_no_difference(tmp_path):
    a = plan(tmp_path, SECRET, SECRET_HEAD, "a.yml", DIFF_TEST_PW="old-Secret-1")
    b = plan(tmp_path, SECRET, SECRET_HEAD, "b.yml", DIFF_TEST_PW="new-Secret-2")
    d = diff_plans(a, b)
    assert not d.changed
    a2 = plan(tmp_path, SECRET.replace("login ", "login -v "), SECRET_HEAD, "c.yml",
              DIFF_TEST_PW="new-Secret-2")  # fmt: skip
    d = diff_plans(a, a2)
    shown = diff_json(d) + diff_text(d) + diff_markdown(d) + repr(d)
    assert "login -v --password ********" in shown
    assert "Secret-1" not in shown and "Secret-2" not in shown


def test_a_secret_template_change_hidden_by_the_stand_in_shows_as_template(tmp_path):
    new = SECRET.replace("password {{ pw }}", "password {{ pw | trim }}")
    new = new.replace("TOKEN: '{{ pw }}'", "TOKEN: '{{ pw | lower }}'")
    a = plan(tmp_path, SECRET, SECRET_HEAD, "a.yml", DIFF_TEST_PW="x" * 12)
    b = plan(tmp_path, new, SECRET_HEAD, "b.yml", DIFF_TEST_PW="x" * 12)
    (cd,) = only_step(diff_plans(a, b)).commands
    assert cd.old.cmd == cd.new.cmd == "login --password ********"
    assert [(c.name, c.old, c.new) for c in cd.details] == [
        ("template.run", "login --password {{ pw }}", "login --password {{ pw | trim }}"),
        ("template.step_env.TOKEN", "{{ pw }}", "{{ pw | lower }}"),
    ]


def test_secret_names_are_a_plan_change(tmp_path):
    head = SECRET_HEAD + "  other: {env: DIFF_TEST_OTHER}\n"
    a = plan(tmp_path, SECRET, SECRET_HEAD, "a.yml", DIFF_TEST_PW="p" * 8)
    b = plan(tmp_path, SECRET, head, "b.yml", DIFF_TEST_PW="p" * 8, DIFF_TEST_OTHER="q" * 8)
    d = diff_plans(a, b)
    assert [(c.name, c.old, c.new) for c in d.plan] == [("secrets", ["pw"], ["other", "pw"])]


# -- saved plans ----------------------------------------------------------------------------

ROUND_TRIP_CASES = {
    "steps": STEPS,
    "group": GROUP,
    "deferred": DEFERRED,
    "policy": "- {name: p, hosts: web, run: x, max_failures: '50%', on_failure: continue}\n"
    "- name: g\n  hosts: web\n  serial: '50%'\n  max_failures: '25%'\n  steps:\n"
    "    - {name: i, run: y, retries: 2, delay: 1, until: rc == 0}",
    "secret": SECRET,
}


@pytest.mark.parametrize("case", ROUND_TRIP_CASES)
def test_a_saved_plan_is_no_difference_from_its_runbook(tmp_path, case):
    """``diff PLAN.json RUNBOOK``: the JSON round trip itself must not look like a change."""
    head = SECRET_HEAD + "vars: {port: 1}\n"
    p = plan(tmp_path, ROUND_TRIP_CASES[case], head, DIFF_TEST_PW="s" * 10)
    d = diff_plans(round_trip(p), p)
    assert not d.changed, diff_text(d)


def test_a_saved_plan_narrowed_by_limit_is_no_difference_from_its_runbook_planned_so(tmp_path):
    """``diff PLAN.json RUNBOOK --limit H``: narrowing drops the steps that keep no host,
    planning keeps them with none; neither runs them, so neither is a difference."""
    from runbook.options import PlanOptions
    from runbook.plan.narrow import narrow

    # (Not a local step: planning keeps it under --limit, narrowing drops it. That is a
    # difference between `apply FILE --limit` and `apply PLAN.json --limit`, not the diff's.)
    no_local = GROUP.replace("    - {name: tell, local: true, run: echo batch done}\n", "")
    steps = DEFERRED + no_local + "- {name: d, hosts: db, run: d}\n"
    head = HOSTS + "vars: {port: 1}\n"
    limited = Selection(limit="web02")
    full = plan(tmp_path, steps, head)
    rb = load_runbook(full.source)
    inv = build_inventory(rb.hosts, rb.inventory, rb.positions, rb.path)
    fresh = make_plan(rb, inv, None, {}, limited)
    assert [s.name for s in fresh.steps if not s.commands] == ["find", "d"]
    saved = narrow(round_trip(full), PlanOptions(full.source, selection=limited), "saved plan")
    assert [s.name for s in saved.steps] == ["use", "roll"]
    assert not diff_plans(saved, fresh).changed
    assert diff_plans(full, fresh).changed


def test_a_saved_plan_with_a_become_host_is_no_difference(tmp_path):
    """Commands of one step with different settings (a host's ansible_become) compare the
    same however the saved plan picks the step's own spec."""
    inv = tmp_path / "inv.ini"
    inv.write_text("[db]\ndb1 ansible_become=true\n[web]\nweb01\nweb02\nweb03\n")
    p = plan(tmp_path, "- {name: s, hosts: all, run: id}", f"inventory: {inv}\n")
    assert {c.host.name: c.spec.become for c in p.steps[0].commands} == {
        "db1": True,
        "web01": False,
        "web02": False,
        "web03": False,
    }
    assert not diff_plans(round_trip(p), p).changed
    inv.write_text("[db]\ndb1 ansible_become=true\n[web]\nweb01 ansible_become=true\n")
    q = plan(tmp_path, "- {name: s, hosts: all, run: id}", f"inventory: {inv}\n", "q.yml")
    assert [c.spec.become for c in q.steps[0].commands] == [True, True]
    assert not diff_plans(round_trip(q), q).changed


def test_a_host_that_becomes_root_through_the_inventory_shows_per_host(tmp_path):
    inv = tmp_path / "inv.ini"
    inv.write_text("[all]\ndb1\nweb01\nweb02\n")
    a = plan(tmp_path, "- {name: s, hosts: all, run: id}", f"inventory: {inv}\n", "a.yml")
    inv.write_text("[all]\ndb1 ansible_become=true\nweb01\nweb02\n")
    b = plan(tmp_path, "- {name: s, hosts: all, run: id}", f"inventory: {inv}\n", "b.yml")
    (cd,) = only_step(diff_plans(a, b)).commands
    assert cd.hosts == ("db1",)
    assert [(c.name, c.kind, c.new) for c in cd.details] == [("settings.become", ADDED, True)]


# -- renderings ---------------------------------------------------------------------------


def test_text_is_plain_unless_asked_for_colour(tmp_path):
    d = diff(tmp_path, ORDER, ORDER.replace("echo b", "echo B"))
    plain = diff_text(d)
    assert "\x1b[" not in plain
    coloured = diff_text(d, color=True)
    assert "\x1b[31m" in coloured and "\x1b[32m" in coloured
    assert _strip_ansi(coloured) == plain


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_control_characters_and_bidi_overrides_are_shown_escaped(tmp_path):
    """A change must not rewrite the lines around it on the reviewer's terminal."""
    new = ORDER.replace("run: echo b", 'run: "echo b\\e[1A\\e[2K\\u202eevil"')
    d = diff(tmp_path, ORDER, new)
    assert "\x1b[1A" in d.steps[0].commands[0].new.cmd  # the plan keeps the bytes ...
    for out in (diff_text(d), diff_text(d, color=True), diff_markdown(d)):
        assert "\x1b[1A" not in out and "\u202e" not in out  # ... no rendering shows them
        assert "\\e[1A\\e[2K\\u202eevil" in out


def test_markdown_cannot_be_broken_out_of(tmp_path):
    new = ORDER.replace("echo b", "echo '``` <img src=x> | *b*'").replace(
        "name: b", "name: '<b>*b*</b>'"
    )
    md = diff_markdown(diff(tmp_path, ORDER, new))
    assert "<img" not in md.replace("echo '``` <img src=x>", "")  # only inside the fence
    assert "````diff" in md  # a fence longer than any backtick run inside it
    assert "\\<b\\>\\*b\\*\\</b\\>" in md


def test_markdown_summary_and_sections(tmp_path):
    d = diff(tmp_path, STEPS, STEPS.replace("serial: 2", "serial: 3").replace("curl", "curl -v"))
    md = diff_markdown(d)
    assert md.startswith("## runbook diff\n\n**2 steps changed; 5 hosts affected**\n")
    assert "### \\[1\\] restart · changed" in md
    assert "| serial | `2` | `3` |" in md
    assert "```diff\n- $ curl -fsS http://10.0.0.1/health\n+ $ curl -v -fsS" in md


def test_markdown_too_long_for_a_comment_is_cut_between_steps(tmp_path):
    many = "".join(f"- {{name: s{i}, hosts: web, run: echo {i}}}\n" for i in range(40))
    d = diff(tmp_path, many, many.replace("echo", "printf"))
    full = diff_markdown(d)
    cut = diff_markdown(d, limit=2000)
    assert len(cut) < 2000 < len(full)
    assert cut.rstrip().endswith("run `runbook diff` to see them._")
    shown = cut.count("\n### ")
    assert 0 < shown < 40
    assert f"and {40 - shown} more steps" in cut


def test_json_follows_its_schema_and_is_deterministic(tmp_path):
    from jsonschema import Draft202012Validator

    head = HOSTS + "vars: {port: 1}\n"
    new = GROUP.replace("serial: 2", "serial: 3").replace("start app", "start app -q")
    new = DEFERRED.replace("cat /role", "cat /role2") + new + "- {name: z, hosts: db, run: z}"
    d = diff(tmp_path, DEFERRED + GROUP, new, head)
    data = json.loads(diff_json(d))
    Draft202012Validator(schema("diff")).validate(data)
    assert data["format"] == "runbook-plan-diff" and data["changed"] is True
    statuses = {s["name"]: s["status"] for s in data["steps"]}
    assert statuses == {"find": CHANGED, "roll": CHANGED, "z": ADDED}
    assert diff_json(d) == diff_json(diff(tmp_path, DEFERRED + GROUP, new, head))


# -- golden -------------------------------------------------------------------------------

GOLDEN_SECRET = "g0lden-t0ken"


@pytest.mark.parametrize("fmt,ext", [("text", "txt"), ("json", "json"), ("markdown", "md")])
def test_golden_diff(fmt, ext):
    proc = runbook_cli(
        "diff",
        "diff_old.yml",
        "diff_new.yml",
        "--format",
        fmt,
        cwd=DATA,
        env={"RUNBOOK_GOLDEN_API_TOKEN": GOLDEN_SECRET, "PYTHONHASHSEED": "7"},
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    assert GOLDEN_SECRET not in out
    golden = GOLDEN / f"diff.{ext}"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(out, encoding="utf-8")
        pytest.skip(f"regenerated {golden.name}: review the diff before committing it")
    assert golden.exists(), f"missing {golden}; run with UPDATE_GOLDEN=1 and review it"
    assert out == golden.read_text(encoding="utf-8")


def test_golden_json_and_text_agree():
    """The two reviewed renderings list the same steps, with the same hosts per change."""
    data = json.loads((GOLDEN / "diff.json").read_text(encoding="utf-8"))
    text = (GOLDEN / "diff.txt").read_text(encoding="utf-8")
    marks = {ADDED: "+", REMOVED: "-", CHANGED: "~", MOVED: "~", UNCHANGED: " "}
    steps = [s for top in data["steps"] for s in (top, *top.get("steps", []))]
    assert steps
    for step in steps:
        mark = marks[step["status"]]
        if step["status"] == REMOVED:
            head = f"{mark} {step['name']}    removed (was [{step['index']['old']}])"
        else:
            head = f"{mark} [{step['index']['new']}] {step['name']}"
        assert head in text
        for cd in step["commands"]:
            assert f"{marks[cd['change']]} {cd['label']}\n" in text


def test_a_copy_is_diffed_by_its_summary_without_a_shell_prompt(tmp_path):
    """A copy runs no shell: its summary (dest, size, digest) is shown as the plan shows it,
    and JSON marks it, so a reviewer does not read ``$ copy ...`` as a command."""
    from jsonschema import Draft202012Validator

    (tmp_path / "a.conf").write_text("port=1\n")
    (tmp_path / "b.conf").write_text("port=2\n")
    step = "- {name: ship, hosts: db, copy: {src: SRC, dest: /etc/app.conf}}"
    d = diff(tmp_path, step.replace("SRC", "a.conf"), step.replace("SRC", "b.conf"))
    (cd,) = only_step(d).commands
    assert cd.change == CHANGED and cd.old.transfer and cd.new.transfer
    text = diff_text(d)
    assert "- copy a.conf -> /etc/app.conf (7 bytes, sha256:" in text
    assert "+ copy b.conf -> /etc/app.conf (7 bytes, sha256:" in text
    assert "$ copy" not in text and "$ copy" not in diff_markdown(d)
    data = json.loads(diff_json(d))
    Draft202012Validator(schema("diff")).validate(data)
    assert data["steps"][0]["commands"][0]["new"]["transfer"] is True


def test_a_when_decided_at_apply_reads_as_the_plan_shows_it(tmp_path):
    """Per host, what is known at plan time filled in: the same line as the plan's."""
    old = "- {name: role, hosts: db, run: cat role, register: role}\n"
    new = (
        old
        + '- {name: act, hosts: db, run: "act {{ role.stdout }}", when: host.name == role.stdout}'
    )
    d = diff(tmp_path, old, new)
    text = diff_text(d)
    assert "when: 'db1' == role.stdout (decided at apply)" in text
    assert "when decided at apply: host.name" not in text
