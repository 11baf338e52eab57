"""INI inventories, read as Ansible's ini plugin reads them.

Where Ansible's behaviour is surprising we keep it, so that one inventory means the same
thing to both tools:

- ``key=value`` on host lines is split like a shell line (``shlex``): quotes are removed,
  and an unquoted ``#`` starts a comment even inside a word (``pw=a#b`` gives ``a``; write
  ``pw="'a#b'"``). Each value then goes through ``ast.literal_eval``: ``22`` is an int,
  ``True`` a bool, ``[1, 2]`` a list, ``'x'`` a string; anything else, lowercase ``true``
  included, stays the string written. In ``[group:vars]`` the whole rest of the line after
  ``=`` is the value (no shell splitting, so ``a # note`` keeps ``# note`` unless
  literal_eval drops it as a Python comment, as it does after ``22``).
- Hosts listed before any section, or only under ``all``, are members of ``ungrouped``.
- A group named in ``[x:children]`` or ``[x:vars]`` must be declared by an ``[x]`` or
  ``[x:children]`` section somewhere in the file; Ansible refuses the file otherwise, and
  so do we (a typo there would silently drop hosts from a step).

We are stricter than Ansible where it only warns and then drops data: empty or reversed
ranges and ``host:port`` with a non-numeric port are errors with file:line:col.
"""

from __future__ import annotations

import ast
import io
import re
import shlex
from typing import Any

from runbook.errors import InventoryError, Position
from runbook.inventory.graph import GraphBuilder
from runbook.inventory.hosts import check_vars
from runbook.inventory.ranges import PatternError, expand_host
from runbook.inventory.text import lines
from runbook.templating.lazy import mark_all

# Ansible's own regexes (plugins/inventory/ini.py), so the same names are accepted.
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_SHELL_SPECIAL = re.compile(r"[\"'\\#]")  # with none of these, shlex only splits on blanks
_SHELL_WORD = re.compile(r"[^ \t\r\n]+")  # shlex's whitespace


def read(text: str, file: str, graph: GraphBuilder) -> None:
    """Parse INI line by line, mirroring Ansible's state machine (ungrouped/hosts first)."""
    reader = _Reader(file, graph)
    for lineno, raw in enumerate(lines(text), 1):
        line = raw.strip()
        if line and line[0] not in "#;":
            reader.line(raw, line, lineno)
    reader.check_references()


