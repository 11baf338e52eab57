"""What every transfer shares: its deadline, cancellation by ``kill_all``, and one way
to turn how it ended into an ``Outcome`` (``run_command`` then decides the status).

A pool cannot stop a running job, so a transfer checks its ``Watch`` between chunks: a
timeout or a second Ctrl-C ends it there, its temp file removed, the destination as it
was. Failures an operator can act on (unwritable directory, disk full, a src that
changed) are ``TransferFailed`` and become a ``failed`` result with that message.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from runbook.model.command import Command, Outcome


def stderr_text(err: bytes) -> str:
    """A helper command's stderr for a failure message."""
    return err.decode("utf-8", "replace").strip() or "no message"


class TransferFailed(Exception):
    """The transfer could not be done; the message says why, for the operator."""


class Cancelled(Exception):
    """``kill_all`` (second Ctrl-C) stopped the transfer."""


class TimedOut(Exception):
    """The transfer outlived its step's ``timeout``."""


@dataclass
class Watch:
    """A transfer's deadline (monotonic seconds) and its cancel flag."""

    deadline: float | None
    cancel: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        """Raises ``Cancelled`` or ``TimedOut``; called between chunks."""
        if self.cancel.is_set():
            raise Cancelled()
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise TimedOut()

    def remaining(self, cap: float | None = None) -> float | None:
        """Seconds left (at least a little, so a blocking call wakes to see it is over)."""
        if self.deadline is None:
            return cap
        left = max(0.05, self.deadline - time.monotonic())
        return left if cap is None else min(left, cap)


class Transfers:
    """The transfers in flight in one execution context, so ``kill_all`` can stop them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: set[threading.Event] = set()

    @contextlib.contextmanager
    def watch(self, command: Command) -> Iterator[Watch]:
        timeout = command.timeout
        watch = Watch(time.monotonic() + timeout if timeout else None)
        with self._lock:
            self._active.add(watch.cancel)
        try:
            yield watch
        finally:
            with self._lock:
                self._active.discard(watch.cancel)

    def cancel_all(self) -> None:
        with self._lock:
            for cancel in self._active:
                cancel.set()

    def run(self, command: Command, transfer: Callable[[Watch], Outcome]) -> Outcome:
        """Run ``transfer`` under a watch; its ending as an ``Outcome``. A lost
        connection (``ConnectError``) passes through: the host is unreachable."""
        with self.watch(command) as watch:
            try:
                return transfer(watch)
            except TransferFailed as exc:
                return Outcome(rc=1, stderr=str(exc).encode(), changed=False)
            except Cancelled:
                return Outcome(rc=None, killed=True, changed=False)
            except TimedOut:
                return Outcome(rc=None, timed_out=True, changed=False)


# Test-only: a directory in the controller's environment that makes transfers stop at
# the named points a test holds (here and in the host scripts, ``scripts.pause``) until
# the test says go, so a race test swaps a path at a known moment, not by timing luck.
PAUSE_ENV = "RUNBOOK_TEST_PAUSE"
PAUSE_MAX = 30.0  # seconds a pause waits for its go at most


def pause(point: str) -> None:
    """With ``RUNBOOK_TEST_PAUSE=DIR`` and ``DIR/POINT.hold``: create ``DIR/POINT.reached``,
    then wait until ``DIR/POINT.go`` exists (at most ``PAUSE_MAX`` s). Else nothing."""
    hook = os.environ.get(PAUSE_ENV)
    if not hook or not os.path.exists(os.path.join(hook, f"{point}.hold")):
        return
    with open(os.path.join(hook, f"{point}.reached"), "w"):
        pass
    deadline = time.monotonic() + PAUSE_MAX
    while not os.path.exists(os.path.join(hook, f"{point}.go")) and time.monotonic() < deadline:
        time.sleep(0.05)


def describe_os_error(exc: OSError) -> str:
    """``[Errno 28] No space left on device: '/x'`` → ``No space left on device``."""
    return exc.strerror or str(exc) or type(exc).__name__
