"""A fast path for the templates most commands are made of: text and ``{{ name.attr |
filter }}`` interpolations.

Planning 1,000 hosts × 20 steps renders 20,000+ templates; Jinja spends ~25 µs on each in
context set-up and generator machinery, more than the text costs. A template made only of
literal text and expressions that read a variable (``a``, ``a.b``, ``a['b']``) through
plain one-argument filters (``quote``, ``lower``…) is compiled here into a list of small
functions instead. Anything else — a statement, a call, an operator, a filter with
arguments, a value the path cannot read — returns ``None``, and Jinja renders it as
always, so the output, and every error message, stays Jinja's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import nodes

Part = Callable[[Mapping[str, Any]], str]


class _Miss(Exception):
    """The fast path cannot say what Jinja would: let Jinja render."""


_UNSAFE_PREFIX = "_"  # the sandbox refuses such attributes; Jinja reports it


def _getattr(obj: Any, name: str) -> Any:
    """Jinja's ``obj.name`` for a mapping key that is not also an attribute."""
    if isinstance(obj, Mapping) and not hasattr(type(obj), name) and name in obj:
        return obj[name]
    raise _Miss


def _getitem(obj: Any, key: Any) -> Any:
    if isinstance(obj, Mapping) and key in obj:
        return obj[key]
    if isinstance(obj, list | tuple) and isinstance(key, int) and -len(obj) <= key < len(obj):
        return obj[key]
    raise _Miss


def _value(node: nodes.Node, filters: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], Any]:
    """A getter for ``node``, or ``_Miss`` when the node is outside the fast subset."""
    if isinstance(node, nodes.Name) and node.ctx == "load":
        name = node.name

        def load(ctx: Mapping[str, Any]) -> Any:
            try:
                return ctx[name]
            except KeyError:
                raise _Miss from None

        return load
    if isinstance(node, nodes.Getattr) and not node.attr.startswith(_UNSAFE_PREFIX):
        inner, attr = _value(node.node, filters), node.attr
        return lambda ctx: _getattr(inner(ctx), attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        inner, key = _value(node.node, filters), node.arg.value
        return lambda ctx: _getitem(inner(ctx), key)
    if isinstance(node, nodes.Add | nodes.Sub | nodes.Mul):
        return _arithmetic(node, filters)
    if isinstance(node, nodes.Const) and isinstance(node.value, int | str):
        value = node.value
        return lambda ctx: value
    if isinstance(node, nodes.Filter) and _plain_filter(node, filters):
        assert node.node is not None
        inner, func = _value(node.node, filters), filters[node.name]
        return lambda ctx: func(inner(ctx))
    raise _Miss


_OPERATORS: dict[type, Callable[[int, int], int]] = {
    nodes.Add: lambda a, b: a + b,
    nodes.Sub: lambda a, b: a - b,
    nodes.Mul: lambda a, b: a * b,
}


def _arithmetic(
    node: nodes.BinExpr, filters: Mapping[str, Any]
) -> Callable[[Mapping[str, Any]], Any]:
    """``port_base + 1``: integers only (a string, a float or a bool: Jinja's way)."""
    left, right, op = (
        _value(node.left, filters),
        _value(node.right, filters),
        _OPERATORS[type(node)],
    )

    def compute(ctx: Mapping[str, Any]) -> Any:
        a, b = left(ctx), right(ctx)
        if type(a) is not int or type(b) is not int:
            raise _Miss
        return op(a, b)

    return compute


def _plain_filter(node: nodes.Filter, filters: Mapping[str, Any]) -> bool:
    """A filter of one argument that needs no context, environment or eval context."""
    func = filters.get(node.name)
    return (
        func is not None
        and node.node is not None
        and not (node.args or node.kwargs or node.dyn_args or node.dyn_kwargs)
        and getattr(func, "jinja_pass_arg", None) is None
    )


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float) or value is None:
        return str(value)
    raise _Miss  # Jinja's own str() of other objects (a dict, an Undefined) stays Jinja's


def compile_fast(template: nodes.Template, filters: Mapping[str, Any]) -> list[Part] | None:
    """Parts of a template in the fast subset, or None."""
    if len(template.body) != 1 or not isinstance(template.body[0], nodes.Output):
        return None if template.body else []
    parts: list[Part] = []
    try:
        for node in template.body[0].nodes:
            parts.append(
                _literal(node.data)
                if isinstance(node, nodes.TemplateData)
                else _shown(_value(node, filters))
            )
    except _Miss:
        return None
    return parts


def _literal(text: str) -> Part:
    return lambda ctx: text


def _shown(get: Callable[[Mapping[str, Any]], Any]) -> Part:
    return lambda ctx: _to_text(get(ctx))


def try_render(parts: list[Part], context: Mapping[str, Any]) -> str | None:
    """The rendered text, or None when Jinja must render it (a value the fast path cannot
    read as Jinja would). ``parts`` come from ``compile_fast``."""
    try:
        return "".join(part(context) for part in parts)
    except _Miss:
        return None
    except Exception:  # a filter failed: Jinja renders again and reports it its way
        return None
