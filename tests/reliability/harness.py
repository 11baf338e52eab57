"""Helpers for SSH fault and load tests: files that point runbook at a ``tests/fleet.py``
fleet under other names, and the in-process pipeline (plan, router, listener) for tests
that measure threads and fds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fleet import Fleet


@dataclass
class SshFiles:
    """An ssh_config (``Host *``: user, key, known_hosts) and a known_hosts for a fleet.

    Runbooks then name hosts freely with ``address``/``port``: many names can share one
    sshd, and a relay port can carry a fleet host's key.
    """

    ssh_config: Path
    known_hosts: Path

    def cli_args(self) -> list[str]:
        return ["--ssh-config", str(self.ssh_config), "--known-hosts", str(self.known_hosts)]


def ssh_files(fleet: Fleet, directory: Path, aliases: Iterable[tuple[int, str]] = ()) -> SshFiles:
    """Write the files; ``aliases`` adds ``(port, fleet host name)``: that port presents
    the named host's key (a relay in front of it)."""
    known = directory / "known_hosts"
    lines = [fleet[name].public_key for _, name in aliases]
    known.write_text(
        fleet.known_hosts_text()
        + "".join(
            f"[127.0.0.1]:{port} {key}\n" for (port, _), key in zip(aliases, lines, strict=True)
        )
    )
    config = directory / "ssh_config"
    config.write_text(
        "Host *\n"
        "    User root\n"
        f"    IdentityFile {fleet.client_key}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known}\n"
    )
    return SshFiles(config, known)


def hosts_yaml(entries: Iterable[tuple[str, int]], group: str = "fleet") -> str:
    """Inline ``hosts:`` for ``(name, port)`` pairs, all at 127.0.0.1."""
    lines = ["hosts:", f"  {group}:", "    hosts:"]
    lines += [f"      {name}: {{address: 127.0.0.1, port: {port}}}" for name, port in entries]
    return "\n".join(lines) + "\n"


@dataclass
class Collector:
    """A run listener that keeps every event as a dict (thread-safe)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, event: Any) -> None:
        with self._lock:
            self.events.append(event.to_dict())

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["event"] == kind]

    def results(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(e["step"], e["host"]): e for e in self.of("command_finished")}


def build_plan(path: Path) -> Any:
    """load → inventory → plan, as ``runbook plan`` does (no -e, no selection)."""
    from runbook.inventory.build import build_inventory
    from runbook.load.loader import load_runbook
    from runbook.plan.planner import make_plan

    rb = load_runbook(str(path))
    inventory = build_inventory(rb.hosts, list(rb.inventory), rb.positions, rb.path)
    return make_plan(rb, inventory)


def ssh_router(**options: Any) -> Any:
    """A ``HostRouter`` whose SSH context uses ``SshOptions(**options)``; close it after."""
    from runbook.run.contexts.router import HostRouter
    from runbook.run.ssh.context import SshExecutionContext, SshOptions

    return HostRouter(lambda: SshExecutionContext(SshOptions(**options)))
