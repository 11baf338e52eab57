"""The console is an observer: it never stops a run, and it never lets command output
drive the terminal (SPEC §6)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from tests.e2e.helpers import ROOT, journal_dirs, journal_events, start, wait_for, write
from tests.e2e.test_terminal import _run_on_pty

HOSTILE = r"printf '\033]0;PWNED-TITLE\007\033[1A\033[2K  ok  FAKE-OK\r\n'"


def _three_steps(tmp_path: Path) -> Path:
    return write(
        tmp_path / "rb.yml",
        f"""\
name: console goes away
steps:
  - name: loud
    hosts: localhost
    run: seq 1 5000
  - name: later
    hosts: localhost
    run: sleep 0.3; touch {tmp_path / "later-ran"}
  - name: last
    hosts: localhost
    run: touch {tmp_path / "last-ran"}
""",
    )


@pytest.mark.parametrize("output", ["text", "json"])
def test_a_closed_stdout_never_stops_the_run(tmp_path: Path, output: str) -> None:
    """`runbook apply ... | head -c 100`: the reader goes away at once; every step still
    runs, the journal says completed, and the exit code is the run's."""
    rb = _three_steps(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", "apply", "--yes", "-v", "--output", output, str(rb)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    head = proc.stdout.read(100)
    proc.stdout.close()  # like `head -c 100` exiting
    _, err = proc.communicate(timeout=60)
    assert len(head) == 100
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"Exception ignored" not in err
    assert (tmp_path / "later-ran").exists() and (tmp_path / "last-ran").exists()
    (run_dir,) = journal_dirs(tmp_path)
    finished = [e for e in journal_events(run_dir) if e["event"] == "run_finished"]
    assert finished and finished[0]["status"] == "completed"
    # The whole output of the loud step is in the journal, whatever the console printed.
    loud = next(e for e in journal_events(run_dir) if e.get("step") == "loud" and "stdout" in e)
    assert loud["stdout"].endswith("\n5000\n")


def _stalled(tmp_path: Path) -> Path:
    """A step whose streamed output (-v) is far more than a pipe and the console's
    backlog hold, then four more steps."""
    rest = "".join(
        f"  - name: after {i}\n    hosts: localhost\n    run: sleep 0.2; echo step {i}\n"
        for i in range(1, 5)
    )
    return write(
        tmp_path / "rb.yml",
        "name: nobody reads\nsteps:\n  - name: loud\n    hosts: localhost\n"
        f"    run: seq 1 1000000\n{rest}",
    )


@pytest.mark.parametrize("output", ["text", "json"])
def test_a_stalled_console_never_pauses_the_run(tmp_path: Path, output: str) -> None:
    """`runbook apply -v | (sleep 60; cat)`: nobody reads stdout while the run goes on.
    The run ends all its steps regardless (the journal says so before anyone reads);
    what is read at last says how much was dropped, then the run's last lines in order,
    and the exit code is the run's."""
    rb = _stalled(tmp_path)
    proc = start("apply", "--yes", "-v", "--output", output, str(rb), cwd=tmp_path)
    try:
        wait_for(
            lambda: any(
                e["event"] == "run_finished"
                for d in journal_dirs(tmp_path)
                for e in journal_events(d)
            ),
            timeout=120,
            what="the run to finish while nobody reads its stdout",
        )
        reading = time.time()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    (run_dir,) = journal_dirs(tmp_path)
    journal = journal_events(run_dir)
    steps = [e for e in journal if e["event"] == "step_finished"]
    assert [e["step"] for e in steps] == ["loud", "after 1", "after 2", "after 3", "after 4"]
    assert all(e["time"] < reading for e in steps)
    loud = next(e for e in journal if e["event"] == "command_finished" and e["step"] == "loud")
    assert loud["stdout"].endswith("\n1000000\n")  # the journal has what the console dropped
    if output == "json":
        shown = [json.loads(line) for line in out.splitlines()]
        schema = json.loads((ROOT / "schemas" / "events.schema.json").read_text())
        validator = jsonschema.Draft202012Validator(schema)
        assert not [err.message for e in shown for err in validator.iter_errors(e)]
        (note,) = [e for e in shown if e["event"] == "console_dropped"]
        assert note["dropped"] > 0
        after = [e["event"] for e in shown[shown.index(note) + 1 :]]
        assert after[-3:] == ["command_finished", "step_finished", "run_finished"]
    else:
        dropped = re.search(
            r"^\.\.\. \((\d+) lines not shown: stdout was not read in time", out, re.M
        )
        assert dropped and int(dropped.group(1)) > 0, out[-3000:]
        tail = out[dropped.end() :]
        last = [
            tail.index(s) for s in ("[5/5] after 4", "localhost | step 4", "RECAP", "exit code 0")
        ]
        assert last == sorted(last), tail


def test_a_hung_up_terminal_detaches_the_console_and_the_run_goes_on(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: hangup
steps:
  - name: wait
    hosts: localhost
    run: while [ ! -e {gate} ]; do sleep 0.05; done
  - name: after
    hosts: localhost
    run: touch {tmp_path / "after-ran"}
""",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", "apply", "--yes", str(rb)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    wait_for(
        lambda: any(
            e["event"] == "command_started"
            for d in journal_dirs(tmp_path)
            for e in journal_events(d)
        ),
        what="the first command to start",
    )
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    gate.touch()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (tmp_path / "after-ran").exists()


def _hostile(tmp_path: Path) -> Path:
    return write(
        tmp_path / "rb.yml",
        f"""\
name: hostile output
steps:
  - name: hostile
    hosts: localhost
    on_failure: continue
    run: |
      {HOSTILE}
      exit 3
""",
    )


def test_control_characters_are_escaped_on_the_plain_console_and_in_show(
    tmp_path: Path,
) -> None:
    rb = _hostile(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "runbook", "apply", "--yes", "-v", str(rb)],
        cwd=tmp_path,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert b"\x1b" not in done.stdout and b"\x07" not in done.stdout and b"\r" not in done.stdout
    assert b"\\e]0;PWNED-TITLE\\x07\\e[1A\\e[2K  ok  FAKE-OK\\r" in done.stdout
    (run_dir,) = journal_dirs(tmp_path)
    shown = subprocess.run(
        [sys.executable, "-m", "runbook", "show", run_dir.name, str(rb), "--step", "hostile"],
        cwd=tmp_path,
        capture_output=True,
    )
    assert shown.returncode == 0
    assert b"\x1b" not in shown.stdout and b"\\e]0;PWNED-TITLE" in shown.stdout
    # The journal keeps the bytes as the command wrote them.
    raw = next(e for e in journal_events(run_dir) if e.get("step") == "hostile" and "stdout" in e)
    assert raw["stdout"].startswith("\x1b]0;PWNED-TITLE\x07")


def test_control_characters_are_escaped_on_the_live_console(tmp_path: Path) -> None:
    rb = _hostile(tmp_path)
    code, out = _run_on_pty(["apply", "--yes", "-v", str(rb)], answers=[])
    assert code == 0, out
    assert "PWNED-TITLE" in out  # shown, as text
    assert "\x1b]0;PWNED" not in out and "\x07" not in out
    assert "\\e]0;PWNED-TITLE\\x07" in out


def test_sigpipe_disposition_of_commands_is_the_default(tmp_path: Path) -> None:
    """Python ignores SIGPIPE; a command must not inherit that. The pipeline's own status
    is head's either way: ``yes``'s (bash's PIPESTATUS) tells them apart, 141 (killed by
    SIGPIPE) with the default disposition, 1 (a write error) with SIGPIPE ignored."""
    rb = write(
        tmp_path / "rb.yml",
        "name: pipes\nsteps:\n  - name: p\n    hosts: localhost\n    timeout: 20\n"
        "    shell: /bin/bash\n"
        '    run: yes | head -n 1 >/dev/null; echo "${PIPESTATUS[0]}" > status\n',
    )
    done = subprocess.run(
        [sys.executable, "-m", "runbook", "apply", "--yes", str(rb)],
        cwd=tmp_path,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stdout
    assert (tmp_path / "status").read_text() == f"{128 + signal.SIGPIPE}\n"
