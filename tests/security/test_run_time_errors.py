"""An expression that fails only at run time fails that command, never the run's input
check (SPEC §5, §6; issue 12 item 9): exit 2 means "nothing ran", and here something has.

``until`` is judged on each attempt's output, and a template that reads a registered value
is rendered just before its command: both can only fail once the run is under way. The
command is ``failed`` with the reason, the failure policy applies, the run goes on.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.helpers import finished, runbook, write

RUNBOOK = """\
name: run-time errors
hosts:
  local: [localhost]
vars:
  users: {alice: admin}
steps:
  - name: until divides by zero
    hosts: local
    on_failure: continue
    retries: 1
    run: echo 0
    until: (1 / (stdout | int)) > 0
  - name: until reads a missing key
    hosts: local
    on_failure: continue
    run: echo bob
    until: users[stdout.strip()] == 'admin'
  - name: who
    hosts: local
    run: echo bob
    register: who
  - name: deferred lookup
    hosts: local
    on_failure: continue
    run: echo {{ users[who.stdout.strip()] }}
  - name: after
    hosts: local
    run: touch {marker}
"""


def test_expressions_that_fail_at_run_time_fail_their_command_only(tmp_path: Path) -> None:
    marker = tmp_path / "after"
    rb = write(tmp_path / "rb.yml", RUNBOOK.replace("{marker}", str(marker)))
    proc = runbook("apply", "--yes", "--output", "json", str(rb), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # failures tolerated: continue
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    results = {e["step"]: e for e in finished(proc.stdout)}
    divide = results["until divides by zero"]
    assert divide["status"] == "failed" and divide["rc"] == 0, divide
    assert divide["attempts"] == 2, divide  # retried, as a failed until is
    assert "until: expression error: ZeroDivisionError" in divide["error"], divide
    missing = results["until reads a missing key"]
    assert missing["status"] == "failed" and "until:" in missing["error"], missing
    assert "bob" in missing["error"], missing
    deferred = results["deferred lookup"]
    assert deferred["status"] == "failed" and deferred["rc"] is None, deferred
    assert "rb.yml:25:" in deferred["error"] and "bob" in deferred["error"], deferred
    assert results["after"]["status"] == "ok" and marker.exists()


def test_with_halt_a_run_time_error_halts_with_exit_1(tmp_path: Path) -> None:
    marker = tmp_path / "after"
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: halt
hosts:
  local: [localhost]
steps:
  - name: until raises
    hosts: local
    run: echo 0
    until: (1 / (stdout | int)) > 0
  - name: after
    hosts: local
    run: touch {marker}
""",
    )
    proc = runbook("apply", "--yes", str(rb), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ZeroDivisionError" in proc.stdout and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_an_until_error_names_its_file_line_step_and_host(tmp_path: Path) -> None:
    """Issue 24: ``until: list object has no element 5`` said neither where nor which;
    a saved plan keeps the position too."""
    rb = write(
        tmp_path / "rb.yml",
        """\
name: where
hosts:
  local: [localhost]
steps:
  - name: wait
    hosts: local
    run: echo a b
    until: stdout.split()[5] == "x"
""",
    )
    want = "rb.yml:8:5: step 'wait': host 'localhost': until: list object has no element 5"
    proc = runbook("apply", "--yes", "--output", "json", str(rb), cwd=tmp_path)
    (result,) = finished(proc.stdout)
    assert result["status"] == "failed" and want in result["error"], result
    saved = tmp_path / "plan.json"
    assert runbook("plan", "--out", str(saved), str(rb), cwd=tmp_path).returncode == 0
    proc = runbook("apply", "--yes", "--output", "json", str(saved), cwd=tmp_path)
    (result,) = finished(proc.stdout)
    assert want in result["error"], result
