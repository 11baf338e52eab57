"""The checked view (``plan --check``), pure: given what the discover steps found, what
is rendered, what is decided, and what must stay deferred."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from runbook.inventory.build import build_inventory
from runbook.load.loader import load_runbook
from runbook.load.secrets import Secrets
from runbook.model.plan import Plan
from runbook.plan.discover import Discovered
from runbook.plan.planner import make_plan
from runbook.plan.text import plan_text
from runbook.review.checked import checked_view, discovered_values

FAILOVER = Path(__file__).resolve().parents[1] / "data" / "runbooks" / "failover.yml"


def plan_of(path: Path, secrets: dict[str, str] | None = None) -> Plan:
    rb = load_runbook(str(path))
    inv = build_inventory(rb.hosts, rb.inventory, rb.positions, rb.path)
    return make_plan(rb, inv, {}, secrets or {})


def ok(stdout: str) -> dict[str, object]:
    return {"status": "ok", "rc": 0, "stdout": stdout, "stderr": ""}


FOUND = [
    Discovered("Find the primary", "role", {
        "pg1": ok("primary"), "pg2": ok("replica"), "pg3": ok("replica"),
    }),
    Discovered("Read the replay position", "lsn", {
        "pg1": ok("100"), "pg2": ok("90"), "pg3": ok("95"),
    }),
    Discovered("Choose the new primary", "winner", {h: ok("pg3") for h in ("pg1", "pg2", "pg3")}),
]  # fmt: skip


def view(plan: Plan, found: list[Discovered], secrets: Secrets | None = None):
    secrets = secrets or Secrets()
    return checked_view(plan, discovered_values(plan, secrets, found), found)


def by_host(plan: Plan, step: str) -> dict[str, tuple[str, str | None]]:
    (s,) = [s for s in plan.leaf_steps() if s.name == step]
    return {c.host.name: (c.cmd, c.skip_reason) for c in s.commands}


def test_the_failover_shows_who_is_fenced_promoted_and_repointed() -> None:
    plan = plan_of(FAILOVER)
    shown, notes = view(plan, FOUND)
    pg = "/usr/bin/fakepg"
    fence = by_host(shown, "Fence the old primary")
    assert fence["pg1"] == (f"{pg} fence", None)
    assert fence["pg2"][1] == fence["pg3"][1] == "when: role.stdout == 'primary'"
    promote = by_host(shown, "Promote the new primary")
    assert promote["pg3"] == (f"{pg} promote", None)
    assert {h for h, (_, skip) in promote.items() if skip} == {"pg1", "pg2"}
    repoint = by_host(shown, "Repoint the other replicas")
    assert repoint["pg2"] == (f"{pg} repoint pg3", None)
    assert {h for h, (_, skip) in repoint.items() if skip} == {"pg1", "pg3"}
    # Every rendered command is marked; what each discover step found is under its host.
    assert notes[("Repoint the other replicas", "pg2")].mark == "discovered"
    assert notes[("Find the primary", "pg1")].lines == ("found: 'primary'",)
    text = plan_text(shown, notes=notes)
    assert re.search(r"\n    pg2 +\$ /usr/bin/fakepg repoint pg3\n", text)
    assert "    pg[2:3]  (skipped: when: role.stdout == 'primary')\n" in text
    assert "{{" not in text.split("[4]")[1]  # nothing after the discovery is left deferred
    # The saved plan itself is unchanged: apply renders from its templates.
    assert by_host(plan, "Repoint the other replicas")["pg2"][0] == (
        f"{pg} repoint {{{{ winner.stdout }}}}"
    )


def test_what_reads_a_value_no_discover_step_registers_stays_deferred(tmp_path: Path) -> None:
    rb = tmp_path / "rb.yml"
    rb.write_text(
        textwrap.dedent(
            """
            name: x
            hosts:
              db: [db1, db2]
            steps:
              - {name: look, hosts: db, discover: true, run: cat /x, register: x}
              - {name: act, hosts: db, run: "act {{ x.stdout }}", register: done}
              - {name: both, hosts: db, run: "both {{ x.stdout }} {{ done.stdout }}"}
              - name: through hostvars
                hosts: db
                run: "echo {{ hostvars['db1'].done.stdout }} {{ x.stdout }}"
              - name: hostvars of a discovered value
                hosts: db
                run: "echo {{ hostvars['db2'].x.stdout }}"
            """
        )
    )
    plan = plan_of(rb)
    found = [Discovered("look", "x", {"db1": ok("one"), "db2": ok("two")})]
    shown, notes = view(plan, found)
    assert by_host(shown, "act") == {"db1": ("act one", None), "db2": ("act two", None)}
    assert by_host(shown, "both")["db1"][0] == "both {{ x.stdout }} {{ done.stdout }}"
    assert ("both", "db1") not in notes  # still deferred, as the plan shows it
    assert by_host(shown, "through hostvars")["db1"][0].startswith("echo {{ hostvars")
    assert by_host(shown, "hostvars of a discovered value")["db1"][0] == "echo two"


def test_a_secret_in_a_discovered_command_stays_a_stand_in(tmp_path: Path) -> None:
    rb = tmp_path / "rb.yml"
    rb.write_text(
        textwrap.dedent(
            """
            name: x
            hosts:
              db: [db1]
            secrets:
              pw: {env: CHECKED_PW}
            steps:
              - {name: look, hosts: db, discover: true, run: cat /x, register: x}
              - {name: login, hosts: db, run: "login {{ x.stdout }} {{ pw | quote }}"}
            """
        )
    )
    secrets = Secrets({"pw": "hunter2-secret"}, {"pw": {"env": "CHECKED_PW"}})
    plan = plan_of(rb, secrets.values)
    found = [Discovered("look", "x", {"db1": ok("printed hunter2-secret")})]
    shown, notes = view(plan, found, secrets)
    text = plan_text(shown, notes=notes, mask=secrets.masker)
    assert "hunter2-secret" not in text
    assert (
        "login 'printed ********' '********'" in text or "login printed ******** '********'" in text
    )
