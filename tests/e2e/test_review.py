"""Plan review end to end (SPEC §12), as an operator runs it: the failover runbook
(``tests/data/runbooks/failover.yml``) against real sshd hosts — ``plan --check`` shows
exactly which host is fenced, which promoted and which repointed, ``--out`` saves it,
two approvers sign it, and ``apply`` of it refuses when the primary moved in between.

Fleet hosts h1..h3 stand in for pg1..pg3 (an ssh_config names them so); each node's
state is a directory (``tests/data/fakepg``), and every change is logged to one cluster
log, so "nothing ran" is checked on the hosts' side, not taken from runbook's word.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.e2e.helpers import ROOT, events, journal_dirs, runbook
from tests.fleet import Fleet

pytestmark = pytest.mark.ssh

FAKEPG = ROOT / "tests" / "data" / "fakepg" / "bin" / "fakepg"
FAILOVER = ROOT / "tests" / "data" / "runbooks" / "failover.yml"


class Cluster:
    """pg1..pg3 on fleet hosts h1..h3, with the failover runbook beside them."""

    def __init__(self, base: Path, fleet: Fleet) -> None:
        self.base = base
        self.nodes = base / "cluster"
        shutil.copy(FAILOVER, base / "failover.yml")
        self.runbook = base / "failover.yml"
        (base / "ssh_config").write_text(fleet.ssh_config_text().replace("Host h", "Host pg"))
        (base / "inventory.ini").write_text(
            "[pg]\n" + "".join(f"pg{i} pgdata={self.nodes / f'pg{i}'}\n" for i in (1, 2, 3))
        )
        self.set(primary="pg1", lsn={"pg1": 100, "pg2": 90, "pg3": 95})

    def set(self, primary: str, lsn: dict[str, int]) -> None:
        for node, position in lsn.items():
            (self.nodes / node).mkdir(parents=True, exist_ok=True)
            (self.nodes / node / "role").write_text("primary\n" if node == primary else "replica\n")
            (self.nodes / node / "lsn").write_text(f"{position}\n")

    def roles(self) -> dict[str, str]:
        return {n: (self.nodes / n / "role").read_text().strip() for n in ("pg1", "pg2", "pg3")}

    def log(self) -> list[str]:
        path = self.nodes / "events.log"
        # "EVENT NODE TIME" lines: the event and the node, in order
        lines = path.read_text().splitlines() if path.exists() else []
        return [" ".join(line.split()[:2]) for line in lines]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = runbook(
            *args,
            "--ssh-config",
            str(self.base / "ssh_config"),
            cwd=self.base,
            timeout=300,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def plan(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("plan", "failover.yml", "-i", "inventory.ini", "-e", f"pg={FAKEPG}", *args)


@pytest.fixture
def cluster(tmp_path: Path, fleet: Fleet, sudo: None) -> Cluster:
    return Cluster(tmp_path, fleet)


def step_text(text: str, step: str) -> str:
    """One step's block of the text plan."""
    start = text.index(f"] {step}    ")
    end = text.find("\n\n", start)
    return text[start : end if end >= 0 else None]


def test_the_plan_shows_what_it_knows_and_the_condition_per_host(cluster: Cluster) -> None:
    proc = cluster.plan()  # no --check: nothing is contacted
    assert proc.returncode == 0, proc.stderr
    repoint = step_text(proc.stdout, "Repoint the other replicas")
    assert f"{FAKEPG} repoint {{{{ winner.stdout }}}}" in repoint
    assert "when: role.stdout == 'replica' and 'pg2' != winner.stdout (decided at apply)" in repoint
    assert cluster.log() == [] and not journal_dirs(cluster.base)


def test_check_shows_exactly_who_is_fenced_promoted_and_repointed(cluster: Cluster) -> None:
    before = cluster.roles()
    proc = cluster.plan("--check")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    fence = step_text(text, "Fence the old primary")
    assert f"pg1      $ {FAKEPG} fence" in fence
    assert "pg[2:3]  (skipped: when: role.stdout == 'primary')" in fence
    promote = step_text(text, "Promote the new primary")
    assert f"pg3      $ {FAKEPG} promote" in promote
    assert "pg[1:2]  (skipped: when: host.name == winner.stdout)" in promote
    repoint = step_text(text, "Repoint the other replicas")
    assert f"pg2       $ {FAKEPG} repoint pg3" in repoint
    assert "{{" not in repoint and "(discovered)" in repoint
    assert "found: 'primary'" in step_text(text, "Find the primary")
    assert "found: '95'" in step_text(text, "Read the replay position")  # as root (become)
    # Read-only: nothing changed on any host; the discovery is journaled as one.
    assert cluster.roles() == before and cluster.log() == []
    (run_dir,) = journal_dirs(cluster.base)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert (meta["kind"], meta["for"]) == ("discovery", "plan --check")
    assert f"checked: discovery run {run_dir.name} (7 read-only commands)" in text

    data = json.loads(cluster.plan("--check", "--format", "json").stdout)
    shown = {(c["step"], c["host"]): c for c in data["check"]["commands"]}
    assert shown[("Repoint the other replicas", "pg2")]["cmd"] == f"{FAKEPG} repoint pg3"
    assert shown[("Fence the old primary", "pg2")]["skipped"] == "when: role.stdout == 'primary'"
    schema = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    jsonschema.validate(data, schema)


