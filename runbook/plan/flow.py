"""Plan time for the failure paths (SPEC section 10): where a delegated step runs, the
``batch`` a host belongs to, and the commands of ``wait_for`` and ``reboot`` steps.

Everything here is known when the plan is made: a delegate, a batch and a wait's address
and port are shown in the plan, so none of them may read a registered value or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import replace
from typing import Any, Protocol

from runbook.errors import InputError, Position, TemplateError
from runbook.inventory.build import Inventory
from runbook.model.command import Command, Templates
from runbook.model.runbook import Connection, Host, Step
from runbook.model.waits import WaitKind
from runbook.templating.env import evaluate, expression_names, template_names
from runbook.templating.env import render as render_template

CONTROLLER = "controller"  # delegate_to: this machine
# Names a rescue step may read that only the run knows (per host, SPEC section 10).
RESCUE_NAMES = frozenset({"failed_step", "failed_result"})
# Names the planner gives templates beyond the host's vars (never a register's name).
FLOW_NAMES = frozenset({"batch", "delegate"}) | RESCUE_NAMES


class FlowPlanning(Protocol):
    """What this module needs of the planning pass (``planner._Planner``)."""

    inventory: Inventory
    secrets: frozenset[str]
    registered: set[str]

    def context(
        self, step: Step, host: Host, reads: frozenset[str]
    ) -> MutableMapping[str, Any]: ...

    def host(self, host: Host) -> Host: ...

    def with_become(self, step: Step, host: Host) -> Step: ...


def batch_facts(hosts: list[str], number: int, count: int) -> dict[str, Any]:
    """What templates see as ``batch`` inside a group or a step with ``serial``."""
    return {"hosts": list(hosts), "number": number, "count": count}


def controller(inventory: Inventory) -> Host:
    """The controller as a host: the inventory's ``localhost`` made local (even one the
    inventory reaches over SSH), else the implicit one."""
    known = inventory.hosts.get("localhost")
    return replace(known, connection=Connection.LOCAL) if known else inventory.controller


def shown_delegate(host: Host) -> str:
    """How the plan names a delegate: ``controller`` for this machine."""
    return CONTROLLER if host.is_local else host.name


class Flow:
    """The delegate and wait part of one planning pass."""

    def __init__(self, planner: FlowPlanning) -> None:
        self.p = planner

    def later(self) -> frozenset[str]:
        return self.p.secrets | self.p.registered | {"hostvars"}

    def _plan_time(self, step: Step, key: str, source: str, what: str) -> None:
        """``source`` may read only plan-time values: it is shown in the plan."""
        for name in sorted(template_names(source) & self.later()):
            raise TemplateError(
                f"{what} reads {name!r}, which is known only at apply time; {what} is "
                "rendered at plan time and shown in the plan",
                _at(step, key),
            )

    def delegate(self, step: Step, ctx: Mapping[str, Any]) -> Host | None:
        """The host a delegated step runs on, for the target whose context is ``ctx``.
        Raises ``InputError`` for a host the inventory does not have."""
        if step.delegate_to is None:
            return None
        where = _at(step, "delegate_to")
        self._plan_time(step, "delegate_to", step.delegate_to, "delegate_to")
        name = render_template(step.delegate_to, ctx, where).strip()
        if name == CONTROLLER:
            return controller(self.p.inventory)
        found = self.p.inventory.hosts.get(name)
        if found is None:
            raise InputError(
                f"delegate_to: unknown host {name!r} (not in the inventory; "
                f"`{CONTROLLER}` is this machine)",
                where,
            )
        return self.p.host(found)

    def wait_command(self, step: Step, host: Host) -> Command:
        """One host's ``wait_for`` or ``reboot``: its templates rendered now."""
        action = step.wait
        assert action is not None
        templates = action.templates()
        when = step.when
        when_reads = expression_names(when) if when is not None else frozenset()
        reads = frozenset(n for t in templates.values() for n in template_names(t))
        ctx = self.p.context(step, host, reads | when_reads)
        host = self.p.host(host)
        step = self.p.with_become(step, host)
        if action.kind is WaitKind.REBOOT and host.is_local:
            raise InputError(
                f"reboot on {host.name!r}, a local host: that is the controller running this "
                "run; reboot remote hosts only",
                _at(step, "reboot"),
            )
        values = {}
        kind = action.kind.value
        for key, source in templates.items():
            self._plan_time(step, f"{kind}.{key}", source, f"{kind}.{key}")
            values[key] = render_template(source, ctx, _at(step, f"{kind}.{key}"))
        try:
            done = action.rendered(values)
        except ValueError as exc:
            raise InputError(f"{kind}: {exc}", _at(step, f"{kind}.port")) from None
        cmd = Command(step=step.name, host=host, cmd=done.summary(), spec=step.spec, wait=done)
        if when is None:
            return cmd
        later = self.later()
        if when_reads & later:  # decided just before it runs (RunValues.executable)
            at = _at(step, "when")
            t = Templates(
                run="",
                when=when,
                values={n: ctx[n] for n in sorted(when_reads) if n in ctx and n not in later},
                secrets=tuple(sorted(when_reads & self.p.secrets)),
                registers=tuple(sorted(when_reads & (self.p.registered | {"hostvars"}))),
                positions={"when": at} if at is not None else {},
            )
            return replace(cmd, templates=t)
        if not evaluate(when, ctx, _at(step, "when")):
            return replace(cmd, skip_reason=f"when: {when}")
        return cmd


def _at(step: Step, key: str) -> Position | None:
    return step.field_positions.get(key) or step.field_positions.get(key.split(".")[0])
