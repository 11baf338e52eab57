"""The local watchdog: kills in-flight process groups when the controller's pipe dies."""

from __future__ import annotations

import subprocess
import time

from runbook.run.contexts.reaper import Reaper


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "600.123"], start_new_session=True)


def _wait_dead(proc: subprocess.Popen[bytes], timeout: float = 10) -> bool:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_pipe_closed_without_goodbye_kills_groups_in_flight() -> None:
    reaper = Reaper(grace=0.5)
    running, done = _sleeper(), _sleeper()
    try:
        reaper.started(running.pid)
        reaper.started(done.pid)
        reaper.finished(done.pid)
        assert reaper._proc is not None and reaper._proc.stdin is not None
        reaper._proc.stdin.close()  # what the kernel does when the controller dies
        assert _wait_dead(running)
        assert running.returncode == -15
        time.sleep(0.5)
        assert done.poll() is None, "a group reported finished must not be touched"
    finally:
        for p in (running, done):
            p.kill()
            p.wait()


def test_goodbye_leaves_everything_alone() -> None:
    reaper = Reaper(grace=0.5)
    proc = _sleeper()
    try:
        reaper.started(proc.pid)
        reaper.close()
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
