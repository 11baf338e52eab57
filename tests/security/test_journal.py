"""The journal nobody can plant, and one apply of a runbook at a time (SPEC §6)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.e2e.helpers import journal_dirs, runbook, start, wait_for, write

NOBODY = 65534

RUNBOOK = """\
name: journal trust
steps:
  - name: touch
    hosts: localhost
    run: touch {marker}
"""


def _waiting(tmp_path: Path, gate: Path, more: str = "") -> Path:
    """A runbook whose first step waits until ``gate`` exists."""
    return write(
        tmp_path / "rb.yml",
        "name: long\nsteps:\n  - name: wait\n    hosts: localhost\n"
        f"    run: while [ ! -e {gate} ]; do sleep 0.05; done\n{more}",
    )


def _runbook(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "ran"
    return write(tmp_path / "rb.yml", RUNBOOK.format(marker=marker)), marker


def test_journal_directories_are_0700_and_files_0600(tmp_path: Path) -> None:
    rb, _ = _runbook(tmp_path)
    done = runbook("apply", "--yes", str(rb), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = journal_dirs(tmp_path)
    for d in (tmp_path / ".runbook", tmp_path / ".runbook" / "runs", run_dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    files = list(run_dir.iterdir())
    assert {f.name for f in files} == {"meta.json", "plan.json", "events.jsonl"}
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


@pytest.mark.parametrize("planted", ["symlink", "foreign", "group-writable", "world-writable"])
@pytest.mark.parametrize("level", [".runbook", ".runbook/runs"])
def test_a_planted_journal_directory_is_refused_and_nothing_runs(
    tmp_path: Path, planted: str, level: str
) -> None:
    rb, marker = _runbook(tmp_path)
    target = tmp_path / level
    if planted == "symlink":
        elsewhere = tmp_path / "someone-elses"
        elsewhere.mkdir(mode=0o700)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        target.symlink_to(elsewhere)
    else:
        target.mkdir(mode=0o700, parents=True)
        if planted == "foreign":
            os.chown(target, NOBODY, NOBODY)
        else:
            target.chmod(0o770 if planted == "group-writable" else 0o757)
    done = runbook("apply", "--yes", str(rb), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(target) in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()
    # Reading is refused as well: runs and resume never trust it either.
    listed = runbook("runs", str(rb), cwd=tmp_path)
    assert listed.returncode == 2 and str(target) in listed.stderr


def test_resume_refuses_a_run_directory_that_is_a_symlink(tmp_path: Path) -> None:
    rb, marker = _runbook(tmp_path)
    first = runbook("apply", "--yes", str(rb), cwd=tmp_path)
    assert first.returncode == 0
    (run_dir,) = journal_dirs(tmp_path)
    # Someone swaps the run for a symlink to a copy whose plan they edited.
    copy = tmp_path / "copy"
    run_dir.rename(copy)
    run_dir.symlink_to(copy)
    marker.unlink()
    resumed = runbook("apply", "--yes", str(rb), "--resume", run_dir.name, cwd=tmp_path)
    assert resumed.returncode == 2 and "symlink" in resumed.stderr
    assert not marker.exists()


def test_resume_refuses_a_run_id_that_is_a_path(tmp_path: Path) -> None:
    rb, _ = _runbook(tmp_path)
    done = runbook("apply", "--yes", str(rb), "--resume", "../../etc", cwd=tmp_path)
    assert done.returncode == 2 and "not a run id" in done.stderr


def test_a_second_apply_of_the_same_runbook_is_refused_while_the_first_runs(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    count = f"  - name: count\n    hosts: localhost\n    run: echo x >> {tmp_path / 'count'}\n"
    rb = _waiting(tmp_path, gate, count)
    first = start("apply", "--yes", str(rb), cwd=tmp_path)
    try:
        wait_for(lambda: bool(journal_dirs(tmp_path)), what="the first run's journal")
        run_id = journal_dirs(tmp_path)[0].name
        second = runbook("apply", "--yes", str(rb), cwd=tmp_path)
        assert second.returncode == 2, second.stdout + second.stderr
        assert run_id in second.stderr and f"pid {first.pid}" in second.stderr
        assert "@" in second.stderr  # user@host
    finally:
        gate.touch()
        first.communicate(timeout=60)
    assert first.returncode == 0
    # The lock went with the first run: a third apply runs.
    third = runbook("apply", "--yes", str(rb), cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert (tmp_path / "count").read_text() == "x\nx\n"
    assert len(journal_dirs(tmp_path)) == 2


def test_a_lock_left_by_a_killed_controller_does_not_block(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    rb = _waiting(tmp_path, gate)
    first = start("apply", "--yes", str(rb), cwd=tmp_path)
    wait_for(lambda: bool(journal_dirs(tmp_path)), what="the first run's journal")
    first.kill()
    first.communicate(timeout=30)
    gate.touch()
    again = runbook("apply", "--yes", str(rb), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
