"""Runs an operator can trust: events, journal, resume, saved plans, Ctrl-C (SPEC §3-4)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import jsonschema

from tests.e2e.helpers import (
    events,
    journal_dirs,
    journal_events,
    runbook,
    start,
    wait_for,
    write,
)

ROOT = Path(__file__).resolve().parents[2]

THREE_HOSTS = """\
hosts:
  nodes:
    hosts:
      n1: {connection: local}
      n2: {connection: local}
      n3: {connection: local}
"""


def side_effects(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def started(tmp: Path, step: str, host: str) -> bool:
    runs = journal_dirs(tmp)
    if not runs:
        return False
    return any(
        e["event"] == "command_started" and e["step"] == step and e["host"] == host
        for e in journal_events(runs[-1])
    )


def test_event_stream_validates_against_the_shipped_schema(tmp_path: Path) -> None:
    rb = write(
        tmp_path / "rb.yml",
        "name: events\n"
        + THREE_HOSTS
        + """\
steps:
  - name: batched
    hosts: nodes
    serial: 2
    run: echo {{ host.name }}
  - name: tolerated
    hosts: nodes
    on_failure: continue
    run: test {{ host.name }} != n2
""",
    )
    proc = runbook("apply", str(rb), "--yes", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    schema = json.loads((ROOT / "schemas" / "events.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    evs = events(proc.stdout)
    for e in evs:
        errors = [err.message for err in validator.iter_errors(e)]
        assert not errors, (e, errors)
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("batch_started") == 2
    assert kinds.count("command_finished") == 6
    finished = [e for e in evs if e["event"] == "command_finished"]
    assert {(e["step"], e["host"], e["status"]) for e in finished if e["status"] != "ok"} == {
        ("tolerated", "n2", "failed")
    }
    assert evs[-1]["counts"]["failed"] == 1 and evs[-1]["exit_code"] == 0


def test_sigkill_mid_step_loses_nothing_and_resume_finishes_the_job(tmp_path: Path) -> None:
    log, flag = tmp_path / "log", tmp_path / "n3-may-finish"
    rb = write(
        tmp_path / "rb.yml",
        "name: crash\n"
        + THREE_HOSTS
        + f"""\
steps:
  - name: one
    hosts: nodes
    run: echo one-{{{{ host.name }}}} >> {log}
  - name: two
    hosts: nodes
    run: |
      if [ {{{{ host.name }}}} = n3 ] && [ ! -e {flag} ]; then sleep 1000.4242; fi
      echo two-{{{{ host.name }}}} >> {log}
  - name: three
    hosts: nodes
    run: echo three-{{{{ host.name }}}} >> {log}
""",
    )
    proc = start("apply", str(rb), "--yes", cwd=tmp_path)
    try:
        wait_for(
            lambda: (
                side_effects(log)["two-n1"]
                and side_effects(log)["two-n2"]
                and started(tmp_path, "two", "n3")
            ),
            what="n1, n2 done with step two",
        )
        # Wait for the journal too: results are flushed as they arrive.
        run_dir = journal_dirs(tmp_path)[-1]
        wait_for(
            lambda: (
                sum(
                    e["event"] == "command_finished" and e["step"] == "two"
                    for e in journal_events(run_dir)
                )
                == 2
            ),
            what="journal",
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        subprocess.run(["pkill", "-f", "sleep 1000.4242"], check=False)
    evs = journal_events(run_dir)
    ok = {
        (e["step"], e["host"])
        for e in evs
        if e["event"] == "command_finished" and e["status"] == "ok"
    }
    assert ok == {("one", "n1"), ("one", "n2"), ("one", "n3"), ("two", "n1"), ("two", "n2")}
    assert not any(e["event"] == "run_finished" for e in evs)

    flag.touch()
    # n3's step two started and has no result: its outcome is unknown, so a plain resume
    # refuses (exit 2, nothing run) and names it; --rerun-unknown runs it again.
    refused = runbook("apply", str(rb), "--yes", "--resume", run_dir.name, cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "step 'two' on host 'n3'" in refused.stderr and "--rerun-unknown" in refused.stderr
    assert side_effects(log)["three-n1"] == 0
    resumed = runbook(
        "apply", str(rb), "--yes", "--resume", run_dir.name, "--rerun-unknown", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # Every (step, host) side effect happened exactly once across both runs.
    assert side_effects(log) == Counter(
        f"{s}-{h}" for s in ("one", "two", "three") for h in ("n1", "n2", "n3")
    )
    shown = runbook("runs", str(rb))
    assert run_dir.name in shown.stdout and "incomplete" in shown.stdout
    assert f"resumes {run_dir.name}" in shown.stdout


def _interrupted_run(tmp_path: Path, signals: int) -> tuple[subprocess.CompletedProcess, Path]:
    log = tmp_path / "log"
    rb = write(
        tmp_path / "rb.yml",
        "name: interrupt\n"
        + THREE_HOSTS
        + f"""\
