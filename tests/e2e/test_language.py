"""The runbook language end to end through the CLI: inventories, patterns, batches,
retries, conditions, placement, selection, privilege (SPEC §2-3)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.helpers import events, finished, runbook, write

FOUR_LOCAL = """\
hosts:
  web:
    hosts:
      w1: {connection: local}
      w2: {connection: local}
  db:
    hosts:
      d1: {connection: local}
      d2: {connection: local}
"""


def test_ansible_ini_inventory_with_group_vars_and_patterns(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "segments.yml").write_text("seg_port: 6000\n")
    write(
        tmp_path / "hosts.ini",
        """\
[coordinator]
cdw ansible_connection=local

[segments]
sdw[1:4] ansible_connection=local

[cluster:children]
coordinator
segments
""",
    )
    rb = write(
        tmp_path / "rb.yml",
        """\
name: patterns
inventory: hosts.ini
steps:
  - name: union
    hosts: coordinator:segments
    run: echo {{ host.name }}
  - name: intersection
    hosts: "cluster:&segments:!sdw2"
    run: echo {{ seg_port }}
  - name: glob
    hosts: sdw[3:4]
    run: "true"
""",
    )
    proc = runbook("apply", str(rb), "--yes", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    by_step: dict[str, list[str]] = {}
    for e in finished(proc.stdout):
        by_step.setdefault(e["step"], []).append(e["host"])
        if e["step"] == "intersection":
            assert e["stdout"] == "6000\n"
    assert sorted(by_step["union"]) == ["cdw", "sdw1", "sdw2", "sdw3", "sdw4"]
    assert sorted(by_step["intersection"]) == ["sdw1", "sdw3", "sdw4"]
    assert sorted(by_step["glob"]) == ["sdw3", "sdw4"]

    inv = runbook("inventory", str(tmp_path / "hosts.ini"), "--format", "json")
    assert inv.returncode == 0, inv.stderr
    data = json.loads(inv.stdout)
    assert data["groups"]["cluster"] == ["cdw", "sdw1", "sdw2", "sdw3", "sdw4"]
    assert data["hosts"]["sdw2"]["vars"]["seg_port"] == 6000
    assert data["hosts"]["cdw"]["connection"] == "local"
    limited = runbook("apply", str(rb), "--yes", "--output", "json", "--limit", "sdw1")
    assert {e["host"] for e in finished(limited.stdout)} == {"sdw1"}


def test_serial_batches_halt_before_the_next_batch(tmp_path: Path) -> None:
    log = tmp_path / "log"
    rb = write(
        tmp_path / "rb.yml",
        "name: batches\n"
        + FOUR_LOCAL
        + f"""\
steps:
  - name: rolling
    hosts: all
    serial: [1, "50%"]
    run: echo {{{{ host.name }}}} >> {log}; test {{{{ host.name }}}} != w2
""",
    )
    proc = runbook("apply", str(rb), "--yes", "--output", "json")
    assert proc.returncode == 1
    evs = events(proc.stdout)
    batches = [e["hosts"] for e in evs if e["event"] == "batch_started"]
    # Batch sizes 1, then 50% of 4 = 2: [w1], [w2, d1] — the third batch never starts.
    assert batches == [["w1"], ["w2", "d1"]]
    assert sorted(log.read_text().split()) == ["d1", "w1", "w2"]
    statuses = {e["host"]: e["status"] for e in finished(proc.stdout)}
    assert statuses == {"w1": "ok", "w2": "failed", "d1": "ok", "d2": "cancelled"}


def test_max_failures_percentage_tolerates_then_halts(tmp_path: Path) -> None:
    rb = write(
        tmp_path / "rb.yml",
        "name: maxfail\n"
        + FOUR_LOCAL
        + """\
steps:
  - name: flaky
    hosts: all
    max_failures: "25%"
    run: case {{ host.name }} in {{ bad }}) false;; esac
  - name: after
    hosts: all
    run: "true"
""",
    )
    one_bad = runbook("apply", str(rb), "--yes", "--output", "json", "-e", "bad=w1")
    assert one_bad.returncode == 0, one_bad.stdout
    assert events(one_bad.stdout)[-1]["counts"]["failed"] == 1
    # Two failures exceed 25% of 4 hosts (= 1 tolerated): the run halts.
    two_bad = runbook("apply", str(rb), "--yes", "--output", "json", "-e", "bad=w1|d2")
    assert two_bad.returncode == 1
    assert events(two_bad.stdout)[-1]["steps_not_run"] == ["after"]


def test_retries_until_and_attempts_are_recorded(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: retries
hosts:
  local: [localhost]
steps:
  - name: eventually ready
    hosts: local
    retries: 5
    delay: 0.1
    run: echo x >> {counter}; wc -l < {counter}
    until: stdout.strip() == "3"
""",
    )
    proc = runbook("apply", str(rb), "--yes", "--output", "json")
    assert proc.returncode == 0, proc.stdout
    (result,) = finished(proc.stdout)
    assert result["attempts"] == 3 and result["status"] == "ok"
    assert counter.read_text().count("x") == 3


