"""The runbook as data: frozen dataclasses built by the loader, read by the planner."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any

from runbook.errors import Position, position_of
from runbook.model.controller import DEFAULT_LOOP_VAR, Assertion, SetValues
from runbook.model.files import FileAction
from runbook.model.spec import ExecSpec
from runbook.model.waits import WaitAction

# Only this name is local by default; an address of 127.0.0.1 still means SSH (test fleets).
LOCAL_NAMES = frozenset({"localhost"})


class Connection(enum.StrEnum):
    SSH = "ssh"
    LOCAL = "local"


@dataclass(frozen=True)
class Host:
    """One target. ``connection`` is ``ssh`` or ``local``; ``address`` defaults to ``name``."""

    name: str
    address: str | None = None
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    connection: Connection = Connection.SSH
    vars: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    groups: tuple[str, ...] = ()
    # From ansible_become / ansible_become_user / a ProxyJump in ansible_ssh_common_args;
    # None: not set by the inventory.
    become: bool | None = None
    become_user: str | None = None
    proxy_jump: str | None = None

    @property
    def is_local(self) -> bool:
        return self.connection == Connection.LOCAL

    def to_dict(self) -> dict[str, Any]:
        """How a plan file stores the host: its connection fields that are set (vars are
        not stored: commands are already rendered)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "vars") or value is None or value == ():
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> Host:
        known = {f.name for f in fields(cls)} - {"name", "vars"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"host {name!r}: unknown fields {sorted(unknown)}")
        values: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        if "connection" in values:
            values["connection"] = Connection(values["connection"])
        return cls(name=name, **values)

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
    """Where a secret's value comes from: an environment variable, a file, or the stdout
    of a command run on the controller (``pipe``, in ``cwd``)."""

    name: str
    env: str | None = None
    file: str | None = None
    position: Position | None = None
    pipe: str | None = None
    cwd: str | None = None


@dataclass(frozen=True)
class Step:
    """One step as written, with what it inherits already applied: ``defaults`` and its
    group's settings in ``spec``, its group's and includes' env, tags, ``when`` and vars.

    A step runs a command (``run``), moves a file (``transfer``: ``copy`` or ``fetch``),
    A step runs a command (``run``; ``loop`` runs it once per item), moves a file
    (``transfer``: ``copy`` or ``fetch``), waits or reboots (``wait``: ``wait_for`` or
    ``reboot``), computes values or checks them on the controller (``set_values``,
    ``assertion``) or is a group (``steps``: inner steps that run on each batch of the
    group's hosts in turn, then its ``rescue`` steps on the hosts that failed one, then its
    ``always`` steps on every host of the batch). Includes are expanded by the loader.
    """

    name: str
    position: Position
    spec: ExecSpec = ExecSpec()
    run: str | None = None
    transfer: FileAction | None = None
    steps: tuple[Step, ...] = ()
    hosts: str | list[str] | None = None  # None: all (a top-level step), the batch (inner)
    local: bool = False
    env: dict[str, str] = field(default_factory=dict)
    serial: int | str | list[int | str] | None = None
    when: str | None = None
    run_once: bool = False
    tags: tuple[str, ...] = ()
    confirm: str | None = None
    register: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)  # from includes: over host vars
    delegate_to: str | None = None  # "controller" or an inventory host (a template)
    wait: WaitAction | None = None
    rescue: tuple[Step, ...] = ()  # a group's, SPEC section 10
    always: tuple[Step, ...] = ()
    set_values: SetValues | None = None
    assertion: Assertion | None = None
    loop: Any = None  # a template, or a list (its strings may be templates)
    loop_var: str = DEFAULT_LOOP_VAR
    # Settings written as templates (timeout, retries, delay, serial, max_failures),
    # rendered at plan time; ``spec``/``serial`` hold the defaults meanwhile.
    templated: dict[str, str] = field(default_factory=dict)
    # Declared free of side effects by the author: `plan --check` runs it (SPEC §12).
    discover: bool = False
    # Positions of individual fields, for errors that point inside the step.
    field_positions: dict[str, Position] = field(default_factory=dict, compare=False)

    @property
    def is_group(self) -> bool:
        return bool(self.steps)

    def walk(self) -> list[Step]:
        """This step, then its inner, rescue and always steps (in order)."""
        return [self, *self.steps, *self.rescue, *self.always]


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
    files: tuple[str, ...] = ()  # the runbook and every file it includes (for --resume)
    positions: dict[tuple, Position] = field(default_factory=dict, compare=False)
    # Runbook-level ``always``: after the steps, or after a halt, before the recap.
    always: tuple[Step, ...] = ()

    def all_steps(self) -> list[Step]:
        """Every step, groups before their inner steps, in file order; the runbook's
        ``always`` steps last."""
        return [s for top in (*self.steps, *self.always) for s in top.walk()]

    def position(self, *path: Any) -> Position:
        """Best known position for a document path, falling back to its parents."""
        return position_of(self.positions, path, self.path)
