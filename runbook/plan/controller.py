"""Plan time for ``set`` and ``assert``: the controller's steps (SPEC §11).

Both are evaluated per host from the host's template context. When they read only
plan-time values they are decided now — a ``set``'s values join the host's context, so
later steps render with them at plan time, and an ``assert`` is known to hold or not —
and the plan shows the result. When they read a registered value (or a secret, or
``hostvars``) they are kept as templates with the values they read bound, and evaluated
just before their turn at run time; a ``set`` evaluated then makes its names run-time
values too (later readers are deferred, as readers of a register are).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from runbook.errors import TemplateError
from runbook.model.command import Command, Templates
from runbook.model.controller import Assertion, SetValues
from runbook.model.runbook import Host, Runbook, Step
from runbook.templating.controlled import check_controlled_syntax, checked, computed
from runbook.templating.env import evaluate, expression_names, template_names
from runbook.templating.native import value_names
from runbook.templating.render import undefined


class ControllerPlanning(Protocol):
    """What planning a controller step needs of the planning pass (``planner._Planner``)."""

    runbook: Runbook
    secrets: frozenset[str]
    registered: set[str]
    set_values: dict[str, dict[str, Any]]

    def context(self, step: Step, host: Host, reads: frozenset[str]) -> Mapping[str, Any]: ...

    def host(self, host: Host) -> Host: ...


def check_controller_syntax(step: Step) -> None:
    """Templates and expressions of a ``set`` or ``assert`` parse. Raises
    ``TemplateError`` at the field."""
    check_controlled_syntax(step.set_values or step.assertion, step.field_positions)


class ControllerPlanner:
    """The ``set``/``assert`` part of one planning pass (``planner._Planner`` delegates)."""

    def __init__(self, planner: ControllerPlanning) -> None:
        self.p = planner

    def command(self, step: Step, host: Host) -> Command:
        """One host's ``set`` or ``assert``. Raises ``InputError`` (the caller adds the
        step and the host)."""
        reads = self._reads(step)
        when = step.when
        ctx = self.p.context(step, host, reads)
        host = self.p.host(host)
        later = self.p.secrets | self.p.registered | {"hostvars"}
        self._check_defined(step, reads, ctx, later)
        when_later = when is not None and bool(expression_names(when) & later)
        if when is not None and not when_later:
            if not evaluate(when, ctx, step.field_positions.get("when")):
                return self._command(step, host, _as_written(step), f"when: {when}", None)
            when = None
        if reads & later:
            return self._later(step, host, ctx, reads, later, when)
        controlled = self._now(step, ctx)
        return self._command(step, host, controlled, None, None)

    def _reads(self, step: Step) -> frozenset[str]:
        names: set[str] = set()
        if step.set_values is not None:
            earlier: set[str] = set()  # a name sees the ones before it in the same set
            for name, template in step.set_values.templates:
                names |= value_names(template) - earlier
                earlier.add(name)
        if step.assertion is not None:
            for expression in step.assertion.that:
                names |= expression_names(expression)
            if step.assertion.message is not None:
                names |= template_names(step.assertion.message)
        if step.when is not None:
            names |= expression_names(step.when)
        return frozenset(names)

    def _check_defined(
        self, step: Step, reads: frozenset[str], ctx: Mapping[str, Any], later: frozenset[str]
    ) -> None:
        missing = undefined(reads, frozenset(set(ctx) | later))
        if missing:
            kind = "set" if step.set_values is not None else "assert"
            raise TemplateError(
                f"'{missing[0]}' is undefined (not a variable, nor registered or set by an "
                "earlier step)",
                step.field_positions.get(kind, step.position),
            )

    def _now(self, step: Step, ctx: Mapping[str, Any]) -> SetValues | Assertion:
        """Evaluated at plan time: every value read is known."""
        if step.set_values is not None:
            return computed(step.set_values, ctx, step.field_positions)
        assert step.assertion is not None
        return checked(step.assertion, ctx, step.field_positions)

    def _later(
        self,
        step: Step,
        host: Host,
        ctx: Mapping[str, Any],
        reads: frozenset[str],
        later: frozenset[str],
        when: str | None,
    ) -> Command:
        """Evaluated at run time: the values read that are known now are bound."""
        pos = step.field_positions
        positions = {
            k: p
            for k, p in pos.items()
            if k in ("when", "set", "assert") or k.startswith(("set.", "assert."))
        }
        templates = Templates(
            run="",
            when=when,
            values={n: ctx[n] for n in sorted(reads) if n in ctx and n not in later},
            secrets=tuple(sorted(reads & self.p.secrets)),
            registers=tuple(sorted(reads & (self.p.registered | {"hostvars"}))),
            positions=positions,
        )
        return self._command(step, host, _as_written(step), None, templates)

    @staticmethod
    def _command(
        step: Step,
        host: Host,
        controlled: SetValues | Assertion,
        skip: str | None,
        templates: Templates | None,
    ) -> Command:
        return Command(
            step=step.name,
            host=host,
            cmd=controlled.summary(),
            spec=step.spec,
            skip_reason=skip,
            templates=templates,
            controlled=controlled,
        )

    def after(self, step: Step, commands: list[Command], targeted: list[str]) -> None:
        """A ``set``'s names after it is planned: values known now join each host's
        context (every targeted host's, for ``run_once``); names computed at run time
        make their readers deferred."""
        for c in commands:
            values = c.controlled
            if not isinstance(values, SetValues) or c.skip_reason is not None:
                continue
            if values.values is None:
                self.p.registered.update(values.names)
                continue
            for name in targeted if step.run_once or step.local else [c.host.name]:
                self.p.set_values.setdefault(name, {}).update(values.values)


def _as_written(step: Step) -> SetValues | Assertion:
    found = step.set_values or step.assertion
    assert found is not None
    return found
