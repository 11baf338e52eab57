"""rescue, always and resume through the CLI, on local hosts (SPEC section 10): what an
operator sees in the events, the journal, the recap and ``--resume``."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from tests.e2e.helpers import events, finished, journal_dirs, journal_events, runbook, write

ROOT = Path(__file__).resolve().parents[2]

RUNBOOK = """\
name: flow
hosts:
  nodes:
    hosts:
      n1: {connection: local}
      n2: {connection: local}
steps:
  - name: roll
    hosts: nodes
    steps:
      - name: work
        run: "[ {{ host.name }} != n2 ] || { echo broken >&2; exit 4; }"
    rescue:
      - name: undo
        run: echo "undo {{ host.name }} after {{ failed_step }} rc={{ failed_result.rc }}" >> log
    always:
      - name: tidy
        run: echo "tidy {{ host.name }}" >> log
  - name: gate
    hosts: n1
    run: test -e fixed
  - name: last
    hosts: nodes
    run: echo "last {{ host.name }}" >> log
always:
  - name: finally
    local: true
    run: echo finally >> log
"""


def lines(tmp: Path) -> list[str]:
    return (tmp / "log").read_text().splitlines()


def test_rescue_always_and_resume_through_the_cli(tmp_path: Path) -> None:
    rb = write(tmp_path / "rb.yml", RUNBOOK)
    first = runbook("apply", "--yes", "--output", "json", str(rb), cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr  # the gate halts the run ...
    # ... after the rescue (n2 only) and the group's always (both), then the runbook's always.
    log = lines(tmp_path)
    assert log[0] == "undo n2 after work rc=4"
    assert sorted(log[1:3]) == ["tidy n1", "tidy n2"] and log[3:] == ["finally"]
    evs = events(first.stdout)
    schema = json.loads((ROOT / "schemas" / "events.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for e in evs:
        assert not list(validator.iter_errors(e)), e
    results = {(e["step"], e["host"]): e for e in finished(first.stdout)}
    assert results[("work", "n2")]["status"] == "rescued"  # the later event replaces it
    assert evs[-1]["counts"]["rescued"] == 1 and evs[-1]["counts"]["failed"] == 1  # the gate
    run_id = evs[0]["run_id"]

    # show and the recap of the journaled run say rescued too.
    shown = runbook("show", run_id, str(rb), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "work: 1 ok, 1 rescued" in shown.stdout

    (tmp_path / "fixed").touch()
    (tmp_path / "log").unlink()
    again = runbook("apply", "--yes", "--resume", run_id, str(rb), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    # n2 stays rescued: not run again, nor its rescue; the rest runs, then always again.
    log = lines(tmp_path)
    assert sorted(log[:2]) == ["last n1", "last n2"] and log[2:] == ["finally"]
    assert len(journal_dirs(tmp_path)) == 2


def test_a_delegated_command_says_where_it_runs_in_the_events_and_the_journal(
    tmp_path: Path,
) -> None:
    """``command_started`` names the delegate a command runs on; ``host`` (and the
    result's) stays the target."""
    rb = write(
        tmp_path / "rb.yml",
        "name: delegated\nhosts:\n  nodes:\n    hosts:\n"
        "      n1: {connection: local}\n      n2: {connection: local}\n"
        "steps:\n  - name: drain\n    hosts: nodes\n    delegate_to: controller\n"
        "    run: echo drain {{ host.name }}\n"
        "  - name: patch\n    hosts: nodes\n    run: echo patch\n",
    )
    done = runbook("apply", "--yes", "--output", "json", str(rb), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    schema = json.loads((ROOT / "schemas" / "events.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    (run_dir,) = journal_dirs(tmp_path)
    for evs in (events(done.stdout), journal_events(run_dir)):
        assert not [err.message for e in evs for err in validator.iter_errors(e)]
        started = {
            (e["step"], e["host"]): e.get("delegate")
            for e in evs
            if e["event"] == "command_started"
        }
        assert started == {
            ("drain", "n1"): "localhost",
            ("drain", "n2"): "localhost",
            ("patch", "n1"): None,
            ("patch", "n2"): None,
        }
        results = {
            (e["step"], e["host"]): e["stdout"] for e in evs if e["event"] == "command_finished"
        }
        assert results[("drain", "n2")] == "drain n2\n"
