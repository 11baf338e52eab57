"""Routes each command to the local context or the SSH one by its host's ``connection``.

The SSH context (and paramiko with it) is created only when a remote host is used, so a
localhost-only run never pays for importing paramiko.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from runbook.model.command import Command, Outcome
from runbook.model.runbook import Host
from runbook.run.contexts.base import ExecutionContext, OutputCallback
from runbook.run.contexts.local import LocalExecutionContext


class HostRouter(ExecutionContext):
    def __init__(self, ssh_factory: Callable[[], ExecutionContext] | None = None) -> None:
        self.local = LocalExecutionContext()
        self._ssh_factory = ssh_factory
        self._ssh: ExecutionContext | None = None
        self._lock = threading.Lock()

    def _for(self, host: Host) -> ExecutionContext:
        if host.is_local:
            return self.local
        if self._ssh is None:
            with self._lock:
                if self._ssh is None:
                    if self._ssh_factory is None:
                        raise RuntimeError("no SSH context configured")
                    self._ssh = self._ssh_factory()
        return self._ssh

    def connect(self, host: Host) -> None:
        self._for(host).connect(host)

    def reconnect(self, host: Host) -> None:
        self._for(host).reconnect(host)

    def execute(self, command: Command, on_output: OutputCallback | None = None) -> Outcome:
        return self._for(command.host).execute(command, on_output)

    def transfer(self, command: Command) -> Outcome:
        return self._for(command.host).transfer(command)

    def kill_all(self) -> None:
        self.local.kill_all()
        if self._ssh is not None:
            self._ssh.kill_all()

    def close(self) -> None:
        self.local.close()
        if self._ssh is not None:
            self._ssh.close()
