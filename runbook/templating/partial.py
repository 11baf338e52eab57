"""Partial rendering: what a reviewer sees of a template that reads run-time values.

A deferred command is rendered just before it runs, but most of it is known when the plan
is made: ``{{ pg }} repoint {{ winner.stdout }}`` reads one run-time value and one var.
``partial`` renders every top-level part of a template that reads only plan-time names and
keeps the parts that read a run-time name as written (``/usr/bin/fakepg repoint {{
winner.stdout }}``); ``fold`` does the same for an expression (a ``when``), replacing each
plan-time sub-expression by its value and simplifying ``and``/``or``/``not`` around it, so
``role.stdout == 'replica' and host.name != winner.stdout`` reads, for pg1,
``role.stdout == 'replica' and 'pg1' != winner.stdout``.

Both are for showing only: what runs is always the whole template rendered at apply time.
A template they cannot split safely (``{% set %}``, macros, imports: state shared between
parts) is shown as written.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes

from runbook.errors import TemplateError
from runbook.templating.env import ENV, compile_expression, template_names
from runbook.templating.env import render as render_template

JINJA_GLOBALS = frozenset(ENV.globals)
# Tags that carry state from one part of a template to another: such a template is shown
# as written. Block tags need their end tag; the rest stand alone.
_STATEFUL = frozenset({"set", "macro", "import", "from", "include", "extends", "do", "call"})
_BLOCKS = frozenset({"if", "for", "filter", "with", "raw", "autoescape", "block", "trans"})


# -- templates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    text: str
    tag: bool  # a {{ }}, {% %} block or {# #}: rendered alone, or kept as written


def partial(source: str, ctx: Mapping[str, Any], later: frozenset[str]) -> str:
    """``source`` with every part that reads no name of ``later`` (and nothing undefined)
    rendered with ``ctx``; the other parts as written. The whole template as written when
    it cannot be split safely."""
    if "{" not in source:
        return source
    parts = _split(source)
    if parts is None:
        return source
    known = frozenset(ctx) | JINJA_GLOBALS
    out = []
    for part in parts:
        if not part.tag:
            out.append(part.text)
            continue
        names = template_names(part.text)
        if names & later or not names <= known:
            out.append(part.text)
            continue
        try:
            text = render_template(part.text, ctx)
        except TemplateError:  # fails on its own (a stand-in, say): shown as written
            text = part.text
        # A value that looks like a template ({% raw %}, a var holding braces) would read
        # as one left for apply: shown as written instead.
        out.append(part.text if _looks_templated(text) else text)
    return "".join(out)


def _looks_templated(text: str) -> bool:
    return any(o in text for o in ("{{", "{%", "{#"))


@lru_cache(maxsize=1024)
def _split(source: str) -> tuple[_Part, ...] | None:
    """Top-level parts: text, ``{{ }}``, ``{# #}`` and whole ``{% %}...{% end %}`` blocks,
    each tag with the newline after it that ``trim_blocks`` removes, and the whitespace a
    ``-`` strips taken out of the text beside it. None when it cannot be split."""
    tags = _tags(source)
    if tags is None:
        return None
    parts: list[_Part] = []
    pos = 0
    depth = 0
    start = 0
    for begin, end, kind, word in tags:
        if depth == 0 and begin > pos:
            parts.append(_Part(source[pos:begin], False))
        if kind == "{%":
            if word in _STATEFUL:
                return None
            if word in _BLOCKS:
                depth += 1
                if depth == 1:
                    start = begin
                pos = end
                continue
            if word.startswith("end") and word[3:] in _BLOCKS:
                depth -= 1
                if depth < 0:
                    return None
                if depth == 0:
                    end = _trimmed(source, end)
                    parts.append(_Part(source[start:end], True))
                pos = end
                continue
            if depth == 0:  # elif/else outside a block, or an unknown tag
                return None
            pos = end
            continue
        if depth == 0:
            if kind == "{#":
                end = _trimmed(source, end)
            parts.append(_Part(source[begin:end], True))
        pos = end
    if depth != 0:
        return None
    if pos < len(source):
        parts.append(_Part(source[pos:], False))
    return tuple(_strip_around(parts))


def _trimmed(source: str, end: int) -> int:
    """``trim_blocks``: the newline right after a block or comment tag belongs to it."""
    return end + 1 if source.startswith("\n", end) else end


def _strip_around(parts: list[_Part]) -> list[_Part]:
    """``{{-``/``-}}``: the whitespace they strip from the text beside them, stripped
    here, since a tag rendered alone has no text beside it."""
    out = list(parts)
    for i, part in enumerate(out):
        if not part.tag:
            continue
        body = part.text.rstrip("\n")
        if part.text[2:3] == "-" and i > 0 and not out[i - 1].tag:
            out[i - 1] = _Part(out[i - 1].text.rstrip(), False)
        if body[-3:-2] == "-" and i + 1 < len(out) and not out[i + 1].tag:
            out[i + 1] = _Part(out[i + 1].text.lstrip(), False)
    return out


def _tags(source: str) -> list[tuple[int, int, str, str]] | None:
    """Every tag: (start, end, opener, first word of a ``{% %}``). Quotes inside a tag
    are skipped (``'}}'`` does not end it); a ``{% raw %}`` body is not scanned."""
    closers = {"{{": "}}", "{%": "%}", "{#": "#}"}
    found: list[tuple[int, int, str, str]] = []
    i = 0
    while True:
        i = _next_open(source, i)
        if i < 0:
            return found
        kind = source[i : i + 2]
        end = _close(source, i + 2, closers[kind], kind != "{#")
        if end < 0:
            return None
        word = ""
        if kind == "{%":
            words = source[i + 2 : end - 2].strip("-+ \t\r\n").split()
            word = words[0] if words else ""
        found.append((i, end, kind, word))
        if word == "raw":
            close = source.find("endraw", end)
            if close < 0:
                return None
            i = source.rfind("{%", end, close)
            if i < 0:
                return None
            continue
        i = end


def _next_open(source: str, start: int) -> int:
    hits = [h for h in (source.find(o, start) for o in ("{{", "{%", "{#")) if h >= 0]
    return min(hits, default=-1)


def _close(source: str, start: int, closer: str, quotes: bool) -> int:
    """The index after ``closer``, skipping quoted strings; -1 when it never comes."""
    i = start
    quote = ""
    while i < len(source):
        ch = source[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif quotes and ch in "'\"":
            quote = ch
        elif source.startswith(closer, i):
            return i + 2
        i += 1
    return -1


def attributes(source: str, expression: bool = False) -> frozenset[str]:
    """Every attribute name (``x.NAME``) and constant key (``x['NAME']``) a template or
    expression reads: what ``hostvars[h].NAME`` may reach. Nothing when it does not
    parse (its syntax error is reported elsewhere)."""
    try:
        tree = ENV.parse("{{ " + source + " }}" if expression else source)
    except jinja2.TemplateSyntaxError:
        return frozenset()
    found = {n.attr for n in tree.find_all(nodes.Getattr)}
    found |= {
        n.arg.value
        for n in tree.find_all(nodes.Getitem)
        if isinstance(n.arg, nodes.Const) and isinstance(n.arg.value, str)
    }
    return frozenset(found)


# -- expressions -------------------------------------------------------------------------

# Jinja's precedence, loosest first (jinja2/parser.py): a child looser than its parent
# needs parentheses when the expression is written back.
_COND, _OR, _AND, _NOT, _CMP, _ADD, _CAT, _MUL, _POW, _UNARY, _FILTER, _POSTFIX, _ATOM = range(13)
_BINARY: dict[type[nodes.Node], tuple[str, int]] = {
    nodes.Add: ("+", _ADD),
    nodes.Sub: ("-", _ADD),
    nodes.Mul: ("*", _MUL),
    nodes.Div: ("/", _MUL),
    nodes.FloorDiv: ("//", _MUL),
    nodes.Mod: ("%", _MUL),
    nodes.Pow: ("**", _POW),
}
_OPS = {
    "eq": "==",
    "ne": "!=",
    "gt": ">",
    "gteq": ">=",
    "lt": "<",
    "lteq": "<=",
    "in": "in",
    "notin": "not in",
}
_MAX_SHOWN = 10  # items of a list value shown in place of the expression that made it
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gteq": operator.ge,
    "lt": operator.lt,
    "lteq": operator.le,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}


@dataclass(frozen=True)
class _Known:
    value: Any


@dataclass(frozen=True)
class _Text:
    text: str
    prec: int


_Folded = _Known | _Text


def fold(expression: str, ctx: Mapping[str, Any], later: frozenset[str]) -> str:
    """``expression`` with each sub-expression that reads only plan-time names replaced
    by its value, and ``and``/``or``/``not``/``if`` simplified around known values. The
    expression as written when it cannot be parsed."""
    tree = _tree(expression)
    if tree is None:
        return expression
    try:
        return _text(_Folder(ctx, later, tree.facts).fold(tree.root), _COND)
    except _Unwritable:
        return expression


@dataclass(frozen=True)
class _Facts:
    """What folding needs to know of one node, worked out once per expression."""

    names: frozenset[str]  # the variables it reads
    source: str | None  # written back, to evaluate it; None when it cannot be


@dataclass(frozen=True)
class _Tree:
    root: nodes.Node
    facts: dict[int, _Facts]  # by id() of each node of ``root`` (kept alive with it)


@lru_cache(maxsize=1024)
def _tree(expression: str) -> _Tree | None:
    """An expression parsed, with each node's facts: the same ``when`` is folded once per
    host, and parsing it each time cost 8x the plan of 1,000 hosts."""
    try:
        template = ENV.parse("{{ " + expression + " }}")
    except jinja2.TemplateSyntaxError:
        return None
    output = template.body[0] if template.body else None
    if not isinstance(output, nodes.Output) or len(output.nodes) != 1:
        return None
    root = output.nodes[0]
    facts = {}
    for node in (root, *root.find_all(nodes.Node)):
        names = {n.name for n in node.find_all(nodes.Name)}
        if isinstance(node, nodes.Name):
            names.add(node.name)
        try:
            source: str | None = unparse(node)
        except _Unwritable:
            source = None
        facts[id(node)] = _Facts(frozenset(names), source)
    return _Tree(root, facts)


class _Folder:
    def __init__(
        self, ctx: Mapping[str, Any], later: frozenset[str], facts: dict[int, _Facts]
    ) -> None:
        self.ctx = ctx
        self.later = later
        self.facts = facts

    def fold(self, node: nodes.Node) -> _Folded:
        facts = self.facts[id(node)]
        names = facts.names
        known = all(n in self.ctx or n in JINJA_GLOBALS for n in names)
        if facts.source is not None and known and not names & self.later:
            with contextlib.suppress(Exception):  # a filter may raise anything: kept as written
                value = self._value(node, facts.source)
                if _showable(value):
                    return _Known(value)
        return self._rebuild(node)

    def _value(self, node: nodes.Node, source: str | None) -> Any:
        """What ``node`` evaluates to: constants, names, attributes, comparisons and
        ``and``/``or``/``not`` directly, as Jinja does them (an evaluation by Jinja per
        host and node was most of the cost of a plan), anything else by Jinja."""
        if isinstance(node, nodes.Const):
            return node.value
        if isinstance(node, nodes.Name) and node.name in self.ctx:
            return self.ctx[node.name]
        if isinstance(node, nodes.Getattr):
            return ENV.getattr(self._sub(node.node), node.attr)
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            return ENV.getitem(self._sub(node.node), node.arg.value)
        if isinstance(node, nodes.Compare):
            left = self._sub(node.expr)
            for operand in node.ops:
                right = self._sub(operand.expr)
                if not _COMPARE[operand.op](left, right):
                    return False
                left = right
            return True
        if isinstance(node, nodes.And):
            return self._sub(node.left) and self._sub(node.right)
        if isinstance(node, nodes.Or):
            return self._sub(node.left) or self._sub(node.right)
        if isinstance(node, nodes.Not):
            return not self._sub(node.node)
        if source is None:
            raise _Unwritable(type(node).__name__)
        names = self.facts[id(node)].names
        return compile_expression(source)(**{n: self.ctx[n] for n in names if n in self.ctx})

    def _sub(self, node: nodes.Node) -> Any:
        return self._value(node, self.facts[id(node)].source)

    def _rebuild(self, node: nodes.Node) -> _Folded:
        if isinstance(node, nodes.And | nodes.Or):
            return self._logical(node)
        if isinstance(node, nodes.Not):
            inner = self.fold(node.node)
            if isinstance(inner, _Known):
                return _Known(not inner.value)
            return _Text(f"not {_text(inner, _NOT)}", _NOT)
        if isinstance(node, nodes.CondExpr):
            test = self.fold(node.test)
            if isinstance(test, _Known):
                chosen = node.expr1 if test.value else node.expr2
                return _Known(None) if chosen is None else self.fold(chosen)
            return _Text(_cond(node, test, self.fold), _COND)
        return _Text(*_write(node, self.fold))

    def _logical(self, node: nodes.And | nodes.Or) -> _Folded:
        is_and = isinstance(node, nodes.And)
        left, right = self.fold(node.left), self.fold(node.right)
        # Left to right, as Jinja evaluates: a decisive left value ends it; a neutral one
        # (true and X, false or X) leaves X; so does a neutral right one (for a condition).
        if isinstance(left, _Known):
            if bool(left.value) != is_and:
                return left
            return right
        if isinstance(right, _Known) and bool(right.value) == is_and:
            return left
        op, prec = ("and", _AND) if is_and else ("or", _OR)
        return _Text(f"{_text(left, prec)} {op} {_text(right, prec + 1)}", prec)


def _showable(value: Any) -> bool:
    """A value that reads back as a literal (a string, number, bool, none, or a short
    list of those): anything else keeps the expression that makes it."""
    if value is None or isinstance(value, str | int | float | bool):
        return not isinstance(value, jinja2.Undefined)
    if isinstance(value, list | tuple) and len(value) <= _MAX_SHOWN:
        return all(v is None or isinstance(v, str | int | float | bool) for v in value)
    return False


def literal(value: Any) -> str:
    """A value as a Jinja literal: ``'pg1'``, ``3``, ``true``, ``none``, ``['a', 'b']``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return repr(value)


def _text(folded: _Folded, needed: int) -> str:
    if isinstance(folded, _Known):
        return literal(folded.value)
    return folded.text if folded.prec >= needed else f"({folded.text})"


def unparse(node: nodes.Node) -> str:
    """An expression node written back as Jinja source (parentheses where needed)."""
    text, _ = _write(node, lambda n: _Text(*_write(n, _plain)))
    return text


def _plain(node: nodes.Node) -> _Folded:
    return _Text(*_write(node, _plain))


def _cond(node: nodes.CondExpr, test: _Folded, sub: Callable[[nodes.Node], _Folded]) -> str:
    text = f"{_text(sub(node.expr1), _OR)} if {_text(test, _OR)}"
    if node.expr2 is not None:
        text += f" else {_text(sub(node.expr2), _COND)}"
    return text


def _write(node: nodes.Node, sub: Callable[[nodes.Node], _Folded]) -> tuple[str, int]:
    """(source, precedence) of ``node``, its children written by ``sub``."""

    def child(n: nodes.Node, needed: int) -> str:
        return _text(sub(n), needed)

    if isinstance(node, nodes.Const):
        return literal(node.value), _ATOM
    if isinstance(node, nodes.Name):
        return node.name, _ATOM
    if isinstance(node, nodes.Getattr):
        return f"{child(node.node, _POSTFIX)}.{node.attr}", _POSTFIX
    if isinstance(node, nodes.Getitem):
        return f"{child(node.node, _POSTFIX)}[{child(node.arg, _COND)}]", _POSTFIX
    if isinstance(node, nodes.Slice):
        bits = [child(b, _COND) if b is not None else "" for b in (node.start, node.stop)]
        step = "" if node.step is None else ":" + child(node.step, _COND)
        return ":".join(bits) + step, _ATOM
    if isinstance(node, nodes.Call):
        return f"{child(node.node, _POSTFIX)}({_args(node, child)})", _POSTFIX
    if isinstance(node, nodes.Filter | nodes.Test):
        base = "" if node.node is None else child(node.node, _FILTER)
        sep = " | " if isinstance(node, nodes.Filter) else " is "
        args = f"({_args(node, child)})" if node.args or node.kwargs or node.dyn_args else ""
        return f"{base}{sep}{node.name}{args}", _FILTER
    if isinstance(node, nodes.Compare):
        ops = " ".join(f"{_OPS[o.op]} {child(o.expr, _ADD)}" for o in node.ops)
        return f"{child(node.expr, _ADD)} {ops}", _CMP
    if isinstance(node, nodes.And | nodes.Or):
        op, prec = ("and", _AND) if isinstance(node, nodes.And) else ("or", _OR)
        return f"{child(node.left, prec)} {op} {child(node.right, prec + 1)}", prec
    if isinstance(node, nodes.Not):
        return f"not {child(node.node, _NOT)}", _NOT
    if isinstance(node, nodes.Neg | nodes.Pos):
        sign = "-" if isinstance(node, nodes.Neg) else "+"
        return f"{sign}{child(node.node, _UNARY)}", _UNARY
    if isinstance(node, nodes.Concat):
        return " ~ ".join(child(n, _CAT + 1) for n in node.nodes), _CAT
    if type(node) in _BINARY:
        op, prec = _BINARY[type(node)]
        binary: Any = node
        return f"{child(binary.left, prec)} {op} {child(binary.right, prec + 1)}", prec
    if isinstance(node, nodes.CondExpr):
        return _cond(node, sub(node.test), sub), _COND
    if isinstance(node, nodes.List):
        return "[" + ", ".join(child(n, _COND) for n in node.items) + "]", _ATOM
    if isinstance(node, nodes.Tuple):
        items = [child(n, _COND) for n in node.items]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")", _ATOM
    if isinstance(node, nodes.Dict):
        pairs = [f"{child(p.key, _COND)}: {child(p.value, _COND)}" for p in node.items]
        return "{" + ", ".join(pairs) + "}", _ATOM
    raise _Unwritable(type(node).__name__)


def _args(node: Any, child: Callable[[nodes.Node, int], str]) -> str:
    args = [child(a, _COND) for a in node.args]
    args += [f"{k.key}={child(k.value, _COND)}" for k in node.kwargs]
    if node.dyn_args is not None:
        args.append("*" + child(node.dyn_args, _ATOM))
    if node.dyn_kwargs is not None:
        args.append("**" + child(node.dyn_kwargs, _ATOM))
    return ", ".join(args)


class _Unwritable(Exception):
    """A node this module cannot write back (never produced by an expression parse)."""
