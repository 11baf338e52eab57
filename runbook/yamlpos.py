"""YAML loading that keeps where every key and value came from.

PyYAML's node graph carries marks; we build plain Python data from it ourselves so that
each document path maps to a ``Position``. Building from nodes also lets us refuse what a
runbook never needs: non-standard tags (``!!python/object``), duplicate keys (PyYAML
silently keeps the last), and alias bombs (billion laughs expand exponentially).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from runbook.errors import LoadError, Position

MAX_BYTES = 5 * 1024 * 1024
MAX_NODES = 200_000
_SURROGATE = re.compile("[\ud800-\udfff]")

Path = tuple[Any, ...]

_SAFE_TAGS = {
    "tag:yaml.org,2002:" + t
    for t in ("null", "bool", "int", "float", "str", "timestamp", "binary", "map", "seq")
}


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.positions: dict[Path, Position] = {}
        self.nodes = 0
        self._scalars = yaml.constructor.SafeConstructor()

    def pos(self, node: yaml.Node) -> Position:
        m = node.start_mark
        return Position(self.filename, m.line + 1, m.column + 1)

    def build(self, node: yaml.Node, path: Path, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > 100:
            raise LoadError(
                "document too large or too deeply nested (alias expansion?); "
                f"limit is {MAX_NODES} values",
                self.pos(node),
            )
        if node.tag not in _SAFE_TAGS and not node.tag.startswith("tag:yaml.org,2002:merge"):
            raise LoadError(f"unsupported YAML tag {node.tag!r}", self.pos(node))
        self.positions.setdefault(path, self.pos(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                value = self._scalars.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise LoadError(f"bad scalar: {exc}", self.pos(node)) from None
            if isinstance(value, str) and _SURROGATE.search(value):
                value = self._join_surrogates(value, node)
            return value
        if isinstance(node, yaml.SequenceNode):
            return [self.build(n, (*path, i), depth + 1) for i, n in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        return self._mapping(node, path, depth)

    def _join_surrogates(self, value: str, node: yaml.Node) -> str:
        """``"\\ud83c\\udf89"`` (JSON-style escapes) is one character; a lone half is an error:
        it cannot be encoded, so it would fail later, in the middle of a run."""
        try:
            return value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            raise LoadError(
                "string contains an unpaired UTF-16 surrogate escape", self.pos(node)
            ) from None

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        raise LoadError("'<<' merges only mappings", self.pos(src))
                    for k, v in self._mapping(src, path, depth + 1).items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(knode, yaml.ScalarNode):
                raise LoadError("mapping keys must be plain strings", self.pos(knode))
            key = self.build(knode, (*path, "<key>"), depth + 1)
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                raise LoadError(f"duplicate key {key!r}", self.pos(knode))
            self.positions[(*path, key)] = self.pos(knode)
            out[key] = self.build(vnode, (*path, key), depth + 1)
            if isinstance(vnode, yaml.ScalarNode) and vnode.style in ("|", ">"):
                # Block scalar text starts on the line after the indicator.
                m = vnode.start_mark
                self.positions[(*path, key, "<text>")] = Position(self.filename, m.line + 2, 1)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out


class _Loader(yaml.SafeLoader):
    """PyYAML returns the anchored node itself for an alias, so an error found through an
    alias would point at the anchor; a shallow copy carries the alias's own position."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = copy.copy(super().compose_node(parent, index))
            if node is not None:
                node.start_mark = mark
            return node
        return super().compose_node(parent, index)


def load_yaml(filename: str) -> tuple[Any, dict[Path, Position]]:
    """Read and parse ``filename``; every failure is a ``LoadError`` with a position."""
    try:
        with open(filename, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror}", Position(filename)) from None
    return parse_yaml(raw, filename)


_FAST = getattr(yaml, "CSafeLoader", None)  # libyaml: present with PyYAML's wheels


def _compose(text: str) -> list[yaml.Node]:
    """libyaml composes ~10x faster (1,000 inline hosts: 160 -> 13 ms). It cannot give an
    alias its own position, and its error messages differ, so a document that uses an
    alias, or that does not parse, is composed again by ``_Loader``."""
    if _FAST is not None:
        try:
            nodes = list(yaml.compose_all(text, Loader=_FAST))
        except yaml.YAMLError:
            pass
        else:
            if not any(_has_alias(n) for n in nodes):
                return nodes
    return list(yaml.compose_all(text, Loader=_Loader))


def _has_alias(root: yaml.Node) -> bool:
    """An alias is the anchored node object met a second time."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return True
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack += (k, v)
    return False


def parse_yaml(raw: bytes, filename: str) -> tuple[Any, dict[Path, Position]]:
    if len(raw) > MAX_BYTES:
        raise LoadError(f"file larger than {MAX_BYTES // (1024 * 1024)} MiB", Position(filename))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LoadError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})", Position(filename, line, 1)
        ) from None
    try:
        nodes = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark and "end of stream" in (exc.problem or ""):
            mark = exc.context_mark  # the end of the file says nothing: show what is unclosed
        where = Position(filename, mark.line + 1, mark.column + 1) if mark else Position(filename)
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise LoadError(f"YAML syntax error: {what}", where) from None
    except yaml.YAMLError as exc:
        raise LoadError(f"YAML error: {exc}", Position(filename)) from None
    if len(nodes) > 1:
        raise LoadError("more than one YAML document", _Builder(filename).pos(nodes[1]))
    if not nodes:
        return None, {}
    builder = _Builder(filename)
    data = builder.build(nodes[0], ())
    return data, builder.positions
