"""Plan time for ``loop`` (SPEC §11): one command per item, in order, on each host.

A list known at plan time (a YAML list, or a template over vars) gives one command per
item, each rendered with the item bound to ``loop_var`` (``item``) — ``when`` too, so it
may skip single items, as Ansible's does. A list that reads a registered value (or a
secret, or ``hostvars``) is known only at run time: the host gets one command holding
the loop's source and its templates, expanded into items just before its turn
(``run/loops.py``). A ``loop`` that is not a list at plan time is exit 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from runbook.errors import TemplateError
from runbook.model.command import Command
from runbook.model.controller import NO_ITEMS, Loop, LoopItem
from runbook.model.runbook import Host, Step
from runbook.templating.native import native, value_names
from runbook.templating.render import undefined


class LoopPlanning(Protocol):
    """What planning a loop needs of the planning pass (``planner._Planner``)."""

    secrets: frozenset[str]
    registered: set[str]

    def context(self, step: Step, host: Host, reads: frozenset[str]) -> Mapping[str, Any]: ...

    def host(self, host: Host) -> Host: ...

    def command(
        self,
        step: Step,
        host: Host,
        extra: Mapping[str, Any] | None = None,
        loop: Loop | None = None,
    ) -> Command: ...


class LoopPlanner:
    def __init__(self, planner: LoopPlanning) -> None:
        self.p = planner

    def commands(self, step: Step, host: Host) -> list[Command]:
        """The host's commands for a loop step: one per item, or one to expand at run
        time. Raises ``InputError`` (the caller adds the step and the host)."""
        source, var = step.loop, step.loop_var
        where = step.field_positions.get("loop", step.position)
        reads = value_names(source)
        later = self.p.secrets | self.p.registered | {"hostvars"}
        if reads & later:
            missing = undefined(reads - later, self.p.context(step, host, reads))
            if missing:
                raise TemplateError(f"loop: '{missing[0]}' is undefined", where)
            return [self.p.command(step, host, loop=Loop(source, var))]
        items = native(source, self.p.context(step, host, reads), where)
        if not isinstance(items, list):
            raise TemplateError(f"loop: expected a list, got {_shown(items)}", where)
        if not items:
            return [
                Command(
                    step=step.name,
                    host=self.p.host(host),
                    cmd=step.run or "",
                    spec=step.spec,
                    skip_reason=NO_ITEMS,
                )
            ]
        return [
            replace(self.p.command(step, host, {var: value}), item=LoopItem(i, value, var))
            for i, value in enumerate(items)
        ]


def _shown(value: Any) -> str:
    kind = {dict: "a mapping", type(None): "null"}.get(type(value))
    return kind or f"{type(value).__name__} {value!r}"[:80]
