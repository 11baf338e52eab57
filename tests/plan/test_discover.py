"""Discover steps (SPEC §12), pure: which steps may be one, the plan of them alone, and
the stale-plan comparison that ``apply`` of a checked plan runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runbook.errors import InputError
from runbook.inventory.build import build_inventory
from runbook.load.loader import load_runbook
from runbook.model.plan import Plan
from runbook.plan.discover import Discovered, discovery_plan, merged, stale, stored_discovery
from runbook.plan.planner import make_plan


def plan_of(tmp_path: Path, text: str) -> Plan:
    path = tmp_path / "rb.yml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    rb = load_runbook(str(path))
    inv = build_inventory(rb.hosts, rb.inventory, rb.positions, rb.path)
    return make_plan(rb, inv, {}, {})


HEAD = """
name: d
hosts:
  db: [db1, db2, db3]
steps:
"""


def test_a_discover_step_may_read_another_discover_steps_register(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        HEAD
        + """
  - {name: role, hosts: db, discover: true, run: cat /role, register: role}
  - {name: lsn, hosts: db, discover: true, become: true, when: "role.stdout == 'replica'",
     run: cat /lsn, register: lsn}
  - name: pick
    hosts: db
    run_once: true
    discover: true
    run: echo {% for h in groups.db %}{{ hostvars[h].lsn.stdout }}{% endfor %}
    register: pick
  - {name: act, hosts: db, run: "act {{ pick.stdout }}"}
""",
    )
    found = discovery_plan(plan)
    assert found is not None
    assert [s.name for s in found.leaf_steps()] == ["role", "lsn", "pick"]
    assert all(s.discover for s in found.leaf_steps())
    assert len(found.commands) == 7  # pick is run_once


@pytest.mark.parametrize(
    "field",
    [
        'run: "check {{ done.stdout }}"',
        "when: done.rc == 0\n    run: check",
        "run: echo {{ hostvars['db1'].done.stdout }}",
        'env: {X: "{{ done.stdout }}"}\n    run: check',
    ],
)
def test_a_discover_step_reading_a_later_steps_register_is_exit_2(
    tmp_path: Path, field: str
) -> None:
    text = (
        HEAD
        + "  - {name: act, hosts: db, run: act, register: done}\n"
        + "  - name: look\n    hosts: db\n    discover: true\n    "
        + field
        + "\n"
    )
    with pytest.raises(InputError) as err:
        plan_of(tmp_path, text)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'rb.yml'}:9:")  # the field that reads it
    assert "step 'look'" in message
    assert "reads 'done', registered by 'act', which is not a discover step" in message


def test_a_copy_cannot_be_a_discover_step(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError) as err:
        plan_of(
            tmp_path,
            HEAD + "  - {name: ship, hosts: db, discover: true, copy: {src: f, dest: /f}}\n",
        )
    assert str(err.value).startswith(f"{tmp_path / 'rb.yml'}:5:29: step 'ship': ")
    assert "a copy step cannot be a discover step" in str(err.value)


def test_a_group_cannot_be_a_discover_step(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        plan_of(
            tmp_path,
            HEAD + "  - {name: g, hosts: db, discover: true, steps: [{name: i, run: x}]}\n",
        )
    assert "discover is not allowed in a group" in str(err.value)


def test_a_groups_discover_step_is_one_step_of_all_its_batches(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        HEAD
        + """
  - name: g
    hosts: db
    serial: 1
    steps:
      - {name: look, discover: true, run: cat /x, register: x}
      - {name: act, run: "act {{ x.stdout }}"}
""",
    )
    found = discovery_plan(plan)
    assert found is not None
    (look,) = found.steps
    assert look.name == "look" and look.group is None
    assert [[c.host.name for c in b] for b in look.batches] == [["db1"], ["db2"], ["db3"]]


def test_a_plan_without_discover_steps_has_no_discovery(tmp_path: Path) -> None:
    assert discovery_plan(plan_of(tmp_path, HEAD + "  - {name: a, run: x}\n")) is None


def value(stdout: str, status: str = "ok", rc: int | None = 0) -> dict[str, object]:
    return {"status": status, "rc": rc, "stdout": stdout, "stderr": ""}


PLANNED = [
    Discovered("Find the primary", "role", {
        "pg1": value("primary"), "pg2": value("replica"), "pg3": value("replica"),
    }),
    Discovered("Choose", "winner", {h: value("pg3") for h in ("pg1", "pg2", "pg3")}),
]  # fmt: skip


def test_the_same_world_is_not_stale() -> None:
    assert stale(PLANNED, PLANNED) == []


def test_the_issue_message_names_host_step_and_both_values() -> None:
    moved = [
        Discovered("Find the primary", "role", {
            "pg1": value("replica"), "pg2": value("primary"), "pg3": value("replica"),
        }),
        Discovered("Choose", "winner", {h: value("pg1") for h in ("pg1", "pg2", "pg3")}),
    ]  # fmt: skip
    assert stale(PLANNED, moved) == [
        "pg1 'Find the primary' printed 'replica', the plan has 'primary'",
        "pg2 'Find the primary' printed 'primary', the plan has 'replica'",
        # A value every host shares (run_once) is one line, its hosts listed compactly.
        "pg[1:3] 'Choose' printed 'pg1', the plan has 'pg3'",
    ]


def test_status_rc_and_stderr_differences_say_what_changed() -> None:
    now = [
        Discovered("Find the primary", "role", {
            "pg1": value("", status="unreachable", rc=None),
            "pg2": value("replica", rc=3),
            "pg3": {**value("replica"), "stderr": "warning: slow"},
        }),
    ]  # fmt: skip
    assert stale(PLANNED[:1], now) == [
        "pg1 'Find the primary' was unreachable, the plan has ok",
        "pg2 'Find the primary' exited 3, the plan has 0",
        "pg3 'Find the primary' printed 'warning: slow' on stderr, the plan has ''",
    ]


def test_only_hosts_discovered_now_are_compared() -> None:
    """``--limit pg2`` narrows the discovery: pg1's planned value is not compared."""
    now = [Discovered("Find the primary", "role", {"pg2": value("replica")})]
    assert stale(PLANNED[:1], now) == []
    missing = [Discovered("Other", "x", {"pg2": value("y")})]
    assert stale(PLANNED[:1], missing) == [
        "pg2 'Find the primary' has no value now, the plan has one"
    ]


def test_stored_values_round_trip_in_host_name_order() -> None:
    parts = [
        Discovered.of("s", "r", ["pg10"], value("a")),
        Discovered.of("s", "r", ["pg2"], {**value("b"), "stdout_lines": ["b"]}),
    ]
    (one,) = merged(parts)
    assert list(one.values) == ["pg2", "pg10"]
    assert one.values["pg2"] == value("b")  # only the compared fields are kept
    saved = {"discovery": {"values": [one.to_dict()]}}
    assert stored_discovery(saved) == (one,)
    assert stored_discovery({}) == ()
