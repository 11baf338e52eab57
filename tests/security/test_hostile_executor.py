"""Host sessions against an executor that is stopped, lying or answering wrongly, and a
console that stops reading (issue 24, SPEC §6), through the CLI against real sshd.

Each host's executor runs the commands; a command runs as the same user, so it can stop
the executor (``kill -STOP $PPID``) or write into its stdout and stdin through
``/proc/$PPID/fd``. Whatever it does, its host's command ends (``unreachable``, outcome
unknown), the other hosts go on, the run never hangs or crashes, and Ctrl-C works.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import ROOT, finished, start, wait_for
from tests.fleet import Fleet

pytestmark = pytest.mark.ssh

NO_HANG = 60.0  # "it ended", not a speed claim
TIMEOUT = 5  # the step's timeout where a frozen executor is awaited


def marker() -> str:
    return f"1000.{random.randrange(10**6):06d}"


def leftovers(mark: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"sleep {mark}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def runbook_of(tmp_path: Path, run: str, timeout: int = TIMEOUT, extra: str = "") -> Path:
    """h1 runs ``run`` with ``hostile`` = yes, h2 with no; failures are tolerated."""
    rb = tmp_path / "rb.yml"
    rb.write_text(
        "name: hostile executor\n"
        "hosts:\n  fleet:\n    hosts:\n"
        "      h1: {vars: {hostile: 'yes'}}\n      h2: {vars: {hostile: 'no'}}\n"
        f"steps:\n  - name: s\n    hosts: fleet\n    on_failure: continue\n"
        f"    timeout: {timeout}\n{extra}    run: |\n"
        + "".join(f"      {line}\n" for line in run.splitlines())
    )
    return rb


def ssh_args(fleet: Fleet) -> list[str]:
    """Host sessions (the executor) even for one command per host."""
    return ["--ssh-config", str(fleet.ssh_config), "--transport", "session"]


def apply(rb: Path, fleet: Fleet, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    from tests.e2e.helpers import runbook

    started = time.monotonic()
    proc = runbook(
        "apply", str(rb), "--yes", "--output", "json", *ssh_args(fleet), *extra,
        cwd=rb.parent, timeout=NO_HANG * 3,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, time.monotonic() - started


def by_host(stdout: str) -> dict[str, dict[str, Any]]:
    return {r["host"]: r for r in finished(stdout)}


# -- a stopped executor -----------------------------------------------------------------


def test_a_stopped_executor_ends_its_step_within_timeout_plus_10s(
    tmp_path: Path, fleet: Fleet
) -> None:
    mark = marker()
    rb = runbook_of(
        tmp_path,
        f"if [ {{{{ hostile }}}} = yes ]; then kill -STOP $PPID; sleep {mark}; fi\necho ok",
    )
    try:
        proc, _ = apply(rb, fleet)
        results = by_host(proc.stdout)
        assert proc.returncode == 0, proc.stderr  # on_failure: continue
        frozen = results["h1"]
        assert frozen["status"] == "unreachable" and frozen.get("maybe_ran"), frozen
        assert "did not report" in frozen["error"], frozen["error"]
        assert frozen["duration"] <= TIMEOUT + 10, frozen["duration"]
        assert results["h2"]["status"] == "ok" and results["h2"]["stdout"] == "ok\n"
        # The abandoned executor was woken (kill -CONT): it saw its stdin closed and
        # killed the command it was running.
        wait_for(lambda: not leftovers(mark), timeout=NO_HANG, what="the command to be killed")
    finally:
        for pid in leftovers(mark):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_ends_a_run_whose_executor_is_stopped(
    tmp_path: Path, fleet: Fleet, sig: signal.Signals
) -> None:
    """Twice: halt, then kill. The run ends (130) instead of waiting for ever."""
    mark, flag = marker(), tmp_path / "stopped"
    rb = runbook_of(
        tmp_path,
        f"if [ {{{{ hostile }}}} = yes ]; then touch {flag}; kill -STOP $PPID; fi\nsleep {mark}",
        timeout=3600,
    )
    proc = start(
        "apply", str(rb), "--yes", "--output", "json", *ssh_args(fleet), cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for(flag.exists, timeout=NO_HANG, what="the executor to be stopped")
        time.sleep(0.5)
        proc.send_signal(sig)
        time.sleep(0.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=NO_HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in leftovers(mark):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    results = by_host(out)
    assert results["h1"]["status"] == "unreachable", results["h1"]
    assert results["h2"]["status"] == "failed" and "killed" in results["h2"]["error"]


# -- forged frames --------------------------------------------------------------------------

# Writes FRAME (hex) to the executor's fd N: the command's $PPID is the executor.
FORGE = (
    'python3 -c \'import os, sys; fd = os.open("/proc/%s/fd/%s" % (sys.argv[1], '
    'sys.argv[2]), os.O_WRONLY); os.write(fd, bytes.fromhex(sys.argv[3]))\' "$PPID" {fd} {hex}'
)
# An exit frame with rc 0 for every request id up to 300 (the 9-byte header of protocol 1).
OK_EXITS = b"".join(
    struct.pack(">IBI", 17, 0x58, rid) + struct.pack(">iBdI", 0, 0, 0.0, 0) for rid in range(300)
)


@pytest.mark.parametrize(
    ("fd", "frame"),
    [
        (1, OK_EXITS),
        (1, struct.pack(">IBI", 0xFFFFFFF0, 0x4F, 1)),  # a 4 GB length
        (1, os.urandom(64)),
        (0, os.urandom(64)),  # into the requests
    ],
    ids=["ok-exits", "4gb-length", "garbage-out", "garbage-in"],
)
def test_frames_forged_by_a_command_never_make_a_result(
    tmp_path: Path, fleet: Fleet, fd: int, frame: bytes
) -> None:
    forge = FORGE.format(fd=fd, hex=frame.hex())
    rb = runbook_of(tmp_path, f"if [ {{{{ hostile }}}} = yes ]; then {forge}; fi\nexit 3")
    proc, took = apply(rb, fleet)
    assert proc.returncode == 0, proc.stderr  # on_failure: continue; never 70
    results = by_host(proc.stdout)
    forged = results["h1"]
    assert forged["status"] == "unreachable" and forged.get("maybe_ran"), forged
    assert results["h2"]["status"] == "failed" and results["h2"]["rc"] == 3
    assert took < NO_HANG


# -- a sealed executor ----------------------------------------------------------------------

# sshd (so the executor and every command under it) without CAP_SYS_PTRACE: the fleet
# logs in as root, and that capability opens any process's /proc/PID/fd. Root without it
# stands to its own processes as any other user does to its own.
NO_PTRACE = ["setpriv", "--bounding-set", "-sys_ptrace", "--"]


@pytest.fixture(scope="module")
def no_ptrace_fleet(fleet_factory: Callable[..., Fleet]) -> Fleet:
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed to drop CAP_SYS_PTRACE"
    return fleet_factory(1, sshd_prefix=NO_PTRACE)


def test_a_command_cannot_open_its_executors_fds(tmp_path: Path, no_ptrace_fleet: Fleet) -> None:
    """The executor is not dumpable: a command of its user cannot open
    ``/proc/$PPID/fd/1`` (before: it wrote a forged frame there, and the session ended,
    the command ``unreachable``). The command gets its own error; the same executor
    runs the next step."""
    forge = FORGE.format(fd=1, hex=os.urandom(64).hex())
    rb = tmp_path / "rb.yml"
    rb.write_text(
        "name: sealed\nhosts:\n  fleet: [h1]\nsteps:\n"
        "  - name: forge\n    hosts: h1\n    on_failure: continue\n"
        f'    run: |\n      {forge}\n      echo "open: $? executor: $PPID"\n      exit 3\n'
        '  - name: after\n    hosts: h1\n    run: |\n      echo "executor: $PPID"\n'
    )
    proc, _ = apply(rb, no_ptrace_fleet)
    assert proc.returncode == 0, proc.stderr
    results = {r["step"]: r for r in finished(proc.stdout)}
    forged = results["forge"]
    assert forged["status"] == "failed" and forged["rc"] == 3, forged
    assert "PermissionError" in forged["stderr"], forged["stderr"]
    opened, executor = forged["stdout"].split()[1::2]
    assert opened == "1"  # python3 failed: it could not open the executor's stdout
    assert results["after"]["status"] == "ok"
    assert results["after"]["stdout"] == f"executor: {executor}\n"  # the same session


# -- a malformed hello ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lying_fleet(
    fleet_factory: Callable[..., Fleet], tmp_path_factory: pytest.TempPathFactory
) -> Fleet:
    """Two hosts whose PATH starts with a ``python3`` that, on h1 only (told apart by
    its sshd port), answers the bootstrap and then a hello no runbook executor sends."""
    base = tmp_path_factory.mktemp("lying")
    (base / "home").mkdir()
    (base / "bin").mkdir()
    path = f"{base / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    fleet = fleet_factory(2, sshd_options={"SetEnv": f"HOME={base / 'home'} PATH={path}"})
    real = shutil.which("python3") or sys.executable
    fake = base / "bin" / "python3"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "${{SSH_CONNECTION##* }}" = {fleet["h1"].port} ]; then\n'
        "  printf 'RUNBOOK-BOOT 0d0d0a0a\\nRUNBOOK-EXECUTOR 1 not-a-pid\\n'\n"
        "  exec cat >/dev/null\n"
        "fi\n"
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    return fleet


def test_a_malformed_hello_fails_that_host_only(tmp_path: Path, lying_fleet: Fleet) -> None:
    rb = runbook_of(tmp_path, "echo ran", extra="")
    rb.write_text(rb.read_text() + "  - name: again\n    hosts: fleet\n    run: echo again\n")
    proc, took = apply(rb, lying_fleet)
    assert proc.returncode in (0, 1), proc.stderr  # never 70
    results = {(r["host"], r["step"]): r for r in finished(proc.stdout)}
    bad = results[("h1", "s")]
    assert bad["status"] == "unreachable" and "hello" in bad["error"], bad
    assert results[("h2", "s")]["status"] == "ok"
    assert results[("h2", "again")]["status"] == "ok"
    # h1 stays unreachable (or, once unreachable hosts are held out, is not run again).
    assert results[("h1", "again")]["status"] in ("unreachable", "cancelled", "skipped")
    assert took < NO_HANG


# -- a console that stops reading -----------------------------------------------------------


def test_a_stalled_console_never_kills_remote_work(tmp_path: Path, fleet: Fleet) -> None:
    """``apply -v | (sleep 35; cat)``: after 2 s (output is live by then) 40,000 lines
    fill the pipe and the console blocks; the command then runs 20 s more, past the
    executor's 15 s heartbeat timeout. It must end ok: heartbeats do not wait for the
    console."""
    rb = runbook_of(tmp_path, "sleep 2\nseq 1 40000\nsleep 20\necho migrated", timeout=120)
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "runbook", "apply", str(rb), "--yes", "-v"]
    args += ssh_args(fleet)
    command = " ".join(f"'{a}'" for a in args) + " | (sleep 35; cat)"
    done = subprocess.run(
        ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=NO_HANG * 3
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert "h1 | migrated" in done.stdout and "h2 | migrated" in done.stdout, done.stdout[-2000:]
    assert "exit code 0" in done.stdout, done.stdout[-2000:]
    run_dir = next(p for p in (tmp_path / ".runbook" / "runs").iterdir() if p.is_dir())
    results = [
        json.loads(line)
        for line in (run_dir / "events.jsonl").read_text().splitlines()
        if '"command_finished"' in line
    ]
    assert {r["status"] for r in results} == {"ok"}, [r["error"] for r in results]