class _Reader:
    def __init__(self, file: str, graph: GraphBuilder) -> None:
        self.file = file
        self.graph = graph
        self.group, self.state = "ungrouped", "hosts"
        self.declared = {"all", "ungrouped"}
        # Groups named by [x:vars] or in [y:children] before/without a declaration.
        self.references: list[tuple[str, str, Position]] = []

    def pos(self, line: int, col: int = 1) -> Position:
        return Position(self.file, line, col)

    def line(self, raw: str, line: str, lineno: int) -> None:
        here = self.pos(lineno, len(raw) - len(raw.lstrip()) + 1)
        m = _SECTION.match(line)
        if m:
            self.section(m.group(1), m.group(2) or "hosts", here)
        elif line.startswith("[") and line.endswith("]"):
            raise InventoryError(
                f"invalid section header {line!r}: a group name has no spaces, ':' or ']'; "
                "use [name], [name:vars] or [name:children]",
                here,
            )
        elif self.state == "hosts":
            self.host_line(raw, lineno)
        elif self.state == "vars":
            self.var_line(raw, line, here)
        else:
            m = _GROUP_NAME.match(line)
            if not m:
                raise InventoryError(
                    f"expected one group name per line in [{self.group}:children], got {line!r}",
                    here,
                )
            self.graph.add_child(self.group, m.group(1), here)
            self.references.append((m.group(1), f"section [{self.group}:children] lists", here))

    def section(self, group: str, state: str, here: Position) -> None:
        if state not in ("hosts", "children", "vars"):
            raise InventoryError(
                f"section [{group}:{state}] has unknown type {state!r}; "
                "use [name], [name:vars] or [name:children]",
                here,
            )
        self.group, self.state = group, state
        self.graph.group(group, here)
        if state == "vars":
            self.references.append((group, f"section [{group}:vars] is for", here))
        else:
            self.declared.add(group)

    def var_line(self, raw: str, line: str, here: Position) -> None:
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep:
            raise InventoryError(f"expected key=value in [{self.group}:vars], got {line!r}", here)
        if not key or any(ch.isspace() for ch in key):
            raise InventoryError(f"invalid variable name {key!r} in [{self.group}:vars]", here)
        after = raw[raw.index("=") + 1 :]
        where = self.pos(here.line, len(raw) - len(after.lstrip()) + 1)
        literal = mark_all(_literal(value.strip()), where)
        check_vars({key: literal}, lambda _: where)
        self.graph.set_group_var(self.group, key, literal, where)

    def host_line(self, raw: str, lineno: int) -> None:
        tokens = shell_tokens(raw, self.pos(lineno))
        if not tokens:
            return  # defensive: str.strip() and shlex disagree on a few blank characters
        (pattern_col, pattern), rest = tokens[0], tokens[1:]
        try:
            names, port = expand_host(pattern)
        except PatternError as e:
            raise InventoryError(str(e), self.pos(lineno, pattern_col + e.offset)) from None
        values: dict[str, Any] = {}
        where: dict[str, Position] = {}
        if port is not None:
            values["ansible_port"] = port
        for col, token in rest:
            key, sep, value = token.partition("=")
            if not sep:
                raise InventoryError(
                    f"expected key=value after host {pattern!r}, got {token!r}",
                    self.pos(lineno, col),
                )
            if not key:
                raise InventoryError(f"empty variable name in {token!r}", self.pos(lineno, col))
            where[key] = self.pos(lineno, col + len(key) + 1)
            values[key] = mark_all(_literal(value), where[key])
        check_vars(values, lambda key: where.get(key, self.pos(lineno, pattern_col)))
        for name in names:
            self.graph.add_host(self.group, name, values, self.pos(lineno, pattern_col))

    def check_references(self) -> None:
        for name, what, where in self.references:
            if name not in self.declared:
                raise InventoryError(
                    f"{what} group {name!r}, which is never declared; add a [{name}] section "
                    "(an empty one is enough) or fix the name",
                    where,
                )


def shell_tokens(raw: str, where: Position) -> list[tuple[int, str]]:
    """Split like Ansible's ``shlex.split(line, comments=True)``, keeping 1-based columns."""
    if not _SHELL_SPECIAL.search(raw):  # the common line; shlex reads char by char
        return [(m.start() + 1, m.group()) for m in _SHELL_WORD.finditer(raw)]
    stream = io.StringIO(raw)
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    tokens: list[tuple[int, str]] = []
    while True:
        offset = stream.tell()
        while offset < len(raw) and raw[offset] in lexer.whitespace:
            offset += 1
        try:
            token = lexer.get_token()
        except ValueError as e:  # "No closing quotation", "No escaped character"
            raise InventoryError(
                f"{str(e).lower()} in host line", Position(where.file, where.line, offset + 1)
            ) from None
        if token is None:
            return tokens
        tokens.append((offset + 1, token))


def _literal(text: str) -> Any:
    """An INI value as Ansible reads it: a Python literal if it is one, else the text."""
    if _PLAIN_INT.fullmatch(text):  # ports, ids: what literal_eval would give, 20x faster
        return int(text)
    if _NEVER_LITERAL.match(text):  # paths, names, addresses: literal_eval would fail
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value, text)


_PLAIN_INT = re.compile(r"[1-9][0-9]{0,17}|0")
# A Python literal starts (after spaces and tabs) with a digit, a dot, a sign, a quote, a
# bracket, True/False/None or a string prefix (b r u f, any case); an address such as
# 192.0.2.1 is no number either.
_NEVER_LITERAL = re.compile(r"[ \t]*(?:[^0-9.+\-'\"\[({TFNbBrRuUfF \t]|[0-9]+\.[0-9]+\.)")


def _plain(value: Any, text: str) -> Any:
    # Keep to what YAML and JSON can carry, as Ansible 2.19 does: tuples and sets become
    # lists, bytes text; complex numbers and Ellipsis fall back to what was written.
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v, repr(v)) for v in value]
    if isinstance(value, (set, frozenset)):
        return [_plain(v, repr(v)) for v in sorted(value, key=repr)]
    if isinstance(value, dict):
        return {k: _plain(v, repr(v)) for k, v in value.items()}
    return text
