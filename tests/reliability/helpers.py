"""Shared helpers for the reliability suite: measured CLI runs, polling, process checks.

Every wait here is bounded: a test that would hang fails with a message instead.
"""

from __future__ import annotations

import contextlib
import json
import os
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


# The measured run is forked by this small launcher, not by the test process: Linux hands
# a child the peak RSS of the process that forked it (its memory map's high-water mark is
# copied at fork and kept through exec), so a child of a pytest process grown to 290 MiB
# reported 291 MiB whatever it used itself. The launcher's own map is a fresh interpreter's.
# It limits the child's address space (a safety net, far above the 200 MB the tests assert:
# a regression that turns an alias bomb into real allocation must not take the shared
# machine down with it), waits for it, and writes its status and rusage to the fd argv[1].
_LAUNCHER = """
import json, os, resource, sys
report = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.close(report)
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    os.execv(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
os.write(report, json.dumps([status, ru.ru_utime + ru.ru_stime, ru.ru_maxrss]).encode())
"""


def run_measured(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Measured:
    """``python -m runbook ARGS`` with its own rusage (``wait4`` in the launcher: this
    child only, none of the test process's memory).

    On timeout the child is killed and ``timed_out`` is set; the caller asserts on it.
    """
    report_r, report_w = os.pipe()
    argv = [sys.executable, "-c", _LAUNCHER, str(report_w), sys.executable, "-m", "runbook"]
    argv += args
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=cli_env(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=(report_w,),
                start_new_session=True,  # its own group: a kill reaches the child too
            )
        finally:
            os.close(report_w)
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            with os.fdopen(report_r, "rb") as report:
                raw = report.read()
            proc.wait()
        finally:
            timer.cancel()
        wall = time.monotonic() - started
        status, cpu, maxrss = json.loads(raw) if raw else (proc.returncode, 0.0, 0)
        out.seek(0)
        err.seek(0)
        return Measured(
            args=list(args),
            returncode=os.waitstatus_to_exitcode(status) if raw else proc.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            wall=wall,
            cpu=cpu,
            peak_rss_mib=maxrss / 1024,
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
