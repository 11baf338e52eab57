"""The journal as written and read back: events, torn lines, unknown outcomes, registers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runbook.errors import JournalError
from runbook.journal.store import Journal, read_run
from runbook.model.command import CommandResult, Status
from runbook.model.events import (
    CommandFinished,
    CommandOutput,
    CommandStarted,
    Registered,
    RunFinished,
    RunStatus,
)
from tests.e2e.helpers import journal_dirs, runbook, write


def _result(step: str, host: str, status: Status, **kw: object) -> CommandResult:
    return CommandResult(step, host, status, **kw)  # type: ignore[arg-type]


def _journal(root: Path) -> Journal:
    return Journal(root, "r1", {"runbook": "x", "digest": "d"}, {"format": "runbook-plan"})


def test_events_are_read_back_typed_and_unknown_outcomes_are_named(tmp_path: Path) -> None:
    j = _journal(tmp_path / "runs")
    j.handle(CommandStarted(run_id="r1", step="s", host="a"))
    j.handle(CommandFinished(run_id="r1", result=_result("s", "a", Status.OK, stdout="out")))
    j.handle(CommandStarted(run_id="r1", step="s", host="b"))  # no result: killed there
    lost = _result("s", "c", Status.UNREACHABLE, maybe_ran=True)
    j.handle(CommandStarted(run_id="r1", step="s", host="c"))
    j.handle(CommandFinished(run_id="r1", result=lost))
    j.handle(CommandOutput(run_id="r1", step="s", host="b", stream="stdout", data="partial"))
    j.handle(Registered(run_id="r1", step="s", name="v", hosts=["a"], value={"stdout": "x"}))
    j.close()
    run = read_run(tmp_path / "runs", "r1")
    assert [r.host for r in run.results()] == ["a", "c"]
    assert run.results()[0].stdout == "out"
    assert run.unknown_outcomes() == [("s", "b"), ("s", "c")]
    assert run.ok_commands() == {("s", "a")}
    assert [(r.name, r.hosts) for r in run.registrations()] == [("v", ["a"])]
    assert run.status == "incomplete"


def test_a_torn_last_line_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    j = _journal(tmp_path / "runs")
    j.handle(CommandFinished(run_id="r1", result=_result("s", "a", Status.OK)))
    j.handle(
        RunFinished(
            run_id="r1",
            status=RunStatus.COMPLETED,
            exit_code=0,
            halted=None,
            counts={},
            duration=1.0,
            steps_not_run=[],
        )
    )
    j.close()
    events = tmp_path / "runs" / "r1" / "events.jsonl"
    events.write_text(events.read_text() + '{"event": "command_fin')  # killed mid-write
    run = read_run(tmp_path / "runs", "r1")
    assert len(run.results()) == 1 and run.status == "completed"


def test_an_event_kind_from_a_newer_version_is_skipped(tmp_path: Path) -> None:
    j = _journal(tmp_path / "runs")
    j.close()
    events = tmp_path / "runs" / "r1" / "events.jsonl"
    events.write_text(json.dumps({"event": "from_the_future", "run_id": "r1", "time": 1}) + "\n")
    assert read_run(tmp_path / "runs", "r1").events == []


def test_a_journal_that_exists_is_never_overwritten(tmp_path: Path) -> None:
    _journal(tmp_path / "runs").close()
    with pytest.raises(JournalError, match="cannot write the run journal"):
        _journal(tmp_path / "runs")


def test_a_rescued_result_replaces_the_failure_it_rescued(tmp_path: Path) -> None:
    j = _journal(tmp_path / "runs")
    j.handle(CommandFinished(run_id="r1", result=_result("s", "a", Status.FAILED, rc=1)))
    j.handle(CommandFinished(run_id="r1", result=_result("fix", "a", Status.OK)))
    j.handle(CommandFinished(run_id="r1", result=_result("s", "a", Status.RESCUED, rc=1)))
    j.close()
    run = read_run(tmp_path / "runs", "r1")
    assert [(r.step, r.status.value) for r in run.results()] == [("fix", "ok"), ("s", "rescued")]
    assert run.rescued_commands() == {("s", "a")}
    assert run.ok_commands() == {("fix", "a")}


def test_loop_items_are_journaled_and_read_back_one_by_one(tmp_path: Path) -> None:
    """A resumed loop goes on at a host's first item not ok; an item that started and
    has no result is an unknown outcome even when an earlier item of it finished."""
    j = _journal(tmp_path / "runs")
    for item, status in ((0, Status.OK), (1, Status.FAILED), (2, Status.SKIPPED)):
        j.handle(CommandStarted(run_id="r1", step="loop", host="a", item=item))
        j.handle(CommandFinished(run_id="r1", result=_result("loop", "a", status, item=item)))
    j.handle(CommandStarted(run_id="r1", step="loop", host="b", item=0))
    j.handle(CommandFinished(run_id="r1", result=_result("loop", "b", Status.OK, item=0)))
    j.handle(CommandStarted(run_id="r1", step="loop", host="b", item=1))  # killed there
    value = {"status": "ok", "results": [{"status": "ok", "item": "x"}]}
    j.handle(Registered(run_id="r1", step="loop", name="r", hosts=["a"], value=value))
    j.handle(Registered(run_id="r1", step="s", name="w", hosts=["a"], value=[1], is_set=True))
    j.close()
    run = read_run(tmp_path / "runs", "r1")
    assert [(r.host, r.item) for r in run.results()] == [("a", 0), ("a", 1), ("a", 2), ("b", 0)]
    assert run.ok_commands() == frozenset()  # a loop's items are not whole commands
    assert run.ok_items() == {("loop", "a", 0), ("loop", "b", 0)}
    assert run.unknown_outcomes() == [("loop", "b")]
    regs = run.registrations()
    assert (regs[0].value, regs[0].is_set) == (value, False)
    assert (regs[1].value, regs[1].is_set) == ([1], True)
    events = (tmp_path / "runs" / "r1" / "events.jsonl").read_text().splitlines()
    assert '"item": 2' in events[5] and '"is_set": true' in events[-1]


# -- one reader for --resume, show and report (issue 26) ------------------------------------

TWO_STEPS = """\
name: two steps
steps:
  - name: a
    hosts: localhost
    run: echo a >> log
  - name: b
    hosts: localhost
    run: echo b >> log
