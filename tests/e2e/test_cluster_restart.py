"""``playbooks/cluster-restart.yml``, byte for byte, against nine real sshd hosts.

Each fleet host stands in for a cluster host; ``tests/data/fakegp`` stands in for
``$GPHOME`` (pg_ctl, pg_isready and psql that manage a TCP listener per instance).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import events, journal_dirs, journal_events, runbook

ROOT = Path(__file__).resolve().parents[2]
FAKEGP = ROOT / "tests" / "data" / "fakegp"
PASSWORD = "gpmon's pa$$word"

pytestmark = pytest.mark.ssh


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path: Path, fleet_factory) -> Path:
    """A copy of the playbook whose inventory/cluster.ini points at a nine-host fleet."""
    fleet = fleet_factory(9)
    gphome = tmp_path / "gphome"
    shutil.copytree(FAKEGP, gphome)
    (gphome / "expected_password").write_text(PASSWORD)
    (tmp_path / "inventory").mkdir()
    shutil.copy(ROOT / "playbooks" / "cluster-restart.yml", tmp_path / "cluster-restart.yml")
    names = ["cdw"] + [f"sdw{i}" for i in range(1, 9)]
    lines = []
    for name, fh in zip(names, fleet, strict=True):
        lines.append(
            f"{name} ansible_host=127.0.0.1 ansible_port={fh.port} ansible_user=root "
            f"ansible_ssh_private_key_file={fleet.client_key} db_port={_free_port()} "
            f"data_dir={tmp_path / 'data' / name}"
        )
    (tmp_path / "inventory" / "cluster.ini").write_text(
        "[coordinator]\n" + lines[0] + "\n\n[segments]\n" + "\n".join(lines[1:]) + "\n\n"
        "[cluster:children]\ncoordinator\nsegments\n\n"
        f"[cluster:vars]\ngphome={gphome}\n"
    )
    (tmp_path / "known_hosts").write_text(fleet.known_hosts_text())
    return tmp_path


def _apply(cluster: Path, *extra: str):
    return runbook(
        "apply",
        str(cluster / "cluster-restart.yml"),
        "--yes",
        "--output",
        "json",
        "--known-hosts",
        str(cluster / "known_hosts"),
        *extra,
        env={"CLUSTER_HEALTH_PASSWORD": PASSWORD},
        cwd=cluster,
        timeout=300,
    )


def _start_instances(cluster: Path) -> None:
    """Bring every instance up first, as a running cluster would be."""
    ini = (cluster / "inventory" / "cluster.ini").read_text()
    for line in ini.splitlines():
        if "db_port=" in line:
            fields = dict(f.split("=", 1) for f in line.split()[1:])
            started = subprocess.run(
                [
                    str(cluster / "gphome" / "bin" / "pg_ctl"),
                    "-D",
                    fields["data_dir"],
                    "start",
                    "-w",
                ],
                env={"PGPORT": fields["db_port"], "PATH": "/usr/bin:/bin"},
                timeout=60,
            )
            assert started.returncode == 0


def _stop_instances(cluster: Path) -> None:
    for pidfile in (cluster / "data").glob("*/postmaster.pid"):
        subprocess.run(["kill", pidfile.read_text().strip()], check=False)


def test_cluster_restart_runs_for_real_over_ssh(cluster: Path) -> None:
    _start_instances(cluster)
    try:
        proc = _apply(cluster)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        evs = events(proc.stdout)
        finished = [e for e in evs if e["event"] == "command_finished"]
        assert all(e["status"] == "ok" for e in finished), [
            e for e in finished if e["status"] != "ok"
        ]
        # Segments were restarted in batches of two, and each exactly once.
        batches = [e["hosts"] for e in evs if e["event"] == "batch_started"]
        assert batches == [["sdw1", "sdw2"], ["sdw3", "sdw4"], ["sdw5", "sdw6"], ["sdw7", "sdw8"]]
        for name in ["cdw"] + [f"sdw{i}" for i in range(1, 9)]:
            actions = (cluster / "data" / name / "actions").read_text().split()
            assert actions == ["start", "restart"], (name, actions)
        health = [e for e in finished if e["step"].startswith("Health check")]
        assert health and health[0]["stdout"] == "1\n"
        # The secret reached psql (it checked it) but no surface shows it.
        run_dir = journal_dirs(cluster)[-1]
        for text in [proc.stdout, proc.stderr] + [p.read_text() for p in run_dir.iterdir()]:
            assert "pa$$word" not in text
    finally:
        _stop_instances(cluster)


def test_cluster_restart_halts_when_a_segment_does_not_come_back(cluster: Path) -> None:
    _start_instances(cluster)
    try:
        # sdw3's instance cannot start again: its data directory is not writable as a dir.
        bad = cluster / "data" / "sdw3"
        (bad / "server.log").unlink()
        (bad / "server.log").mkdir()
        proc = _apply(cluster)
        assert proc.returncode == 1
        evs = events(proc.stdout)
        restarted = {
            e["host"]: e["status"]
            for e in evs
            if e["event"] == "command_finished" and e["step"].startswith("Restart seg")
        }
        # Batch 2 (sdw3, sdw4) fails on sdw3; batches 3 and 4 never start.
        assert restarted["sdw3"] == "failed"
        assert {restarted[h] for h in ("sdw5", "sdw6", "sdw7", "sdw8")} == {"cancelled"}
        assert (cluster / "data" / "sdw5" / "actions").read_text().split() == ["start"]
        assert "Restart the coordinator" in evs[-1]["steps_not_run"]
        assert journal_events(journal_dirs(cluster)[-1])[-1]["status"] == "halted"
    finally:
        _stop_instances(cluster)
