"""A resumed run is itself resumable (SPEC §6; issue 24).

Resuming run R twice re-ran what the first resume had finished: the second read only
R's journal. ``--resume R --limit X`` reported "completed" (exit 0) while a host the
limit left out still had a failed step. Now a resume reads R's whole family of runs, and
a narrowed resume that leaves undone work out ends halted (exit 1), saying what is left.

Every command appends ``STEP-HOST`` to ``log``; a step fails on a host while a file
``fail-STEP-HOST`` exists, so a test decides which command fails in which run.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from tests.e2e.helpers import journal_dirs, journal_events, runbook, write
from tests.reliability.helpers import start_cli, wait_for

RUNBOOK = """\
name: resumable
hosts:
  web:
    hosts:
      h1: {connection: local}
      h2: {connection: local}
steps:
  - name: one
    hosts: web
    run: echo one-{{ host.name }} >> log
  - name: two
    hosts: web
    run: echo two-{{ host.name }} >> log; test ! -e fail-two-{{ host.name }}
  - name: three
    hosts: web
    run: |
      echo three-{{ host.name }} >> log
      test ! -e fail-three-{{ host.name }} || exit 1
      if [ -e hang-three-{{ host.name }} ]; then sleep 600; fi
"""


def log(cwd: Path) -> Counter[str]:
    path = cwd / "log"
    text = path.read_text() if path.exists() else ""
    path.unlink(missing_ok=True)
    return Counter(text.split())


def apply(cwd: Path, *args: str) -> tuple[int, str]:
    done = runbook("apply", "--yes", *args, "rb.yml", cwd=cwd)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


def halted_run(tmp_path: Path) -> str:
    """Run R: `two` fails on h2, the run halts before `three`."""
    write(tmp_path / "rb.yml", RUNBOOK)
    (tmp_path / "fail-two-h2").touch()
    rc, out = apply(tmp_path)
    assert rc == 1, out
    assert log(tmp_path) == Counter(["one-h1", "one-h2", "two-h1", "two-h2"])
    (tmp_path / "fail-two-h2").unlink()
    (run,) = journal_dirs(tmp_path)
    return run.name


def test_resuming_twice_never_reruns_what_the_first_resume_finished(tmp_path: Path) -> None:
    run = halted_run(tmp_path)
    (tmp_path / "fail-three-h1").touch()
    rc, out = apply(tmp_path, "--resume", run)  # the first resume halts on `three` at h1
    assert rc == 1, out
    assert log(tmp_path) == Counter(["two-h2", "three-h1", "three-h2"])
    (tmp_path / "fail-three-h1").unlink()
    rc, out = apply(tmp_path, "--resume", run)  # R again: only what is still undone
    assert rc == 0, out
    assert log(tmp_path) == Counter(["three-h1"])
    rc, out = apply(tmp_path, "--resume", run)  # and again: nothing is left
    assert rc == 0, out
    assert log(tmp_path) == Counter()


def test_a_resume_of_the_resume_sees_the_whole_family(tmp_path: Path) -> None:
    """R → R2 (resumes R) → R3 (resumes R again): resuming R2 reads R3's work too."""
    run = halted_run(tmp_path)
    for host in ("h1", "h2"):
        (tmp_path / f"fail-three-{host}").touch()
    assert apply(tmp_path, "--resume", run)[0] == 1  # R2: `three` fails on both hosts
    second = next(r.name for r in journal_dirs(tmp_path) if r.name != run)
    (tmp_path / "fail-three-h2").unlink()
    assert apply(tmp_path, "--resume", run)[0] == 1  # R3: h2's `three` ok, h1's fails
    assert log(tmp_path) == Counter(["two-h2", "three-h1", "three-h2", "three-h1", "three-h2"])
    (tmp_path / "fail-three-h1").unlink()
    rc, out = apply(tmp_path, "--resume", second)  # R2's journal has h2's `three` failed
    assert rc == 0, out
    assert log(tmp_path) == Counter(["three-h1"])


def test_a_limited_resume_is_not_completed_while_an_excluded_host_is_undone(
    tmp_path: Path,
) -> None:
    run = halted_run(tmp_path)
    rc, out = apply(tmp_path, "--resume", run, "--limit", "h1")
    assert log(tmp_path) == Counter(["three-h1"])  # h1's part, nothing of h2's
    assert rc == 1, out
    assert "· completed" not in out
    assert f"run {run} is not finished: 'two' on h2, 'three' on h2 not done" in out
    rc, out = apply(tmp_path, "--resume", run)  # the rest: h2's, and nothing of h1's
    assert rc == 0, out
    assert log(tmp_path) == Counter(["two-h2", "three-h2"])
    rc, out = apply(tmp_path, "--resume", run, "--limit", "h1")  # nothing left out now
    assert rc == 0 and "· completed" in out, out


def test_a_second_resume_refuses_while_the_first_ones_outcome_is_unknown(
    tmp_path: Path,
) -> None:
    """The first resume's controller dies while `three` runs on h1: resuming R again
    refuses, naming that command and the run it started in, until --rerun-unknown."""
    run = halted_run(tmp_path)
    (tmp_path / "hang-three-h1").touch()
    proc = start_cli("apply", "--yes", "--resume", run, "rb.yml", cwd=tmp_path)
    try:
        wait_for(lambda: Counter((tmp_path / "log").read_text().split())["three-h1"] == 1
                 if (tmp_path / "log").exists() else False, 60, "three-h1 to start")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    first = next(r for r in journal_dirs(tmp_path) if r.name != run)
    started = [e for e in journal_events(first) if e["event"] == "command_started"]
    assert ("three", "h1") in {(e["step"], e["host"]) for e in started}
    log(tmp_path)
    (tmp_path / "hang-three-h1").unlink()
    rc, out = apply(tmp_path, "--resume", run)
    assert rc == 2, out
    assert f"step 'three' on host 'h1' started in run {first.name}" in out, out
    assert log(tmp_path) == Counter()
    rc, out = apply(tmp_path, "--resume", run, "--rerun-unknown")
    assert rc == 0, out
    assert log(tmp_path)["three-h1"] == 1  # run again, as asked; h2's `three` too if undone
