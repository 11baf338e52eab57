"""Evaluating a ``set`` or an ``assert`` against a template context: one rule for plan
time (everything read is known) and run time (registered values read too)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from runbook.errors import Position
from runbook.model.controller import Assertion, SetValues
from runbook.templating.env import check_syntax, evaluate
from runbook.templating.env import render as render_template
from runbook.templating.native import native, single_expression, strings


def computed(values: SetValues, ctx: Mapping[str, Any], pos: Mapping[str, Position]) -> SetValues:
    """``values`` with each name computed, in order: a name sees the ones before it.
    Raises ``TemplateError`` at its position."""
    seen = dict(ctx)
    done: dict[str, Any] = {}
    for name, template in values.templates:
        done[name] = seen[name] = native(template, seen, pos.get(f"set.{name}"))
    return replace(values, values=done)


def checked(assertion: Assertion, ctx: Mapping[str, Any], pos: Mapping[str, Position]) -> Assertion:
    """``assertion`` decided: ``held``, and the message a host that fails it is told —
    ``message`` rendered, or the first expression that does not hold."""
    failed = next((e for e in assertion.that if not evaluate(e, ctx, pos.get("assert.that"))), None)
    if failed is None:
        return replace(assertion, held=True, failure=None)
    if assertion.message is None:
        failure = f"assertion failed: {failed}"
    else:
        failure = render_template(assertion.message, ctx, pos.get("assert.message"))
    return replace(assertion, held=False, failure=failure)


def check_controlled_syntax(
    controlled: SetValues | Assertion | None, pos: Mapping[str, Position]
) -> None:
    """A ``set``'s templates and an ``assert``'s expressions and message parse (``{{ }}``
    inside ``that`` says so). Raises ``TemplateError`` at the field."""
    if isinstance(controlled, SetValues):
        for name, template in controlled.templates:
            for source in strings(template):
                where = pos.get(f"set.{name}")
                check_syntax(source, where)
                expression = single_expression(source)
                if expression is not None:
                    check_syntax(expression, where, expression=True)
    elif isinstance(controlled, Assertion):
        for expression in controlled.that:
            check_syntax(expression, pos.get("assert.that"), expression=True)
        if controlled.message is not None:
            check_syntax(controlled.message, pos.get("assert.message"))
