"""``apply`` on a terminal: the confirmation prompt and the live view (through a real pty)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path


def _run_on_pty(args: list[str], answers: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run under a pseudo-terminal, typing each answer when the output asks ``[y/N]``."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    pending = list(answers)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if pending and out.count(b"[y/N]") > len(answers) - len(pending):
                os.write(master, pending.pop(0).encode() + b"\n")
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(master)
    return proc.returncode, out.decode(errors="replace")


def test_terminal_asks_then_shows_live_progress_and_recap(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    rb = tmp_path / "rb.yml"
    rb.write_text(f"""\
name: on a terminal
hosts:
  nodes:
    hosts:
      n1: {{connection: local}}
      n2: {{connection: local}}
steps:
  - name: slow
    hosts: nodes
    run: sleep 0.6; touch {marker}
  - name: failing
    hosts: nodes
    on_failure: continue
    run: echo "boom on {{{{ host.name }}}}" >&2; false
""")
    rc, out = _run_on_pty(["apply", str(rb)], ["y"])
    assert rc == 0, out
    assert "Proceed? [y/N]" in out
    assert "boom on n1" in out and "boom on n2" in out
    assert "RECAP" in out and "exit code 0" in out
    assert marker.exists()


def test_terminal_no_answer_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    rb = tmp_path / "rb.yml"
    rb.write_text(f"""\
name: declined
hosts:
  local: [localhost]
steps:
  - name: one
    hosts: local
    run: touch {marker}
""")
    rc, out = _run_on_pty(["apply", str(rb)], ["n"])
    assert rc == 1 and "nothing was run" in out
    assert not marker.exists()


def test_terminal_confirm_step_declined_halts_before_it(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    rb = tmp_path / "rb.yml"
    rb.write_text(f"""\
name: confirm step
hosts:
  local: [localhost]
steps:
  - name: one
    hosts: local
    run: touch {first}
  - name: two
    hosts: local
    confirm: Restart the coordinator?
    run: touch {second}
""")
    rc, out = _run_on_pty(["apply", str(rb)], ["y", "n"])
    assert "Restart the coordinator?" in out
    assert rc == 1
    assert first.exists() and not second.exists()
