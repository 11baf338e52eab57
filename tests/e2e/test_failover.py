"""``playbooks/db-failover.yml``, unchanged, against real sshd hosts (issue 22): values
from registered output (``set``), checks on the controller (``assert``), a ``loop`` over
the databases, and ``--resume`` after a failed promote.

Each fleet host stands in for a PostgreSQL node; ``tests/data/fakepg`` stands in for the
software, keeping each node's role, replay position and databases in its own directory
and logging every change, with a time, to one cluster log.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from runbook.load.loader import schema
from tests.e2e.helpers import events, journal_dirs, runbook
from tests.e2e.test_procedures import DATA, _apply, _copy_playbook, _inventory_line, _log
from tests.fleet import Fleet

pytestmark = pytest.mark.ssh

# db1 is the primary; db3 has replayed the most WAL.
NODES = {
    "db1": ("primary", 9000, "app\nbilling\n"),
    "db2": ("replica", 7000, "app\nbilling\n"),
    "db3": ("replica", 8500, "app\nbilling\n"),
    "db4": ("replica", 8000, "app\nbilling\n"),
}


@pytest.fixture
def cluster(tmp_path: Path, fleet_factory) -> tuple[Path, Path, Fleet]:
    fleet = fleet_factory(4)
    playbook = _copy_playbook(tmp_path, "db-failover.yml")
    cluster = tmp_path / "cluster"
    lines = []
    for (name, (role, lsn, databases)), host in zip(NODES.items(), fleet, strict=True):
        node = cluster / name
        node.mkdir(parents=True)
        (node / "role").write_text(f"{role}\n")
        (node / "lsn").write_text(f"{lsn}\n")
        (node / "databases").write_text(databases)
        lines.append(_inventory_line(name, host, fleet, pgdata=node))
    (tmp_path / "inventory" / "db.ini").write_text(
        "[db]\n" + "\n".join(lines) + f"\n\n[db:vars]\npg_bin={DATA / 'fakepg' / 'bin'}\n"
    )
    return playbook, cluster, fleet


def _roles(cluster: Path) -> dict[str, str]:
    return {n.name: (n / "role").read_text().strip() for n in sorted(cluster.glob("db*"))}


def _changes(cluster: Path) -> list[tuple[str, str]]:
    return [(e, n) for e, n, _ in _log(cluster)] if (cluster / "events.log").exists() else []


def test_the_plan_shows_what_is_decided_at_run_time(cluster) -> None:
    playbook, _, _ = cluster
    plan = runbook("plan", "--format", "json", str(playbook), cwd=playbook.parent)
    assert plan.returncode == 0, plan.stderr
    steps = {s["name"]: s["batches"][0][0] for s in json.loads(plan.stdout)["steps"]}
    # The discovery is plan-time; everything after it reads what it finds.
    assert [n for n, c in steps.items() if not c.get("deferred")] == [
        "Find each node's role", "Find each node's replay position", "List each node's databases"
    ]  # fmt: skip
    choose = steps["Choose the most advanced replica"]
    assert "values" not in choose["set"]  # computed at run time
    assert [k for k, _ in choose["set"]["templates"]] == ["nodes", "primaries", "winner"]
    assert steps["Check every database on the new primary"]["loop"]["var"] == "database"
    text = runbook("plan", str(playbook), cwd=playbook.parent).stdout
    assert "(deferred: reads hostvars)\n    db1  set nodes = {{ groups.db" in text
    assert "db[1:4]  assert role.stdout in ['primary', 'replica']" in text
    assert "(deferred: reads winner)" in text
    assert "when: 'db3' == winner (decided at apply)" in text  # per host, host.name filled in
    assert "loop decided at apply: {{ databases.stdout_lines }} as database" in text
    assert "timeout: 120s" in text  # promote_timeout, rendered at plan time


def test_failover_promotes_the_most_advanced_replica(cluster) -> None:
    playbook, cluster_dir, fleet = cluster
    done = _apply(playbook.parent, playbook, fleet)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    changes = _changes(cluster_dir)
    assert changes[:2] == [("fence", "db1"), ("promote", "db3")]
    assert sorted(changes[2:4]) == [("repoint-db3", "db2"), ("repoint-db3", "db4")]
    assert changes[4:] == [("check-app", "db3"), ("check-billing", "db3")]
    assert _roles(cluster_dir) == {
        "db1": "fenced",
        "db2": "replica",
        "db3": "primary",
        "db4": "replica",
    }
    evs = events(done.stdout)
    validator = Draft202012Validator(schema("events"))
    for e in evs:
        validator.validate(e)
    sets = [e for e in evs if e["event"] == "registered" and e.get("is_set")]
    shared = {e["name"]: (e["hosts"], e["value"]) for e in sets if e["name"] != "node"}
    assert shared["winner"] == (list(NODES), "db3")  # run once, for every host
    assert shared["primaries"] == (list(NODES), ["db1"])
    nodes = {e["hosts"][0]: e["value"] for e in sets if e["name"] == "node"}
    assert nodes["db1"] == {"name": "db1", "role": "primary", "lsn": 9000}
    assert nodes["db3"] == {"name": "db3", "role": "replica", "lsn": 8500}
    checks = [
        (e["host"], e.get("item"), e["status"])
        for e in evs
        if e["event"] == "command_finished"
        and e["step"] == "Check every database on the new primary"
    ]
    assert sorted(checks, key=str) == sorted(
        [("db3", 0, "ok"), ("db3", 1, "ok")]
        + [(h, i, "skipped") for h in ("db1", "db2", "db4") for i in (0, 1)],
        key=str,
    )
    # No command ran for the controller's steps: they have no command_started.
    started = {e["step"] for e in evs if e["event"] == "command_started"}
    assert "Choose the most advanced replica" not in started
    assert "Every node is a primary or a replica" not in started


def test_two_primaries_stop_the_failover_before_anything_changes(cluster) -> None:
    playbook, cluster_dir, fleet = cluster
    (cluster_dir / "db2" / "role").write_text("primary\n")
    done = _apply(playbook.parent, playbook, fleet)
    assert done.returncode == 1, done.stdout[-3000:]
    assert _changes(cluster_dir) == []
    failed = [
        e
        for e in events(done.stdout)
        if e["event"] == "command_finished" and e["status"] == "failed"
    ]
    assert [(e["step"], e["host"], e["error"]) for e in failed] == [
        ("Exactly one primary", "db1", "expected one primary, found db1, db2")
    ]


def test_resume_after_a_failed_promote_goes_on_from_the_promote(cluster) -> None:
    playbook, cluster_dir, fleet = cluster
    (cluster_dir / "promote.fail").write_text("timeline history file missing")
    first = _apply(playbook.parent, playbook, fleet)
    assert first.returncode == 1, first.stdout[-3000:]
    assert _changes(cluster_dir) == [("fence", "db1")]
    promote = [
        e for e in events(first.stdout)
        if e["event"] == "command_finished" and e["step"] == "Promote the most advanced replica"
        and e["status"] == "failed"
    ]  # fmt: skip
    assert [e["host"] for e in promote] == ["db3"]
    assert "could not promote db3: timeline history file missing" in promote[0]["stderr"]
    run_id = events(first.stdout)[0]["run_id"]

    (cluster_dir / "promote.fail").unlink()
    # Asked again now, db1 would say "fenced": the resumed run keeps what the first run
    # found and decided (restored from the journal), and does not ask again.
    resumed = _apply(playbook.parent, playbook, fleet, "--resume", run_id)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    changes = _changes(cluster_dir)
    assert changes[:2] == [("fence", "db1"), ("promote", "db3")]  # fenced once
    assert sorted(changes[2:4]) == [("repoint-db3", "db2"), ("repoint-db3", "db4")]
    assert changes[4:] == [("check-app", "db3"), ("check-billing", "db3")]
    evs = events(resumed.stdout)
    ran = {(e["step"], e["host"]) for e in evs if e["event"] == "command_started"}
    assert "Find each node's role" not in {s for s, _ in ran}
    assert ("Fence the old primary", "db1") not in ran
    restored = {
        e["name"]: e["value"] for e in evs if e["event"] == "registered" and e.get("is_set")
    }
    assert restored["winner"] == "db3"
    assert len(journal_dirs(playbook.parent)) == 2
