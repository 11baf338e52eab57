"""Values from templates: what ``set``, ``loop`` and templated settings compute.

A command is text; a value need not be. As Ansible does, a template that is a single
``{{ expression }}`` gives the expression's own value — ``"{{ databases }}"`` is the
list, ``"{{ lsns | length }}"`` a number — and any other template its rendered text. A
list or a mapping written in YAML has each of its strings computed so. Values are made
plain data (lists, dicts, strings, numbers), as JSON stores them: a journaled value and
a restored one are the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import jinja2
from markupsafe import Markup

from runbook.errors import Position, TemplateError
from runbook.templating.env import compile_expression, render, template_names

_SINGLE = re.compile(r"\A\s*\{\{-?(.*?)-?\}\}\s*\Z", re.DOTALL)


def single_expression(source: str) -> str | None:
    """The expression of a template made of one ``{{ }}`` and nothing else."""
    m = _SINGLE.match(source)
    if m is None or "{{" in m.group(1) or "}}" in m.group(1):
        return None
    return m.group(1).strip()


def strings(value: Any) -> list[str]:
    """The strings inside a value as written (a template, or a list or mapping of them)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings(v)]
    return []


def value_names(value: Any) -> frozenset[str]:
    """Every name the templates inside ``value`` read."""
    return frozenset().union(*(template_names(s) for s in strings(value)))


def native(value: Any, context: Mapping[str, Any], position: Position | None = None) -> Any:
    """``value`` computed against ``context``; raises ``TemplateError`` at ``position``."""
    if isinstance(value, str):
        expression = single_expression(value)
        if expression is None:
            return render(value, context, position)
        return plain(_evaluate(expression, context, position))
    if isinstance(value, Mapping):
        return {str(k): native(v, context, position) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [native(v, context, position) for v in value]
    return value


def _evaluate(expression: str, context: Mapping[str, Any], position: Position | None) -> Any:
    try:
        compiled = compile_expression(expression)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax: {exc.message}", position) from None
    try:
        result = compiled(**context)
        _check_defined(result)
        return result
    except TemplateError:
        raise
    except jinja2.UndefinedError as exc:
        raise TemplateError(str(exc.message), position) from None
    except Exception as exc:  # a filter may raise anything on the values it gets
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise TemplateError(f"template error: {what}", position) from None


def _check_defined(value: Any) -> None:
    """An undefined name inside the result is an error here, not a value stored."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined: raises with its message
    elif isinstance(value, Mapping):
        for v in value.values():
            _check_defined(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_defined(v)


def plain(value: Any) -> Any:
    """``value`` as plain data: tuples, ranges, sets and generators become lists, mappings
    dicts, ``Markup`` its text; anything else that is not JSON's is its text."""
    if isinstance(value, Markup):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [plain(v) for v in value]
    return str(value)
