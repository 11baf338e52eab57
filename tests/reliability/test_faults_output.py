"""Hostile command output, locally and over SSH: 50 MB, binary, invalid UTF-8, a command
that closes stdout but keeps running, a background child holding stdout past a timeout.

Promises (README "Commands", SPEC §4 "Journal", §6): no deadlock, the run ends; the console
shows a failed command's last 40 lines; the journal has the output (as text: invalid
UTF-8 is replaced by U+FFFD, never fatal) up to the cap: past ``OUTPUT_CAP`` bytes, its
first and last part with a note between, the rest counted in ``dropped``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runbook.options import OUTPUT_CAP
from runbook.run.capture import Capture
from tests.fleet import Fleet
from tests.reliability.harness import hosts_yaml, ssh_files
from tests.reliability.helpers import Measured, run_measured

FIFTY_MB = 50_000_000
LINE = "x" * 99  # + "\n": 100-byte lines, 500 000 of them
BINARY = bytes(range(256)) * 4000  # 1 MB, every byte value
BINARY_PY = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 4000)"
CONSOLE_BUDGET = 200_000  # bytes of console output a 50 MB command may cause

STEPS = f"""\
steps:
  - name: fifty megabytes
    hosts: target
    on_failure: continue
    run: yes {LINE} | head -c {FIFTY_MB}; echo to stderr >&2; exit 3
  - name: binary
    hosts: target
    run: python3 -c '{BINARY_PY}'
  - name: invalid utf-8
    hosts: target
    run: printf 'caf\\351\\n\\377\\376\\n' >&2; printf 'ok\\303\\050\\n'
  - name: closes stdout
    hosts: target
    run: echo before; exec >&-; sleep 2; echo after >&2
  - name: closes both
    hosts: target
    run: echo before; exec >&- 2>&-; sleep 2
  - name: background child holds stdout
    hosts: target
    on_failure: continue
    timeout: 3
    run: sleep 120 & echo started
"""


def run_steps(target_hosts: str, tmp_path: Path, extra: list[str]) -> tuple[Measured, dict]:
    rb = tmp_path / "rb.yml"
    rb.write_text("name: hostile output\n" + target_hosts + STEPS)
    journal = tmp_path / "journal"
    run = run_measured(
        "apply", "--yes", "--journal", str(journal), *extra, str(rb), cwd=tmp_path, timeout=240
    )
    (run_dir,) = [p for p in journal.iterdir() if p.is_dir()]
    with open(run_dir / "events.jsonl", encoding="utf-8") as f:
        results = {e["step"]: e for e in map(json.loads, f) if e["event"] == "command_finished"}
    return run, results


def check(run: Measured, results: dict, transport: str) -> None:
    assert not run.timed_out, "the run hung"
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 0, run.stderr  # every failure is tolerated (continue)

    big = results["fifty megabytes"]
    assert big["status"] == "failed" and big["rc"] == 3
    capture = Capture()
    capture.add(((LINE + "\n") * (FIFTY_MB // 100)).encode())
    kept, dropped = capture.kept()
    assert big["stdout"] == kept.decode()  # the first and last part, in order
    assert big["dropped"] == {"stdout": dropped} and dropped > FIFTY_MB - 2 * OUTPUT_CAP
    assert big["stderr"] == "to stderr\n"
    # The console shows the tail, not 50 MB.
    assert len(run.stdout) < CONSOLE_BUDGET, len(run.stdout)
    assert "earlier lines cut; full output in the journal" in run.stdout
    assert run.stdout.count(LINE) <= 40

    binary = results["binary"]
    assert binary["status"] == "ok"
    assert binary["stdout"] == BINARY.decode("utf-8", "replace")

    bad = results["invalid utf-8"]
    assert bad["status"] == "ok"
    assert bad["stdout"] == "ok\ufffd(\n"
    assert bad["stderr"] == "caf\ufffd\n\ufffd\ufffd\n"

    closed = results["closes stdout"]
    assert closed["status"] == "ok", closed
    assert (closed["stdout"], closed["stderr"]) == ("before\n", "after\n")
    assert closed["duration"] >= 2.0

    both = results["closes both"]
    assert both["status"] == "ok" and both["stdout"] == "before\n", both

    held = results["background child holds stdout"]
    # The shell exited at once; a background child holds stdout: every transport waits
    # 2 s for the output's end, then reports the command's own status (not the timeout).
    assert held["status"] == "ok", held
    assert held["stdout"] == "started\n"
    assert 2 <= held["duration"] < 3 + 3 + 10  # the drain, never 120 s
    print(f"{transport}: 50 MB output, controller peak RSS {run.peak_rss_mib:.0f} MiB, "
          f"wall {run.wall:.1f}s")  # fmt: skip


def test_hostile_output_locally(tmp_path: Path) -> None:
    hosts = "hosts:\n  target:\n    hosts:\n      localhost: {connection: local}\n"
    run, results = run_steps(hosts, tmp_path, [])
    check(run, results, "local")


@pytest.mark.ssh
@pytest.mark.parametrize("transport", ["session", "exec"])
def test_hostile_output_over_ssh(fleet_factory, tmp_path: Path, transport: str) -> None:
    fleet: Fleet = fleet_factory(1)
    files = ssh_files(fleet, tmp_path)
    run, results = run_steps(
        hosts_yaml([("h1", fleet["h1"].port)], group="target"),
        tmp_path,
        [*files.cli_args(), "--transport", transport],
    )
    check(run, results, f"ssh ({transport})")


def test_console_truncates_a_single_huge_line(tmp_path: Path) -> None:
    rb = tmp_path / "rb.yml"
    rb.write_text(
        "name: one long line\nsteps:\n  - name: s\n    hosts: localhost\n"
        "    run: head -c 5000000 /dev/zero | tr '\\0' x; exit 1\n"
    )
    run = run_measured("apply", "--yes", str(rb), cwd=tmp_path, timeout=120)
    assert run.returncode == 1, run.stderr
    assert len(run.stdout) < CONSOLE_BUDGET, f"console printed {len(run.stdout)} bytes"
