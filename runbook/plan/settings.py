"""Templated settings rendered at plan time, and ``confirm`` texts (SPEC §11).

``timeout``, ``retries`` and ``delay`` belong to each command: they are rendered per
host, with the host's vars. ``serial`` and ``max_failures`` shape the step's batches and
policy, so they are rendered once per step with what every host shares: the runbook's
vars, ``-e``, ``groups``, ``runbook`` and ``step``. A setting that reads a registered
value or a secret is exit 2 — the plan shows settings as numbers, and a registered
value is not known yet. The rendered value is checked by the same schema rule as a
value written plainly (``schemas/runbook.schema.json``'s ``$defs``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from runbook.errors import Position, TemplateError
from runbook.load.settings import STEP_LEVEL
from runbook.model.command import Templates
from runbook.model.runbook import Host, Runbook, Step
from runbook.templating.env import check_syntax, template_names
from runbook.templating.env import render as render_template
from runbook.templating.native import native, value_names
from runbook.templating.render import undefined

# The schema rule each rendered setting must pass.
_RULES = {
    "timeout": "timeout",
    "retries": "retries",
    "delay": "delay",
    "serial": "serial",
    "max_failures": "count_or_percent",
}
_NUMBER = re.compile(r"\A\s*-?\d+(\.\d+)?\s*\Z")


class SettingsPlanning(Protocol):
    """What rendering settings needs of the planning pass (``planner._Planner``)."""

    runbook: Runbook
    extra: dict[str, Any]
    secrets: frozenset[str]
    registered: set[str]

    def context(self, step: Step, host: Host, reads: frozenset[str]) -> Mapping[str, Any]: ...

    def step_context(self, step: Step) -> Mapping[str, Any]: ...


class SettingsPlanner:
    def __init__(self, planner: SettingsPlanning) -> None:
        self.p = planner

    def for_host(self, step: Step, host: Host) -> Step:
        """``step`` with its templated ``timeout``/``retries``/``delay`` rendered for
        ``host``. Raises ``InputError`` at the setting's position."""
        if not step.templated:  # the usual step: nothing to render, per host or not
            return step
        own = {k: v for k, v in step.templated.items() if k not in STEP_LEVEL}
        if not own:
            return step
        reads = frozenset().union(*(value_names(v) for v in own.values()))
        ctx = self.p.context(step, host, reads)
        values = {k: self._value(step, k, v, ctx) for k, v in own.items()}
        for key in ("timeout", "delay"):
            if key in values:
                values[key] = float(values[key])
        return replace(step, spec=replace(step.spec, **values))

    def for_step(self, step: Step) -> dict[str, Any]:
        """The step's templated ``serial``/``max_failures``, rendered."""
        own = {k: v for k, v in step.templated.items() if k in STEP_LEVEL}
        if not own:
            return {}
        ctx = self.p.step_context(step)
        out = {}
        for key, source in own.items():
            missing = undefined(value_names(source) - self._later(), ctx)
            if missing:
                raise TemplateError(
                    f"{key}: '{missing[0]}' is undefined ({key} is rendered once per step: it "
                    "sees the runbook's vars, -e, groups and step, not host vars)",
                    self._at(step, key),
                    step=step.name,
                )
            out[key] = self._value(step, key, source, ctx)
        return out

    def confirm(self, step: Step, host: Host | None) -> tuple[str | None, Templates | None]:
        """The step's (or group's) ``confirm`` text: rendered now with its first host's
        context, or — when it reads a registered value — kept with the values it reads,
        rendered when it is asked (``Templates``; SPEC §11). A secret shows as its
        stand-in."""
        text = step.confirm
        if text is None or host is None or not template_names(text):
            return text, None
        where = self._at(step, "confirm")
        check_syntax(text, where)
        reads = template_names(text)
        ctx = self.p.context(step, host, reads)
        runtime = self.p.registered | {"hostvars"}
        missing = undefined(reads - runtime, ctx)
        if missing:
            raise TemplateError(f"confirm: '{missing[0]}' is undefined", where, step=step.name)
        registers = reads & runtime
        if not registers:
            return render_template(text, ctx, where), None
        templates = Templates(
            run=text,
            values={n: ctx[n] for n in sorted(reads) if n in ctx and n not in runtime},
            registers=tuple(sorted(registers)),
            positions={"run": where},
        )
        return text, templates

    def _later(self) -> frozenset[str]:
        return frozenset(self.p.secrets | self.p.registered | {"hostvars"})

    def _value(self, step: Step, key: str, source: str, ctx: Mapping[str, Any]) -> Any:
        where = self._at(step, key)
        for name in sorted(value_names(source) & self._later()):
            what = "a secret" if name in self.p.secrets else "known only at apply time"
            raise TemplateError(
                f"{key} reads {name!r}, which is {what}: settings are rendered at plan time",
                where,
                step=step.name,
            )
        value = native(source, ctx, where)
        if isinstance(value, str) and _NUMBER.match(value):
            value = float(value) if "." in value else int(value)
        _check(key, value, where, step.name)
        return value

    @staticmethod
    def _at(step: Step, key: str) -> Position:
        return step.field_positions.get(key, step.position)


def _check(key: str, value: Any, where: Position, step: str) -> None:
    """The rendered value passes the rule a plain one does (the runbook schema's)."""
    from runbook.load.loader import schema, schema_valid

    valid = schema_valid(value, "runbook", f"#/$defs/{_RULES[key]}")
    if valid is None:
        from jsonschema import Draft202012Validator

        rules = schema("runbook")
        rule = {"$ref": f"#/$defs/{_RULES[key]}", "$defs": rules["$defs"]}
        valid = next(iter(Draft202012Validator(rule).iter_errors(value)), None) is None
    if not valid or isinstance(value, bool):
        raise TemplateError(
            f"{key}: the template rendered {value!r}, which is not a valid {key}",
            where,
            step=step,
        )