def test_apply_of_a_checked_plan_refuses_when_the_primary_moved(cluster: Cluster) -> None:
    saved = cluster.plan("--check", "--out", "plan.json")
    assert saved.returncode == 0, saved.stderr
    stored = json.loads((cluster.base / "plan.json").read_text())["discovery"]["values"]
    assert stored[0]["hosts"]["pg1"] == {"status": "ok", "rc": 0, "stdout": "primary", "stderr": ""}

    cluster.set(primary="pg2", lsn={"pg1": 100, "pg2": 110, "pg3": 95})  # someone failed over
    proc = cluster.run("apply", "--yes", "plan.json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert (
        lines[0] == "stale plan: pg1 'Find the primary' printed 'replica', the plan has 'primary'"
    )
    assert "stale plan: pg2 'Find the primary' printed 'primary', the plan has 'replica'" in lines
    assert "stale plan: pg[1:3] 'Choose the new primary' printed 'pg1', the plan has 'pg3'" in lines
    assert lines[-1].startswith("nothing ran but the discover steps (run ")
    assert proc.stdout == ""
    # Nothing but the discover steps ran: no fence, no promote, no repoint.
    assert cluster.log() == []
    assert cluster.roles() == {"pg1": "replica", "pg2": "primary", "pg3": "replica"}
    kinds = [
        json.loads((d / "meta.json").read_text()).get("kind") for d in journal_dirs(cluster.base)
    ]
    assert kinds == ["discovery", "discovery"]  # plan --check's, then apply's: no other run


def test_apply_of_a_checked_plan_runs_on_the_values_it_compared(cluster: Cluster) -> None:
    assert cluster.plan("--check", "--out", "plan.json").returncode == 0
    proc = cluster.run("apply", "--yes", "--output", "json", "plan.json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert cluster.log() == ["fence pg1", "promote pg3", "repoint-pg3 pg2"]
    evs = events(proc.stdout)
    started = evs[0]
    discovery_run = json.loads(
        (cluster.base / ".runbook" / "runs" / started["run_id"] / "meta.json").read_text()
    )["discovery_run"]
    found = {(e["step"], e["host"]): e for e in evs if e["event"] == "command_finished"}
    # The discover steps are the discovery's: not run again between the check and use.
    assert found[("Find the primary", "pg1")]["error"] == f"already ok in run {discovery_run}"
    assert found[("Find the primary", "pg1")]["attempts"] == 0


def approver_keys(base: Path, names: list[str]) -> Path:
    """Keys made by ssh-keygen; an allowed_signers file (git's format) for them."""
    lines = []
    for name in names:
        key = base / f"{name}_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
            check=True,
        )
        public = (base / f"{name}_key.pub").read_text().split()
        lines.append(f"{name}@example.com {public[0]} {public[1]}\n")
    allowed = base / "allowed_signers"
    allowed.write_text("".join(lines))
    return allowed


