"""Fault injection (the seed's ``GP_COMMAND_FAULT_POINT``) as a wrapper around a context.

With ``RUNBOOK_FAULT_POINT=<prefix>``, commands of steps whose name starts with the prefix
are not executed and fail with rc 1 and stderr ``fault injection``, to rehearse failure
policies. The engine itself knows nothing about it.
"""

from __future__ import annotations

from runbook.model.command import Command, Outcome
from runbook.model.runbook import Host
from runbook.run.contexts.base import ExecutionContext, OutputCallback

FAULT_ENV = "RUNBOOK_FAULT_POINT"


class FaultInjectingContext(ExecutionContext):
    def __init__(self, inner: ExecutionContext, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix

    def connect(self, host: Host) -> None:
        self.inner.connect(host)

    def reconnect(self, host: Host) -> None:
        self.inner.reconnect(host)

    def execute(self, command: Command, on_output: OutputCallback | None = None) -> Outcome:
        if command.step.startswith(self.prefix):
            return Outcome(rc=1, stderr=b"fault injection")
        return self.inner.execute(command, on_output)

    def transfer(self, command: Command) -> Outcome:
        if command.step.startswith(self.prefix):
            return Outcome(rc=1, stderr=b"fault injection")
        return self.inner.transfer(command)

    def kill_all(self) -> None:
        self.inner.kill_all()

    def close(self) -> None:
        self.inner.close()


def with_faults(context: ExecutionContext, prefix: str | None) -> ExecutionContext:
    """``context``, wrapped when a fault point is set."""
    return FaultInjectingContext(context, prefix) if prefix else context
