"""Which hosts are out of reach, and which commands that holds back (SPEC section 10).

A host whose command came back ``unreachable`` stays out of the later steps: its commands
are not tried again (each would wait out the connect retries to fail the same way)
until a ``wait_for: {connection: up}`` or a ``reboot`` of it succeeds. What runs on the
controller or on another host for it (a delegated command) still runs in its group's
rescue and always steps: they are how a procedure handles a host that went away.
"""

from __future__ import annotations

import threading

from runbook.model.command import Command, CommandResult, Status
from runbook.model.plan import Section


class Reach:
    """Hosts out of reach, each with the step where it went."""

    def __init__(self) -> None:
        self._out: dict[str, str] = {}
        self._lock = threading.Lock()

    def note(self, command: Command, result: CommandResult) -> None:
        """Learn from a result: a host unreachable, or brought back by a wait or reboot."""
        with self._lock:
            if result.status is Status.UNREACHABLE:
                self._out.setdefault(command.runs_on.name, command.step)
            elif command.wait is not None and command.wait.brings_back and result.ok:
                self._out.pop(command.host.name, None)

    def held(self, command: Command, section: Section) -> tuple[Status, str] | None:
        """Why ``command`` is not run now (and its result), or None. Its own host out of
        reach: ``cancelled`` (the host failed once, where it went). The delegate it runs on
        out of reach: ``unreachable``, a failure of its host like any. A wait or reboot
        always runs: it is how a host comes back."""
        if command.wait is not None:
            return None
        with self._lock:
            hosts = [command.runs_on.name]
            if section is Section.MAIN and command.delegate is not None:
                hosts.insert(0, command.host.name)
            for name in hosts:
                step = self._out.get(name)
                if step is None:
                    continue
                why = (
                    f"{name} unreachable since step {step!r} (a wait_for: {{connection: up}} "
                    "or reboot step brings a host back)"
                )
                if name == command.host.name:
                    return Status.CANCELLED, why
                return Status.UNREACHABLE, f"delegate {why}"
        return None

    @property
    def out(self) -> dict[str, str]:
        with self._lock:
            return dict(self._out)