def test_two_approvals_then_apply_and_a_one_byte_change_breaks_both(cluster: Cluster) -> None:
    base = cluster.base
    allowed = approver_keys(base, ["alice", "bob"])
    assert cluster.plan("--check", "--out", "plan.json").returncode == 0
    required = ["--require-approvals", "2", "--allowed-signers", str(allowed)]

    def apply(*extra: str) -> subprocess.CompletedProcess[str]:
        return cluster.run("apply", "--yes", "--output", "json", "plan.json", *required, *extra)

    def approve(who: str) -> None:
        done = runbook("approve", "plan.json", "--key", str(base / f"{who}_key"), cwd=base)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("plan.json: approved with ED25519 SHA256:")

    approve("alice")
    too_few = apply()
    assert too_few.returncode == 2
    assert "not approved: 1 of 2 required approvals" in too_few.stderr
    assert len(journal_dirs(base)) == 1  # the check's discovery: nothing else ran

    approve("bob")
    pristine = (base / "plan.json").read_bytes()
    tampered = pristine.replace(b"fakepg fence", b"fakepg fencf", 1)
    assert len(tampered) == len(pristine) and tampered != pristine
    (base / "plan.json").write_bytes(tampered)
    broken = apply()
    assert broken.returncode == 2
    assert "0 of 2 required approvals" in broken.stderr
    assert broken.stderr.count("does not verify over this plan") == 2
    assert len(journal_dirs(base)) == 1 and cluster.log() == []

    (base / "plan.json").write_bytes(pristine)
    shown = runbook("show", "plan.json", "--allowed-signers", str(allowed), cwd=base)
    assert shown.returncode == 0, shown.stderr
    assert "approvals: 2 distinct principals of" in shown.stdout
    assert "1. alice@example.com  ED25519 SHA256:" in shown.stdout
    assert "2. bob@example.com  ED25519 SHA256:" in shown.stdout
    assert f"pg2       $ {FAKEPG} repoint pg3" in shown.stdout  # the checked view, offline

    done = apply()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert cluster.log() == ["fence pg1", "promote pg3", "repoint-pg3 pg2"]
    evs = events(done.stdout)
    schema = json.loads((ROOT / "schemas" / "events.schema.json").read_text())
    for e in evs:
        jsonschema.validate(e, schema)
    assert [e["event"] for e in evs[:2]] == ["run_started", "plan_approved"]
    approved = evs[1]
    assert [a["principal"] for a in approved["approvers"]] == [
        "alice@example.com",
        "bob@example.com",
    ]
    meta: dict[str, Any] = json.loads(
        (base / ".runbook" / "runs" / approved["run_id"] / "meta.json").read_text()
    )
    assert meta["approvals"]["sha256"] == approved["sha256"]
    story = runbook("show", approved["run_id"], "failover.yml", cwd=base).stdout
    assert "approved by alice@example.com, bob@example.com (2 required)" in story


def test_the_recap_names_the_approvers(tmp_path: Path) -> None:
    """Locally (no hosts needed): a saved plan, one approval, the recap line."""
    (tmp_path / "rb.yml").write_text(
        "name: hello\nsteps:\n  - {name: say, hosts: localhost, run: echo hi}\n"
    )
    allowed = approver_keys(tmp_path, ["carol"])
    assert runbook("plan", "rb.yml", "--out", "p.json", cwd=tmp_path).returncode == 0
    assert runbook("approve", "p.json", "--key", "carol_key", cwd=tmp_path).returncode == 0
    proc = runbook(
        "apply", "--yes", "p.json", "--require-approvals", "1", "--allowed-signers",
        str(allowed), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "approved by carol@example.com (1 required)\n" in proc.stdout
    approved_run = journal_dirs(tmp_path)[-1].name
    unapproved = runbook("apply", "--yes", "p.json", cwd=tmp_path)
    assert unapproved.returncode == 0, unapproved.stderr
    plain_run = next(d.name for d in journal_dirs(tmp_path) if d.name != approved_run)
    required = ["--require-approvals", "1", "--allowed-signers", str(allowed)]
    # A resume under --require-approvals: only of a run started from this approved plan.
    resumed = runbook("apply", "--yes", "p.json", "--resume", approved_run, *required,
                      cwd=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    refused_resume = runbook("apply", "--yes", "p.json", "--resume", plain_run, *required,
                             cwd=tmp_path)  # fmt: skip
    assert refused_resume.returncode == 2
    assert f"run {plain_run} was not started from this approved plan" in refused_resume.stderr
    # A runbook is not a saved plan: approvals are of saved plans only.
    refused = runbook(
        "apply", "--yes", "rb.yml", "--require-approvals", "1", "--allowed-signers",
        str(allowed), cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2 and "is not a saved plan" in refused.stderr
    alone = runbook("apply", "--yes", "p.json", "--require-approvals", "1", cwd=tmp_path)
    assert alone.returncode == 2 and "needs --allowed-signers" in alone.stderr


def test_a_failed_discovery_is_exit_1_and_saves_nothing(cluster: Cluster) -> None:
    (cluster.nodes / "pg3" / "lsn").unlink()  # the position cannot be read on pg3
    proc = cluster.plan("--check", "--out", "plan.json")
    assert proc.returncode == 1, proc.stderr
    assert "plan NOT saved to plan.json: a discover step failed" in proc.stderr
    assert not (cluster.base / "plan.json").exists()
    assert "pg3 'Read the replay position': failed (exit code 1)" in proc.stdout
    assert cluster.log() == []