steps:
  - name: one
    hosts: nodes
    run: echo one-{{{{ host.name }}}} >> {log}
  - name: two
    hosts: nodes
    run: sleep 3.0{signals}7 && echo two-{{{{ host.name }}}} >> {log}
  - name: three
    hosts: nodes
    run: echo three-{{{{ host.name }}}} >> {log}
""",
    )
    proc = start("apply", str(rb), "--yes", cwd=tmp_path)
    wait_for(
        lambda: all(started(tmp_path, "two", h) for h in ("n1", "n2", "n3")),
        what="step two in flight",
    )
    for _ in range(signals):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # two signals sent at once would coalesce into one
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), log


def test_first_sigint_halts_but_lets_in_flight_commands_finish(tmp_path: Path) -> None:
    proc, log = _interrupted_run(tmp_path, signals=1)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    effects = side_effects(log)
    assert all(effects[f"two-{h}"] == 1 for h in ("n1", "n2", "n3"))
    assert not any(k.startswith("three") for k in effects)
    assert "steps not run (halted): three" in proc.stdout
    last = journal_events(journal_dirs(tmp_path)[-1])[-1]
    assert last["event"] == "run_finished" and last["status"] == "interrupted"
    assert last["counts"]["cancelled"] == 3


def test_second_sigint_kills_in_flight_commands(tmp_path: Path) -> None:
    proc, log = _interrupted_run(tmp_path, signals=2)
    assert proc.returncode == 130
    assert not any(k.startswith("two") for k in side_effects(log))
    evs = journal_events(journal_dirs(tmp_path)[-1])
    two = [e for e in evs if e["event"] == "command_finished" and e["step"] == "two"]
    assert len(two) == 3 and all(e["status"] == "failed" and "killed" in e["error"] for e in two)
    assert subprocess.run(["pgrep", "-f", "sleep 3.027"], capture_output=True).returncode == 1


def test_interrupted_run_resumed_ends_all_ok_without_repeats(tmp_path: Path) -> None:
    proc, log = _interrupted_run(tmp_path, signals=2)
    assert proc.returncode == 130
    first = journal_dirs(tmp_path)[-1].name
    resumed = runbook("apply", str(tmp_path / "rb.yml"), "--yes", "--resume", first, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout
    assert side_effects(log) == Counter(
        f"{s}-{h}" for s in ("one", "two", "three") for h in ("n1", "n2", "n3")
    )
    second = [d for d in journal_dirs(tmp_path) if d.name != first][0]
    last = journal_events(second)[-1]
    assert last["counts"]["ok"] == 9 and last["status"] == "completed"
    story = runbook("show", first, str(tmp_path / "rb.yml"))
    assert "two: 3 failed" in story.stdout and "three: 3 cancelled" in story.stdout
    story2 = runbook("show", second.name, str(tmp_path / "rb.yml"))
    assert f"resumes {first}" in story2.stdout and "three: 3 ok" in story2.stdout


def test_resume_refuses_a_changed_runbook_unless_forced(tmp_path: Path) -> None:
    rb = write(
        tmp_path / "rb.yml",
        "name: r\n"
        + THREE_HOSTS
        + """\