"""

DAMAGE = {
    "garbage": "garbage\n",
    "not-an-object": "[1, 2]\n",
    "no-kind": '{"run_id": "x", "time": 1}\n',
    "incomplete-event": '{"event": "command_finished", "run_id": "x", "time": 1}\n',
    "bad-status": '{"event": "command_finished", "run_id": "x", "time": 1, "step": "a", '
    '"host": "localhost", "status": "exploded"}\n',
}


def _halted_run(tmp_path: Path) -> tuple[Path, Path]:
    """``a`` ran (ok), ``b`` failed by fault injection: a resume runs ``b`` only."""
    rb = write(tmp_path / "rb.yml", TWO_STEPS)
    done = runbook("apply", "--yes", str(rb), cwd=tmp_path, env={"RUNBOOK_FAULT_POINT": "b"})
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = journal_dirs(tmp_path)
    return rb, run


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_bad_line_before_the_last_refuses_resume_show_and_report(
    tmp_path: Path, damage: str
) -> None:
    """The old reader stopped at the first bad line: a line damaged before ``a``'s result
    made ``--resume`` run ``a`` again. Now every reader refuses, naming file:line."""
    rb, run = _halted_run(tmp_path)
    events = run / "events.jsonl"
    lines = events.read_text().splitlines(keepends=True)
    events.write_text(lines[0] + DAMAGE[damage] + "".join(lines[1:]))
    for args in (
        ["apply", "--yes", "--resume", run.name, str(rb)],
        ["show", run.name, str(rb)],
        ["report", run.name, str(rb), "--out", str(tmp_path / "r.html")],
    ):
        done = runbook(*args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith(f"runbook: {events}:2: not a "), done.stderr
        assert len(done.stderr.splitlines()) == 1
    assert (tmp_path / "log").read_text() == "a\n"  # nothing ran again
    assert not (tmp_path / "r.html").exists()


def test_a_torn_last_line_is_tolerated_by_resume_show_and_report(tmp_path: Path) -> None:
    rb, run = _halted_run(tmp_path)
    events = run / "events.jsonl"
    events.write_text(events.read_text() + '{"event": "command_finished", "step": "b", "ho')
    shown = runbook("show", run.name, str(rb), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "failed" in shown.stdout
    page = tmp_path / "r.html"
    reported = runbook("report", run.name, str(rb), "--out", str(page), cwd=tmp_path)
    assert reported.returncode == 0 and page.exists(), reported.stderr
    resumed = runbook("apply", "--yes", "--resume", run.name, str(rb), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (tmp_path / "log").read_text() == "a\nb\n"


def test_a_whole_last_event_without_its_newline_is_kept(tmp_path: Path) -> None:
    j = _journal(tmp_path / "runs")
    j.handle(CommandFinished(run_id="r1", result=_result("s", "a", Status.OK)))
    j.close()
    events = tmp_path / "runs" / "r1" / "events.jsonl"
    events.write_text(events.read_text().rstrip("\n"))
    assert [r.host for r in read_run(tmp_path / "runs", "r1").results()] == ["a"]


def test_a_torn_multibyte_character_is_a_torn_line_not_a_bad_file(tmp_path: Path) -> None:
    j = _journal(tmp_path / "runs")
    j.handle(CommandFinished(run_id="r1", result=_result("s", "a", Status.OK, stdout="é")))
    j.close()
    events = tmp_path / "runs" / "r1" / "events.jsonl"
    whole = events.read_bytes()
    events.write_bytes(whole + whole[: whole.index("é".encode()) + 1])  # half of é
    assert len(read_run(tmp_path / "runs", "r1").results()) == 1


def test_a_line_that_is_not_utf8_before_the_last_is_refused(tmp_path: Path) -> None:
    j = _journal(tmp_path / "runs")
    j.handle(CommandFinished(run_id="r1", result=_result("s", "a", Status.OK)))
    j.close()
    events = tmp_path / "runs" / "r1" / "events.jsonl"
    events.write_bytes(b'{"event": "\xff"}\n' + events.read_bytes())
    with pytest.raises(JournalError, match=r"events\.jsonl:1: not a JSON event"):
        read_run(tmp_path / "runs", "r1")


def test_runs_are_listed_in_the_order_they_started_and_a_damaged_one_is_named(
    tmp_path: Path,
) -> None:
    """Run ids end in a random suffix: two runs of one second sort by it, not by start."""
    from runbook.journal.store import list_runs

    root = tmp_path / "runs"
    for run_id in ("20270101-000000-ffffff", "20270101-000000-000000"):  # started in this order
        j = Journal(root, run_id, {"runbook": "x", "digest": "d"}, {"format": "runbook-plan"})
        j.handle(CommandStarted(run_id=run_id, step="s", host="a"))
        j.close()
    damaged = root / "20270101-000001-aaaaaa"
    (damaged / "meta.json").parent.mkdir(mode=0o700)
    (damaged / "meta.json").write_text("{}")
    (damaged / "events.jsonl").write_text("garbage\n{}\n")
    runs, unreadable = list_runs(root)
    assert [r.run_id for r in runs] == ["20270101-000000-ffffff", "20270101-000000-000000"]
    assert list(unreadable) == ["20270101-000001-aaaaaa"]
