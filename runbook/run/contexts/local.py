"""Runs commands on the controller as real subprocesses, each in its own process group."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time

from runbook.model.command import Command, Outcome
from runbook.run import shell
from runbook.run.capture import Capture, kept
from runbook.run.contexts.base import (
    DRAIN,
    DRAIN_AFTER_KILL,
    KILL_GRACE,
    READ_SIZE,
    ExecutionContext,
    OutputCallback,
)
from runbook.run.contexts.reaper import Reaper
from runbook.run.fdio import write_all
from runbook.run.transfer.control import Transfers

POLL = 0.1  # how soon the shell's exit is noticed while a background child holds a pipe


def _popen(argv: list[str], stdin: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )


class LocalExecutionContext(ExecutionContext):
    def __init__(self, kill_grace: float = KILL_GRACE) -> None:
        self.kill_grace = kill_grace
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._killed: set[int] = set()
        self._reaper = Reaper(kill_grace)
        self._transfers = Transfers()

    def execute(self, command: Command, on_output: OutputCallback | None = None) -> Outcome:
        # start_new_session: the command leads its own process group, so a timeout can
        # kill grandchildren too (``sleep 1000 & wait``), not only the shell. The script
        # never goes on the command line: it comes from a private in-memory file, or on
        # stdin under sudo.
        proc = self._start(command)
        with self._lock:
            self._running.add(proc)
        self._reaper.started(proc.pid)
        try:
            out, err, timed_out = self._read(proc, command.timeout, on_output)
        finally:
            with self._lock:
                self._running.discard(proc)
            self._reaper.finished(proc.pid)
        killed = proc.pid in self._killed
        stdout, stderr, dropped = kept(out, err)
        return Outcome(
            rc=proc.returncode,
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            killed=killed,
            dropped=dropped,
        )

    @staticmethod
    def _start(command: Command) -> subprocess.Popen[bytes]:
        if command.spec.become:  # sudo closes other descriptors: the script on a pipe
            run = shell.invocation(command)
            proc = _popen(run.argv, subprocess.PIPE)
            with contextlib.suppress(BrokenPipeError):  # a shell that failed to start
                assert proc.stdin is not None
                proc.stdin.write(run.stdin)
                proc.stdin.close()
            return proc
        run = shell.sourced(command)
        fd = os.memfd_create("runbook-script", os.MFD_CLOEXEC)
        try:
            write_all(fd, run.stdin)
            os.lseek(fd, 0, os.SEEK_SET)
            return _popen(run.argv, fd)
        finally:
            os.close(fd)

    def transfer(self, command: Command) -> Outcome:
        from runbook.run.transfer import local as localfs

        return self._transfers.run(command, lambda watch: localfs.transfer(command, watch))

    def _read(
        self, proc: subprocess.Popen[bytes], timeout: float, on_output: OutputCallback | None
    ) -> tuple[Capture, Capture, bool]:
        """Both pipes to EOF as chunks arrive, then the exit status; kills the group at
        the deadline. A background child may hold the pipes open after the shell exited:
        its output is awaited for ``DRAIN`` seconds, then left (as every transport does);
        after a kill, for ``DRAIN_AFTER_KILL`` seconds at most."""
        assert proc.stdout is not None and proc.stderr is not None
        chunks = {proc.stdout.fileno(): Capture(), proc.stderr.fileno(): Capture()}
        names = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
        sel = selectors.DefaultSelector()
        for f in (proc.stdout, proc.stderr):
            sel.register(f, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        timed_out = False
        give_up: float | None = None
        try:
            while sel.get_map():
                now = time.monotonic()
                if give_up is None and proc.poll() is not None:
                    give_up = now + DRAIN  # the shell is done; only holders of its pipes remain
                if not timed_out and give_up is None and now >= deadline:
                    timed_out = True
                    threading.Thread(target=self._kill_group, args=(proc,), daemon=True).start()
                    give_up = now + self.kill_grace + DRAIN_AFTER_KILL
                if give_up is not None and now >= give_up:
                    break
                wait = (give_up if give_up is not None else deadline) - now
                for key, _ in sel.select(max(0.0, min(wait, POLL))):
                    data = os.read(key.fd, READ_SIZE)
                    if not data:
                        sel.unregister(key.fileobj)
                        continue
                    chunks[key.fd].add(data)
                    if on_output is not None:
                        on_output(names[key.fd], data)
        finally:
            sel.close()
            proc.stdout.close()
            proc.stderr.close()
        if timed_out:
            self._kill_group(proc)
        proc.wait()
        out, err = (chunks[f] for f in names)
        return out, err, timed_out

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