steps:
  - name: one
    hosts: nodes
    run: test {{ host.name }} != n2
""",
    )
    assert runbook("apply", str(rb), "--yes").returncode == 1
    run_id = journal_dirs(tmp_path)[-1].name
    rb.write_text(rb.read_text() + "  - name: two\n    run: echo two\n")
    refused = runbook("apply", str(rb), "--yes", "--resume", run_id)
    assert refused.returncode == 2 and "changed since run" in refused.stderr
    assert len(journal_dirs(tmp_path)) == 1
    forced = runbook("apply", str(rb), "--yes", "--resume", run_id, "--force")
    # The journaled plan runs (one step, n2 fails again), not the edited runbook.
    assert forced.returncode == 1
    evs = journal_events(journal_dirs(tmp_path)[-1])
    assert {e["step"] for e in evs if e["event"] == "command_finished"} == {"one"}


def test_saved_plan_runs_the_saved_commands_after_the_runbook_changed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: saved
hosts:
  local: [localhost]
vars: {{word: reviewed}}
steps:
  - name: write
    hosts: local
    run: echo {{{{ word }}}} > {out}
""",
    )
    plan_file = tmp_path / "plan.json"
    assert runbook("plan", str(rb), "--out", str(plan_file)).returncode == 0
    saved = json.loads(plan_file.read_text())
    assert saved["digest"].startswith("sha256:") and saved["created"]
    rb.write_text(rb.read_text().replace("reviewed", "edited"))
    proc = runbook("apply", str(plan_file), "--yes", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_text() == "reviewed\n"


def test_saved_plan_stores_no_secret_and_rereads_it_at_apply(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: saved-secret
hosts:
  local: [localhost]
secrets:
  token: {{env: TEST_TOKEN}}
steps:
  - name: use
    hosts: local
    run: printf '%s' {{{{ token | quote }}}} > {out}
""",
    )
    plan_file = tmp_path / "plan.json"
    secret = "tok en'with$quote"
    assert (
        runbook("plan", str(rb), "--out", str(plan_file), env={"TEST_TOKEN": secret}).returncode
        == 0
    )
    assert "tok en" not in plan_file.read_text() and "en'" not in plan_file.read_text()
    missing = runbook("apply", str(plan_file), "--yes")
    assert missing.returncode == 2 and "TEST_TOKEN" in missing.stderr
    assert not out.exists()
    proc = runbook("apply", str(plan_file), "--yes", env={"TEST_TOKEN": secret})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_text() == secret


def test_show_prints_one_commands_full_output(tmp_path: Path) -> None:
    rb = write(
        tmp_path / "rb.yml",
        """\
name: show
hosts:
  local: [localhost]
steps:
  - name: talk
    hosts: local
    run: seq 1 100; echo to-stderr >&2
""",
    )
    assert runbook("apply", str(rb), "--yes").returncode == 0
    run_id = journal_dirs(tmp_path)[-1].name
    shown = runbook("show", run_id, str(rb), "--host", "localhost", "--step", "talk")
    assert shown.returncode == 0
    assert "\n".join(str(i) for i in range(1, 101)) in shown.stdout
    assert "to-stderr" in shown.stdout


def test_unwritable_journal_is_an_input_error_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: j
hosts:
  local: [localhost]
steps:
  - name: one
    hosts: local
    run: touch {marker}
""",
    )
    proc = runbook("apply", str(rb), "--yes", "--journal", str(blocker / "runs"))
    assert proc.returncode == 2
    assert "journal" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_a_damaged_saved_plan_is_an_input_error(tmp_path: Path) -> None:
    damaged = write(tmp_path / "plan.json", json.dumps({"format": "runbook-plan", "version": 1}))
    proc = runbook("apply", str(damaged), "--yes")
    assert proc.returncode == 2
    assert "plan.json" in proc.stderr and "Traceback" not in proc.stderr
    assert journal_dirs(tmp_path) == []
