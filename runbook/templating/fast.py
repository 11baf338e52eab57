"""A fast path for the templates most commands are made of: text and ``{{ name.attr |
filter }}`` interpolations.

Planning 1,000 hosts × 20 steps renders 20,000+ templates; Jinja spends ~25 µs on each in
context set-up and generator machinery, more than the text costs. A template made only of
literal text and expressions that read a variable (``a``, ``a.b``, ``a['b']``) through
plain one-argument filters (``quote``, ``lower``…), and integer ``+ - *``, is compiled
here into one generated Python function instead (a render is one call, not a call per
node). Anything else — a statement, a call, another operator, a filter with arguments,
a value the path cannot read — gives ``None``, and Jinja renders it as always, so the
output, and every error message, stays Jinja's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import nodes

Renderer = Callable[[Mapping[str, Any]], "str | None"]


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


def _integers(a: Any, b: Any) -> None:
    """``port_base + 1``: integers only (a string, a float or a bool: Jinja's way)."""
    if type(a) is not int or type(b) is not int:
        raise _Miss


def _add(a: Any, b: Any) -> int:
    _integers(a, b)
    return int(a + b)


def _sub(a: Any, b: Any) -> int:
    _integers(a, b)
    return int(a - b)


def _mul(a: Any, b: Any) -> int:
    _integers(a, b)
    return int(a * b)


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


_OPERATORS = {nodes.Add: "_add", nodes.Sub: "_sub", nodes.Mul: "_mul"}


def _code(node: nodes.Node, filters: Mapping[str, Any], names: dict[str, Any]) -> str:
    """A Python expression that reads ``node`` from ``ctx`` (a missing name: KeyError),
    or ``_Miss`` when the node is outside the fast subset. Filters are bound in
    ``names`` as ``_f1``, ``_f2``..."""
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return f"ctx[{node.name!r}]"
    if isinstance(node, nodes.Getattr) and not node.attr.startswith(_UNSAFE_PREFIX):
        return f"_getattr({_code(node.node, filters, names)}, {node.attr!r})"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return f"_getitem({_code(node.node, filters, names)}, {node.arg.value!r})"
    if isinstance(node, nodes.Add | nodes.Sub | nodes.Mul):
        left, right = _code(node.left, filters, names), _code(node.right, filters, names)
        return f"{_OPERATORS[type(node)]}({left}, {right})"
    if isinstance(node, nodes.Const) and isinstance(node.value, int | str):
        return repr(node.value)
    if isinstance(node, nodes.Filter) and _plain_filter(node, filters):
        assert node.node is not None
        name = f"_f{len(names)}"
        names[name] = filters[node.name]
        return f"{name}({_code(node.node, filters, names)})"
    raise _Miss


def compile_fast(template: nodes.Template, filters: Mapping[str, Any]) -> Renderer | None:
    """One generated function rendering a template of the fast subset, or None.

    ``"pg_ctl -D {{ data_dir | quote }}"`` becomes ``"pg_ctl -D " +
    _text(_f1(ctx["data_dir"]))``, inside a ``try``: any exception (a missing name,
    ``_Miss``, a filter's) makes it return None, and Jinja renders the template instead,
    saying what is wrong its own way."""
    if len(template.body) != 1 or not isinstance(template.body[0], nodes.Output):
        return None if template.body else _empty
    names: dict[str, Any] = {
        "_text": _to_text,
        "_getattr": _getattr,
        "_getitem": _getitem,
        "_add": _add,
        "_sub": _sub,
        "_mul": _mul,
    }
    try:
        pieces = [
            repr(node.data)
            if isinstance(node, nodes.TemplateData)
            else f"_text({_code(node, filters, names)})"
            for node in template.body[0].nodes
        ]
    except _Miss:
        return None
    source = (
        "def render(ctx):\n"
        "    try:\n"
        f"        return {' + '.join(pieces) or repr('')}\n"
        "    except Exception:\n"
        "        return None\n"
    )
    exec(compile(source, "<fast template>", "exec"), names)
    render: Renderer = names["render"]
    return render


def _empty(ctx: Mapping[str, Any]) -> str:
    return ""
