"""The runbook as data: frozen dataclasses built by the loader, read by the planner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.errors import Position

# Only this name is local by default; an address of 127.0.0.1 still means SSH (test fleets).
LOCAL_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class Host:
    """One target. ``connection`` is ``ssh`` or ``local``; ``address`` defaults to ``name``."""

    name: str
    address: str | None = None
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    connection: str = "ssh"
    vars: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    groups: tuple[str, ...] = ()
    # From ansible_become / ansible_become_user / a ProxyJump in ansible_ssh_common_args;
    # None: not set by the inventory.
    become: bool | None = None
    become_user: str | None = None
    proxy_jump: str | None = None

    @property
    def is_local(self) -> bool:
        return self.connection == "local"

    def facts(self) -> dict[str, Any]:
        """What templates see as ``host``."""
        return {
            "name": self.name,
            "address": self.address or self.name,
            "port": self.port,
            "user": self.user,
            "groups": list(self.groups),
        }


@dataclass(frozen=True)
class SecretSpec:
    """Where a secret's value comes from: an environment variable or a file."""

    name: str
    env: str | None = None
    file: str | None = None
    position: Position | None = None


@dataclass(frozen=True)
class Step:
    name: str
    run: str
    position: Position
    hosts: str | list[str] = "all"
    local: bool = False
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    serial: int | str | list[int | str] | None = None
    on_failure: str = "halt"
    max_failures: int | str = 0
    retries: int = 0
    delay: float = 0.0
    until: str | None = None
    when: str | None = None
    run_once: bool = False
    become: bool = False
    become_user: str | None = None
    tags: tuple[str, ...] = ()
    shell: str = "/bin/bash"
    confirm: str | None = None
    # Positions of individual fields, for errors that point inside the step.
    field_positions: dict[str, Position] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Runbook:
    name: str
    path: str
    steps: tuple[Step, ...]
    description: str = ""
    inventory: tuple[str, ...] = ()
    hosts: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[SecretSpec, ...] = ()
    digest: str = ""
    positions: dict[tuple, Position] = field(default_factory=dict, compare=False)

    def position(self, *path: Any) -> Position:
        """Best known position for a document path, falling back to its parents."""
        p = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), Position(self.path, 1, 1))
