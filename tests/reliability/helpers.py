"""Shared helpers for the reliability suite: measured CLI runs, polling, process checks.

Every wait here is bounded: a test that would hang fails with a message instead.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]

# Seconds. "No hang" bounds, not speed claims: the cores are shared and noisy.
NO_HANG = 60.0


@dataclass
class Measured:
    """A finished CLI run with what it cost: wall and CPU seconds, peak RSS in MiB."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall: float
    cpu: float
    peak_rss_mib: float
    timed_out: bool = False


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    env.pop("RUNBOOK_FAULT_POINT", None)
    env.update(extra or {})
    return env


def _limit_memory(pid: int) -> None:
    # A safety net, far above the 200 MB the tests assert: a regression that turns an
    # alias bomb into real allocation must not take the shared machine down with it.
    # (prlimit right after the fork, not preexec_fn, which is unsafe with threads.)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        resource.prlimit(pid, resource.RLIMIT_AS, (2 << 30, 2 << 30))


def run_measured(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Measured:
    """``python -m runbook ARGS`` with its own rusage (``wait4``: this child only).

    On timeout the child is killed and ``timed_out`` is set; the caller asserts on it.
    """
    argv = [sys.executable, "-m", "runbook", *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=cli_env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        _limit_memory(proc.pid)
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            os.kill(proc.pid, signal.SIGKILL)  # still our unreaped child: the pid is ours

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Measured(
            args=list(args),
            returncode=proc.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            wall=wall,
            cpu=usage.ru_utime + usage.ru_stime,
            peak_rss_mib=usage.ru_maxrss / 1024,
            timed_out=fired.is_set(),
        )


def start_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    """``python -m runbook ARGS`` in the background, output to files under ``cwd``."""
    out = open(Path(cwd or ".") / "cli.stdout", "wb")  # noqa: SIM115 - closed by the caller
    err = open(Path(cwd or ".") / "cli.stderr", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", *args],
        cwd=cwd,
        env=cli_env(env),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
    )
    out.close()
    err.close()
    return proc


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll until ``predicate()`` is true; fail (never hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def processes_matching(text: str) -> list[psutil.Process]:
    """Live processes whose command line contains ``text`` (zombies excluded)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if text in " ".join(p.info["cmdline"] or ()):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def thread_count() -> int:
    return threading.active_count()


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))
