"""Measuring one process: whole-process wall time, peak RSS and CPU, and their medians.

Wall time is taken here, from just before the fork to the reaping. Peak RSS and CPU come
from GNU ``/usr/bin/time``, which runs the command as its child and reports that child's
``wait4`` rusage. Not ``os.wait4`` on a child of this process: Linux carries the parent's
high-water RSS into a forked child's ``ru_maxrss`` across ``exec``, so every tool would
"use" at least this harness's memory; a small ``time`` process in between keeps it honest.
``ru_maxrss`` is the peak of the largest single process in the tree (not a sum): exact for
the single-process tools (runbook, the paramiko loop), the largest ``ssh`` for the
multi-process ones (ControlMaster, ansible), which the tables mark. CPU is user + system
of the whole tree, controller side only.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Sample:
    """One run of one command."""

    wall: float  # seconds, from just before fork to reaping
    maxrss_kib: int  # peak RSS of the largest process in the tree, KiB
    cpu: float  # user + system seconds of the tree
    rc: int
    remote_cpu: float | None = None  # the sshds' CPU during the run (SSH suites only)


@dataclass
class Series:
    """Every run of one tool on one workload."""

    tool: str
    argv: list[str]
    samples: list[Sample] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.samples) and all(s.rc == 0 for s in self.samples)

    @property
    def label(self) -> str:
        """The tool's name, flagged when a run failed (its times mean little)."""
        return self.tool if self.ok else f"{self.tool} **(failed: rc {self.samples[-1].rc})**"

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def rss_mib(self) -> float:
        return statistics.median(s.maxrss_kib for s in self.samples) / 1024

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def remote_cpu(self) -> float | None:
        values = [s.remote_cpu for s in self.samples if s.remote_cpu is not None]
        return statistics.median(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "tool": self.tool,
            "argv": self.argv,
            "note": self.note,
            "samples": [asdict(s) for s in self.samples],
        }
        if self.samples:
            d.update(
                wall_median=round(self.wall, 4),
                wall_min=round(min(s.wall for s in self.samples), 4),
                wall_max=round(max(s.wall for s in self.samples), 4),
                rss_median_mib=round(self.rss_mib, 1),
                cpu_median=round(self.cpu, 3),
                remote_cpu_median=None if self.remote_cpu is None else round(self.remote_cpu, 3),
                ok=self.ok,
            )
        return d


TIME = "/usr/bin/time"


def measure(
    argv: Sequence[str],
    *,
    stdout: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600.0,
) -> Sample:
    """Run ``argv`` once; its output goes to ``stdout`` (appended) or /dev/null."""
    with tempfile.NamedTemporaryFile("r", prefix="rbtime-", suffix=".txt") as usage:
        out = open(stdout, "ab") if stdout is not None else open(os.devnull, "wb")  # noqa: SIM115
        with out:
            started = time.perf_counter()
            proc = subprocess.Popen(
                [TIME, "-o", usage.name, "-f", "%M %U %S %x", *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=None if env is None else {**os.environ, **env},
                cwd=cwd,
                start_new_session=True,  # its own process group, to kill a hung run whole
            )
            # A blocking wait: Popen.wait(timeout) polls with sleeps of up to 50 ms, which
            # would show in the wall time. A timer kills a hung run instead.
            killer = threading.Timer(timeout, _kill_group, (proc.pid,))
            killer.start()
            proc.wait()
            killer.cancel()
            wall = time.perf_counter() - started
        fields = usage.read().split()
    try:  # the last line; "Command exited with non-zero status" may come first
        maxrss, user, system, rc = fields[-4:]
        return Sample(wall, int(maxrss), float(user) + float(system), int(rc))
    except ValueError:
        return Sample(wall, 0, 0.0, proc.returncode or -1)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def interleave(
    series: Sequence[Series],
    reps: int,
    *,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    warmup: bool = False,
    progress: Any = None,
    probe: Callable[[], float] | None = None,
) -> None:
    """A B C A B C ...: each round runs every tool once, so drift hits all of them alike.

    ``probe`` (read before and after each run, outside the timing) gives a counter whose
    growth is recorded as ``remote_cpu``: the fleet's CPU seconds.
    """
    rounds = ([None] if warmup else []) + list(range(reps))
    for r in rounds:
        for s in series:
            before = probe() if probe is not None else None
            sample = measure(s.argv, stdout=log, env=env, cwd=cwd)
            if before is not None and probe is not None:
                sample.remote_cpu = probe() - before
            if r is None:
                continue
            s.samples.append(sample)
            if progress is not None:
                progress(s, sample)


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b > 0 else None


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def show(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def self_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
