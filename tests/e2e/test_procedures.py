"""The procedure playbooks, unchanged, against real sshd hosts (issue 11): a Kafka-style
rolling restart (a step group, ``serial: 1``, a wait with ``until``) and a "find the
primary, upgrade the replicas first" upgrade (``register``, deferred rendering).

Each fleet host stands in for a broker or a database node; ``tests/data/fakekafka`` and
``tests/data/fakedb`` stand in for the software, keeping each node's state in its own
directory and logging every action, with a timestamp, to one cluster log.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.helpers import events, runbook
from tests.fleet import Fleet

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"

pytestmark = pytest.mark.ssh


def _inventory_line(name: str, host, fleet: Fleet, **vars: object) -> str:
    extra = " ".join(f"{k}={v}" for k, v in vars.items())
    return (
        f"{name} ansible_host=127.0.0.1 ansible_port={host.port} ansible_user=root "
        f"ansible_ssh_private_key_file={fleet.client_key} {extra}"
    )


def _copy_playbook(tmp: Path, name: str) -> Path:
    (tmp / "inventory").mkdir()
    shutil.copytree(ROOT / "playbooks" / "common", tmp / "common")
    shutil.copy(ROOT / "playbooks" / name, tmp / name)
    return tmp / name


def _apply(tmp: Path, playbook: Path, fleet: Fleet, *extra: str):
    (tmp / "known_hosts").write_text(fleet.known_hosts_text())
    return runbook(
        "apply", "--yes", "--output", "json", "--known-hosts", str(tmp / "known_hosts"),
        *extra, str(playbook), cwd=tmp, timeout=300,
    )  # fmt: skip


def _log(cluster: Path) -> list[tuple[str, str, float]]:
    out = []
    for line in (cluster / "events.log").read_text().splitlines():
        event, node, at = line.split()
        out.append((event, node, float(at)))
    return out


# -- Kafka: rolling groups -------------------------------------------------------------


@pytest.fixture
def kafka(tmp_path: Path, fleet_factory) -> tuple[Path, Path, Fleet]:
    fleet = fleet_factory(3)
    playbook = _copy_playbook(tmp_path, "kafka-rolling-restart.yml")
    home = tmp_path / "kafka"
    shutil.copytree(DATA / "fakekafka", home)
    cluster = tmp_path / "cluster"
    lines = []
    for i, host in enumerate(fleet, 1):
        broker = cluster / f"kafka{i}"
        broker.mkdir(parents=True)
        (broker / "state").write_text("up 0\n")  # up for a long time
        lines.append(_inventory_line(f"kafka{i}", host, fleet, data_dir=broker))
    (tmp_path / "inventory" / "kafka.ini").write_text(
        "[brokers]\n" + "\n".join(lines) + f"\n\n[brokers:vars]\nkafka_home={home}\n"
    )
    return playbook, cluster, fleet


def _max_down(log: list[tuple[str, str, float]]) -> int:
    down: set[str] = set()
    most = 0
    for event, broker, _ in sorted(log, key=lambda e: e[2]):
        (down.add if event == "stop" else down.discard)(broker)
        most = max(most, len(down))
    return most


def test_kafka_rolling_restart_never_has_two_brokers_down(kafka) -> None:
    playbook, cluster, fleet = kafka
    done = _apply(playbook.parent, playbook, fleet)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    log = _log(cluster)
    assert [(e, b) for e, b, _ in log] == [
        (e, f"kafka{i}") for i in (1, 2, 3) for e in ("stop", "start")
    ]
    assert _max_down(log) == 1
    # Each next broker stopped only once the last one's replicas were back in sync (the
    # fake needs 1 s after a start): the wait step held the next batch back.
    starts = {b: t for e, b, t in log if e == "start"}
    stops = {b: t for e, b, t in log if e == "stop"}
    assert stops["kafka2"] - starts["kafka1"] >= 1.0
    assert stops["kafka3"] - starts["kafka2"] >= 1.0
    evs = events(done.stdout)
    batches = [e for e in evs if e["event"] == "batch_started"]
    assert [(b["step"], b["batch"], b["hosts"]) for b in batches] == [
        ("Restart brokers one at a time", i, [f"kafka{i}"]) for i in (1, 2, 3)
    ]
    inner = [e for e in evs if e["event"] == "command_finished" and e.get("group")]
    assert {(e["step"], e["host"], e["batch"]) for e in inner} >= {
        ("Wait for in-sync replicas", "kafka2", 2)
    }


def test_a_broker_that_fails_to_start_halts_before_the_next_stops(kafka) -> None:
    playbook, cluster, fleet = kafka
    starter = playbook.parent / "kafka" / "bin" / "kafka-server-start.sh"
    starter.write_text(
        starter.read_text().replace(
            'echo "up $(now)"', '[ "$broker" = kafka2 ] && { echo "no disk" >&2; exit 1; }\n'
            'echo "up $(now)"'
        )
    )  # fmt: skip
    done = _apply(playbook.parent, playbook, fleet)
    assert done.returncode == 1, done.stdout[-3000:]
    log = [(e, b) for e, b, _ in _log(cluster)]
    assert log == [("stop", "kafka1"), ("start", "kafka1"), ("stop", "kafka2")]
    results = {
        (e["step"], e["host"]): e for e in events(done.stdout) if e["event"] == "command_finished"
    }
    assert results[("Start broker", "kafka2")]["status"] == "failed"
    # kafka2 dropped out of the rest of its batch; batch 3 never started.
    assert results[("Wait for in-sync replicas", "kafka2")]["status"] == "cancelled"
    assert "dropped out" in results[("Wait for in-sync replicas", "kafka2")]["error"]
    assert results[("Stop broker", "kafka3")]["status"] == "cancelled"


# -- the primary: register and deferred rendering ----------------------------------------


@pytest.fixture
def db(tmp_path: Path, fleet_factory) -> tuple[Path, Path, Fleet]:
    fleet = fleet_factory(3)
    playbook = _copy_playbook(tmp_path, "db-upgrade.yml")
    cluster = tmp_path / "cluster"
    lines = []
    for i, host in enumerate(fleet, 1):
        node = cluster / f"db{i}"
        node.mkdir(parents=True)
        (node / "role").write_text("primary\n" if i == 2 else "replica\n")
        (node / "version").write_text("15.8\n")
        lines.append(_inventory_line(f"db{i}", host, fleet, pgdata=node))
    (tmp_path / "inventory" / "db.ini").write_text(
        "[db]\n" + "\n".join(lines) + f"\n\n[db:vars]\npg_bin={DATA / 'fakedb' / 'bin'}\n"
    )
    return playbook, cluster, fleet


def test_db_upgrade_finds_the_primary_and_upgrades_it_last(db) -> None:
    playbook, cluster, fleet = db
    plan = runbook("plan", "--format", "json", str(playbook), cwd=playbook.parent)
    assert plan.returncode == 0, plan.stderr
    steps = json.loads(plan.stdout)["steps"]
    deferred = [s["name"] for s in steps if s["batches"][0][0].get("deferred")]
    assert deferred == [s["name"] for s in steps[1:]]  # all but the one that finds out
    text = runbook("plan", str(playbook), cwd=playbook.parent).stdout
    # The condition shown on the hosts it gates, not hoisted into the step's header.
    assert "    (deferred: reads role)\n" in text
    assert "when: role.stdout == 'primary' (decided at apply)" in text

    done = _apply(playbook.parent, playbook, fleet)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert [(e, n) for e, n, _ in _log(cluster)] == [
        ("upgrade-16.4", "db1"),
        ("upgrade-16.4", "db3"),
        ("switchover-to-db1", "db2"),
        ("upgrade-16.4", "db2"),
    ]
    versions = {n.name: (n / "version").read_text().strip() for n in cluster.glob("db*")}
    assert versions == {"db1": "16.4", "db2": "16.4", "db3": "16.4"}
    evs = events(done.stdout)
    report = [e for e in evs if e["event"] == "command_finished" and e["step"].startswith("Report")]
    assert report[0]["stdout"] == "new primary: primary is now db1\n"
    started = {(e["step"], e["host"]): e.get("cmd") for e in evs if e["event"] == "command_started"}
    # The journal shows each deferred command as it was rendered.
    assert started[("Hand the primary role to an upgraded replica", "db2")].endswith("--to db1")
    registered = [e for e in evs if e["event"] == "registered" and e["name"] == "role"]
    assert {e["hosts"][0]: e["value"]["stdout"] for e in registered} == {
        "db1": "replica", "db2": "primary", "db3": "replica"
    }  # fmt: skip
