"""The execution-context interface, kept as small as Invoke's runner hooks.

A context runs one attempt of a command and reports an ``Outcome``; it enforces the
command's timeout itself (a pool cannot stop a running job, so the timer that kills lives
here). Retries and the status decision live in ``runbook.run.execute.run_command``; fault injection
is a wrapper context (``contexts/fault.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from runbook.model.command import Command, Outcome
from runbook.model.runbook import Host
from runbook.options import KILL_GRACE

__all__ = [
    "DRAIN",
    "DRAIN_AFTER_KILL",
    "KILL_GRACE",
    "READ_SIZE",
    "ExecutionContext",
    "OutputCallback",
]

OutputCallback = Callable[[str, bytes], None]

# How every transport reads a command's output.
READ_SIZE = 1 << 18  # bytes per read
DRAIN = 2.0  # seconds to wait for the output's end after the command exited (a background
# child can hold stdout open): then it is left, with what came
DRAIN_AFTER_KILL = 2.0  # seconds to wait for output after the kill grace, then give up


class ExecutionContext(ABC):
    def connect(self, host: Host) -> None:  # noqa: B027 - optional hook
        """Open the connection to ``host`` ahead of use. Raises ``ConnectError``."""

    def reconnect(self, host: Host) -> None:
        """Forget ``host``'s connection, its sessions and a failure to connect, and try
        one new connection: how ``wait_for: {connection}`` and ``reboot`` poll, and how a
        rebooted host's session is rebuilt. Raises ``ConnectError``."""
        self.connect(host)

    @abstractmethod
    def execute(self, command: Command, on_output: OutputCallback | None = None) -> Outcome:
        """Run one attempt of ``command`` to completion or timeout; ``on_output(stream,
        chunk)`` ("stdout" or "stderr") is called as output arrives, and must be quick.

        Raises ``ConnectError`` when the host cannot be reached; the command did not start.
        """

    def transfer(self, command: Command) -> Outcome:
        """One attempt of a copy or fetch (``command.transfer``), within its timeout;
        ``Outcome.changed`` says whether a file was written. Raises ``ConnectError``
        as ``execute`` does."""
        raise NotImplementedError(f"{type(self).__name__} cannot transfer files")

    @abstractmethod
    def kill_all(self) -> None:
        """Kill every command in flight (second Ctrl-C): their process trees, TERM then KILL."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Safe to call twice."""