def test_when_run_once_local_and_tags(tmp_path: Path) -> None:
    rb = write(
        tmp_path / "rb.yml",
        "name: placement\n"
        + FOUR_LOCAL
        + """\
steps:
  - name: only web
    hosts: all
    when: "'web' in host.groups"
    run: "true"
  - name: once
    hosts: db
    run_once: true
    run: "true"
  - name: on the controller
    local: true
    run: echo {{ groups['db'] | join(',') }}
  - name: tagged
    hosts: all
    tags: [slow]
    run: "true"
""",
    )
    plan = runbook("plan", str(rb))
    assert "(skipped: when: 'web' in host.groups)" in plan.stdout
    proc = runbook("apply", str(rb), "--yes", "--output", "json", "--skip-tags", "slow")
    assert proc.returncode == 0
    got = {(e["step"], e["host"], e["status"]) for e in finished(proc.stdout)}
    assert got == {
        ("only web", "w1", "ok"),
        ("only web", "w2", "ok"),
        ("only web", "d1", "skipped"),
        ("only web", "d2", "skipped"),
        ("once", "d1", "ok"),
        ("on the controller", "localhost", "ok"),
    }
    local = [e for e in finished(proc.stdout) if e["step"] == "on the controller"][0]
    assert local["stdout"] == "d1,d2\n"
    tagged = runbook("apply", str(rb), "--yes", "--output", "json", "--tags", "slow")
    assert {e["step"] for e in finished(tagged.stdout)} == {"tagged"}
    start = runbook("apply", str(rb), "--yes", "--output", "json", "--start-at", "once")
    assert [s for s in events(start.stdout)[0]["steps"]] == ["once", "on the controller", "tagged"]


def test_extra_vars_from_file_and_scalars(tmp_path: Path) -> None:
    vars_file = write(tmp_path / "extra.yml", "who: from-file\ncount: 2\n")
    rb = write(
        tmp_path / "rb.yml",
        """\
name: extra
hosts:
  local: [localhost]
vars: {who: runbook, count: 1, flag: false}
steps:
  - name: show
    hosts: local
    run: echo {{ who }} {{ count + 1 }} {{ flag }}
""",
    )
    proc = runbook(
        "apply", str(rb), "--yes", "--output", "json", "-e", f"@{vars_file}", "-e", "flag=true"
    )
    (r,) = finished(proc.stdout)
    assert r["stdout"] == "from-file 3 True\n"


def test_confirm_without_yes_and_without_terminal_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: confirm
hosts:
  local: [localhost]
steps:
  - name: dangerous
    hosts: local
    confirm: Really?
    run: touch {marker}
""",
    )
    proc = runbook("apply", str(rb))
    assert proc.returncode == 2 and "--yes" in proc.stderr
    assert not marker.exists()
    assert runbook("apply", str(rb), "--yes").returncode == 0
    assert marker.exists()


@pytest.mark.skipif(
    shutil.which("sudo") is None and not os.environ.get("CI"),
    reason="sudo is not installed (CI installs it)",
)
def test_become_user_runs_under_sudo(tmp_path: Path) -> None:
    rb = write(
        tmp_path / "rb.yml",
        """\
name: become
hosts:
  local: [localhost]
env: {GREETING: "hi there; $HOME"}
steps:
  - name: as nobody
    hosts: local
    become: true
    become_user: nobody
    run: id -un; printf '%s' "$GREETING"
""",
    )
    proc = runbook("apply", str(rb), "--yes", "--output", "json")
    (r,) = finished(proc.stdout)
    assert r["status"] == "ok", r
    assert r["stdout"] == "nobody\nhi there; $HOME"


def test_until_reads_runbook_vars(tmp_path: Path) -> None:
    rb = write(
        tmp_path / "rb.yml",
        """\
name: until vars
hosts:
  local: [localhost]
vars: {wanted: ready}
steps:
  - name: wait
    hosts: local
    retries: 2
    delay: 0
    run: echo ready
    until: wanted in stdout
""",
    )
    proc = runbook("apply", str(rb), "--yes", "--output", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (r,) = finished(proc.stdout)
    assert r["status"] == "ok" and r["attempts"] == 1
