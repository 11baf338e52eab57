"""Values, checks and loops as an operator meets them on the command line (issue 22):
a loop's failing item and ``--resume`` at it, a failed ``assert``, the recap."""

from __future__ import annotations

import textwrap
from pathlib import Path

from runbook.cli.recap import _recap, recap_text
from runbook.model.command import CommandResult, Status
from runbook.run.runner import RunResult
from tests.e2e.helpers import events, runbook


def write_runbook(tmp_path: Path, steps: str) -> Path:
    text = f"""
    name: values on the command line
    vars: {{dir: "{tmp_path}"}}
    steps:
    """
    path = tmp_path / "rb.yml"
    path.write_text(textwrap.dedent(text).lstrip() + textwrap.indent(textwrap.dedent(steps), "  "))
    return path


LOOP = """
- name: create
  hosts: localhost
  loop: [app, billing, audit]
  run: "[ ! -e {{ dir }}/fail-{{ item }} ] && echo {{ item }} >> {{ dir }}/created"
  register: created
- name: report
  hosts: localhost
  run: "echo {{ created.results | map(attribute='item') | join(',') }} {{ created.status }}"
"""


def test_a_loop_stops_at_its_failing_item_and_resume_goes_on_from_it(tmp_path):
    path = write_runbook(tmp_path, LOOP)
    (tmp_path / "fail-billing").touch()
    first = runbook("apply", "--yes", str(path), cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert (tmp_path / "created").read_text() == "app\n"
    assert "FAILED      localhost item 2  rc=1 (exit code 1)" in first.stdout
    run_id = next(
        line.split()[1].rstrip(":") for line in first.stdout.splitlines() if line.startswith("run ")
    )
    (tmp_path / "fail-billing").unlink()
    resumed = runbook(
        "apply", "--yes", "--output", "json", "--resume", run_id, str(path), cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # app ran once, in the first run; billing and audit now.
    assert (tmp_path / "created").read_text() == "app\nbilling\naudit\n"
    evs = events(resumed.stdout)
    items = [
        (e["item"], e["status"], e["attempts"])
        for e in evs
        if e["event"] == "command_finished" and e["step"] == "create"
    ]
    assert items == [(0, "ok", 0), (1, "ok", 1), (2, "ok", 1)]
    report = next(e for e in evs if e["event"] == "command_finished" and e["step"] == "report")
    assert report["stdout"] == "app,billing,audit ok\n"
    show = runbook("show", "--step", "create", run_id, str(path), cwd=tmp_path)
    assert "== create @ localhost item 2: failed rc=1" in show.stdout
    assert "== create @ localhost item 3: skipped" in show.stdout


def test_a_failed_assert_fails_the_host_with_its_message_and_runs_nothing_after(tmp_path):
    path = write_runbook(
        tmp_path,
        """
        - {name: count, hosts: localhost, run: "ls {{ dir }} | wc -l", register: files}
        - name: enough
          hosts: localhost
          assert:
            that: ["files.stdout | int > 5"]
            message: "only {{ files.stdout }} files in {{ dir }}"
        - {name: after, hosts: localhost, run: "touch {{ dir }}/after"}
        """,
    )
    done = runbook("apply", "--yes", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert f"FAILED      localhost  (only 1 files in {tmp_path})" in done.stdout
    assert not (tmp_path / "after").exists()


def test_the_recap_lists_changed_hosts_sorted_not_in_run_order():
    result = RunResult("r1", finished=1.0)
    for host in ("web2", "db10", "app"):  # as the copies happened to finish
        result.results.append(CommandResult("copy", host, Status.OK, changed=True))
    assert "changed: app, db10, web2\n" in recap_text(_recap(result, None))
