"""Jinja in inventory values, rendered lazily: when a template reads it, as Ansible does.

Inventories from Ansible put templates in values (kubespray's ``kube_cert_dir: "{{
kube_config_dir }}/ssl"``). Readers of inventory *files* mark such strings as
``TemplatedValue`` (a ``str``, so everything that treats vars as data keeps working) with
the position of their text; values printed by an inventory script are never marked, and
``runbook inventory`` shows them raw, as ``ansible-inventory --list`` does. The planner
calls ``resolve_templates`` on what a step reads, with its own render function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.meta

from runbook.errors import InventoryError, Position

# render(source, context, position) -> text: the planner passes runbook.templating.env.render.
Render = Callable[[str, dict[str, Any], Position | None], str]

_MARKERS = ("{{", "{%", "{#")


class TemplatedValue(str):
    """A string from an inventory file holding Jinja; ``position`` is where its text starts."""

    position: Position

    def __new__(cls, text: str, position: Position) -> TemplatedValue:
        value = super().__new__(cls, text)
        value.position = position
        return value

    def __reduce__(self) -> tuple[Any, ...]:  # copy.deepcopy and pickle keep the position
        return (TemplatedValue, (str(self), self.position))


def mark(text: str, position: Position) -> str:
    """``text`` as a TemplatedValue if it holds Jinja; the readers' string hook."""
    if any(m in text for m in _MARKERS):
        return TemplatedValue(text, position)
    return text


def mark_all(value: Any, position: Position) -> Any:
    """Mark every string inside ``value`` (an INI literal can be a list or a dict)."""
    if isinstance(value, str):
        return mark(value, position)
    if isinstance(value, list):
        return [mark_all(v, position) for v in value]
    if isinstance(value, dict):
        return {k: mark_all(v, position) for k, v in value.items()}
    return value


def has_templates(value: Any) -> bool:
    if isinstance(value, TemplatedValue):
        return True
    if isinstance(value, (list, tuple)):
        return any(has_templates(v) for v in value)
    if isinstance(value, dict):
        return any(has_templates(v) for v in value.values())
    return False


def resolve_templates(value: Any, context: Mapping[str, Any], render: Render) -> Any:
    """``value`` with every TemplatedValue in it rendered, recursively.

    A template may read other vars of ``context`` that are templates themselves; those are
    rendered first (each once). Raises ``InventoryError`` at file:line when vars read each
    other in a loop, and whatever ``render`` raises for a bad template.
    """
    if not has_templates(value):
        return value
    return _Resolver(context, render).value(value)


class _Resolver:
    def __init__(self, context: Mapping[str, Any], render: Render) -> None:
        self.context = context
        self.render = render
        self.done: dict[str, Any] = {}
        self.stack: list[str] = []  # names being rendered, outermost first

    def value(self, value: Any) -> Any:
        if isinstance(value, TemplatedValue):
            return self.template(value)
        if isinstance(value, (list, tuple)) and has_templates(value):
            return [self.value(v) for v in value]
        if isinstance(value, dict) and has_templates(value):
            return {k: self.value(v) for k, v in value.items()}
        return value

    def template(self, source: TemplatedValue) -> str:
        context = dict(self.context)
        for name in _reads(str(source)):
            if name in context and has_templates(context[name]):
                context[name] = self.name(name, source)
        return self.render(str(source), context, source.position)

    def name(self, name: str, reader: TemplatedValue) -> Any:
        if name in self.done:
            return self.done[name]
        if name in self.stack:
            loop = " -> ".join([*self.stack[self.stack.index(name) :], name])
            raise InventoryError(
                f"variables refer to each other in a loop: {loop}; "
                f"{self.stack[-1]!r} cannot be rendered",
                reader.position,
            )
        self.stack.append(name)
        try:
            self.done[name] = self.value(self.context[name])
        finally:
            self.stack.pop()
        return self.done[name]


def template_reads(
    value: Any, context: Mapping[str, Any], _seen: frozenset[str] = frozenset()
) -> frozenset[str]:
    """Every name the templates in ``value`` read, through other templated vars too."""
    names: set[str] = set()
    for source in _templates(value):
        for name in _reads(str(source)):
            names.add(name)
            other = context.get(name)
            if name not in _seen and has_templates(other):
                names |= template_reads(other, context, _seen | {name})
    return frozenset(names)


def first_template(value: Any) -> TemplatedValue | None:
    return next(iter(_templates(value)), None)


def _templates(value: Any) -> list[TemplatedValue]:
    if isinstance(value, TemplatedValue):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _templates(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _templates(v)]
    return []


@lru_cache(maxsize=4096)
def _reads(source: str) -> frozenset[str]:
    """The names a template reads; none if it does not parse (render then says why)."""
    from runbook.templating.env import ENV  # the one Jinja environment

    try:
        return frozenset(jinja2.meta.find_undeclared_variables(ENV.parse(source)))
    except jinja2.TemplateSyntaxError:
        return frozenset()
