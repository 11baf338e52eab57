"""The execution-context interface, kept as small as Invoke's runner hooks.

A context runs one attempt of a command and reports an ``Outcome``; it enforces the
command's timeout itself (a pool cannot stop a running job, so the timer that kills lives
here). Retries, fault injection and the status decision live in ``Command.run``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from runbook.command import Command, Outcome
from runbook.model import Host

# Seconds between SIGTERM and SIGKILL when a command is killed.
KILL_GRACE = 3.0


class ExecutionContext(ABC):
    def connect(self, host: Host) -> None:  # noqa: B027 - optional hook
        """Open the connection to ``host`` ahead of use. Raises ``ConnectError``."""

    @abstractmethod
    def execute(self, command: Command) -> Outcome:
        """Run one attempt of ``command`` to completion or timeout.

        Raises ``ConnectError`` when the host cannot be reached; the command did not start.
        """

    @abstractmethod
    def kill_all(self) -> None:
        """Kill every command in flight (second Ctrl-C): their process trees, TERM then KILL."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Safe to call twice."""
