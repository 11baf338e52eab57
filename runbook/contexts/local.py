"""Runs commands on the controller as real subprocesses, each in its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading

from runbook import shell
from runbook.command import Command, Outcome
from runbook.contexts.base import KILL_GRACE, ExecutionContext
from runbook.contexts.reaper import Reaper
from runbook.files.control import Transfers


class LocalExecutionContext(ExecutionContext):
    def __init__(self, kill_grace: float = KILL_GRACE) -> None:
        self.kill_grace = kill_grace
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._killed: set[int] = set()
        self._reaper = Reaper(kill_grace)
        self._transfers = Transfers()

    def execute(self, command: Command) -> Outcome:
        # start_new_session: the command leads its own process group, so a timeout can
        # kill grandchildren too (``sleep 1000 & wait``), not only the shell. The script
        # goes in on stdin (``communicate`` writes it), never on the command line.
        run = shell.invocation(command)
        proc = subprocess.Popen(
            run.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        with self._lock:
            self._running.add(proc)
        self._reaper.started(proc.pid)
        try:
            try:
                out, err = proc.communicate(run.stdin, timeout=command.timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                self._kill_group(proc)
                out, err = self._drain(proc)
        finally:
            with self._lock:
                self._running.discard(proc)
            self._reaper.finished(proc.pid)
        killed = proc.pid in self._killed
        return Outcome(
            rc=proc.returncode, stdout=out, stderr=err, timed_out=timed_out, killed=killed
        )

    def transfer(self, command: Command) -> Outcome:
        from runbook.files import localfs

        return self._transfers.run(command, lambda watch: localfs.transfer(command, watch))

    def kill_all(self) -> None:
        self._transfers.cancel_all()
        with self._lock:
            procs = list(self._running)
            self._killed.update(p.pid for p in procs)
        threads = [threading.Thread(target=self._kill_group, args=(p,)) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def close(self) -> None:
        self._reaper.close()

    def _kill_group(self, proc: subprocess.Popen[bytes]) -> None:
        for sig, wait in ((signal.SIGTERM, self.kill_grace), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; make sure the rest of its group is too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            return

    @staticmethod
    def _drain(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
        """Collect what the killed command wrote; a grandchild that escaped the group
        (setsid) may hold the pipes open, so do not wait for EOF forever."""
        try:
            return proc.communicate(timeout=2.0)
        except subprocess.TimeoutExpired:
            for f in (proc.stdout, proc.stderr):
                if f is not None:
                    f.close()
            return b"", b""
