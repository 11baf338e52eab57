"""Faults on the controller itself: the journal cannot be written (unwritable path, full
disk, read-only disk, disk filling up mid-run), and the controller is SIGKILLed while
local commands run.

SPEC §4: the journal is opened before the first command runs, so an unwritable journal
is an input error (exit 2) and nothing executes.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.reliability.helpers import run_measured, start_cli, wait_for

RUNBOOK = """\
name: journal faults
steps:
  - name: first
    hosts: localhost
    run: touch {marker}; yes first | head -c 200000
  - name: second
    hosts: localhost
    run: touch {marker}.2; yes second | head -c 200000
"""


def write_runbook(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "MARKER"
    rb = tmp_path / "rb.yml"
    rb.write_text(RUNBOOK.format(marker=marker))
    return rb, marker


def assert_refused_before_running(run, marker: Path, why: str) -> None:
    assert not run.timed_out and "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and "cannot write the run journal" in lines[0], run.stderr
    assert why in lines[0], lines[0]
    assert not marker.exists(), "a command ran"


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64k", readonly: bool = False) -> Iterator[Path]:
    """A tiny tmpfs at ``path`` (root only); unmounted afterwards, whatever happens."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path, leave: int = 0) -> None:
    """Fill the filesystem of ``directory`` until ``leave`` bytes (roughly) are free."""
    with open(directory / "filler", "wb") as f, contextlib.suppress(OSError):
        for _ in range(1 << 16):  # bounded: a tiny tmpfs fills long before
            st = os.statvfs(directory)
            free = st.f_bavail * st.f_frsize
            if free <= leave:
                break
            f.write(b"\0" * min(4096, free - leave))
            f.flush()


def test_journal_path_under_a_regular_file(tmp_path: Path) -> None:
    rb, marker = write_runbook(tmp_path)
    (tmp_path / "afile").write_text("not a directory\n")
    run = run_measured("apply", "--yes", "--journal", str(tmp_path / "afile" / "runs"), str(rb))
    assert_refused_before_running(run, marker, "Not a directory")


def test_journal_on_a_full_disk(tmp_path: Path) -> None:
    rb, marker = write_runbook(tmp_path)
    with tmpfs(tmp_path / "disk") as disk:
        fill(disk)
        run = run_measured("apply", "--yes", "--journal", str(disk / "runs"), str(rb))
    assert_refused_before_running(run, marker, "No space left on device")


def test_journal_on_a_read_only_disk(tmp_path: Path) -> None:
    rb, marker = write_runbook(tmp_path)
    with tmpfs(tmp_path / "disk", readonly=True) as disk:
        run = run_measured("apply", "--yes", "--journal", str(disk / "runs"), str(rb))
    assert_refused_before_running(run, marker, "Read-only file system")


def test_disk_filling_up_mid_run_halts(tmp_path: Path) -> None:
    """16 KB free: meta.json and plan.json fit, step 1's 200 KB result does not."""
    rb, marker = write_runbook(tmp_path)
    with tmpfs(tmp_path / "disk") as disk:
        fill(disk, leave=16 * 1024)
        run = run_measured("apply", "--yes", "--journal", str(disk / "runs"), str(rb))
    assert not run.timed_out and "Traceback" not in run.stderr, run.stderr
    assert marker.exists(), "the journal opened, so step 1 ran"
    assert "journal write failed" in run.stderr
    assert run.returncode == 1, (run.returncode, run.stderr)
    assert not Path(f"{marker}.2").exists(), "step 2 ran with no journal to record it"


def test_controller_sigkill_leaves_no_local_orphans(tmp_path: Path) -> None:
    nap = f"{random.randrange(300, 900)}.{random.randrange(10**6):06d}"
    rb = tmp_path / "rb.yml"
    rb.write_text(
        f"name: k\nsteps:\n  - name: s\n    hosts: localhost\n    timeout: 2\n"
        f"    run: sleep {nap}\n"
    )
    proc = start_cli("apply", "--yes", str(rb), cwd=tmp_path)
    orphans: list[psutil.Process] = []

    def sleeps() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if p.info["cmdline"] == ["sleep", nap] and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
        return found

    try:
        wait_for(sleeps, 30, "the local command")
        orphans = sleeps()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 2 + 3 + 5  # timeout + kill grace + slack
        while time.monotonic() < deadline and any(p.is_running() for p in orphans):
            time.sleep(0.1)
        alive = [p.pid for p in orphans if p.is_running() and p.status() != "zombie"]
        assert not alive, f"sleep {nap} still running 10 s after the controller died"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in orphans:  # this test's own processes, by pid
            with contextlib.suppress(psutil.Error):
                p.kill()
