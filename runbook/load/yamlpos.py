"""YAML loading that keeps where every key and value came from.

PyYAML's node graph carries marks; we build plain Python data from it ourselves so that
each document path maps to a ``Position``. Building from nodes also lets us refuse what a
runbook never needs: non-standard tags (``!!python/object``), duplicate keys (PyYAML
silently keeps the last), and alias bombs (billion laughs expand exponentially). The one
tag beyond YAML's own is Ansible's ``!vault`` on a string: it becomes a ``Vaulted``.

Runbooks go through ``load_yaml``; inventories, which walk their structure node by node,
use the same pieces: ``compose`` (text to a node), ``Builder.pairs`` (a mapping's keys with
``<<`` merges resolved and duplicates refused) and ``Builder.build`` (node to data).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import yaml

from runbook.errors import LoadError, Position
from runbook.load.vault import Vaulted

MAX_BYTES = 5 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 100  # levels of lists and mappings: far past any runbook, far below recursion limits
_SURROGATE = re.compile("[\ud800-\udfff]")
_MERGE = "tag:yaml.org,2002:merge"
VAULT_TAG = "!vault"

Path = tuple[Any, ...]
# Called with each string value (not key) and where its text starts; returns what to keep.
StringHook = Callable[[str, Position], str]

_SAFE_TAGS = {
    "tag:yaml.org,2002:" + t
    for t in ("null", "bool", "int", "float", "str", "timestamp", "binary", "map", "seq")
}


class YamlSyntaxError(LoadError):
    """The text does not parse as YAML; ``detail`` is PyYAML's account of why."""

    def __init__(self, detail: str, position: Position) -> None:
        super().__init__(f"YAML syntax error: {detail}", position)
        self.detail = detail


class Builder:
    """Builds data from nodes, recording positions and enforcing the guarantees above.

    ``max_nodes`` bounds every value built through this builder, aliases expanded, so one
    builder per document keeps an alias bomb from expanding however it is reached.
    """

    def __init__(
        self, filename: str, max_nodes: int = MAX_NODES, strings: StringHook | None = None
    ) -> None:
        self.filename = filename
        self.positions: dict[Path, Position] = {}
        self.nodes = 0
        self.max_nodes = max_nodes
        self.strings = strings
        self._scalars = yaml.constructor.SafeConstructor()
        self._active: set[int] = set()  # collections being built: met again = recursive alias

    def pos(self, node: yaml.Node) -> Position:
        m = node.start_mark
        return Position(self.filename, m.line + 1, m.column + 1)

    def build(self, node: yaml.Node, path: Path = (), depth: int = 0) -> Any:
        if depth == 0:
            self._check_size(node)
        self.nodes += 1
        if depth > MAX_DEPTH:
            raise too_deep(self.pos(node))
        if self.nodes > self.max_nodes:
            raise self._too_large(node)
        self.positions.setdefault(path, self.pos(node))
        if node.tag == VAULT_TAG and isinstance(node, yaml.ScalarNode):
            return Vaulted(node.value, self.pos(node))  # decrypted when a step reads it
        self.check_tag(node)
        if isinstance(node, yaml.ScalarNode):
            value = self.scalar(node)
            if self.strings is not None and isinstance(value, str):
                value = self.strings(value, self._text_pos(node))
            return value
        if id(node.value) in self._active:
            raise LoadError(
                "recursive alias: it refers to the list or mapping it is nested in",
                self.pos(node),
            )
        self._active.add(id(node.value))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path, depth)
            return [self.build(n, (*path, i), depth + 1) for i, n in enumerate(node.value)]
        finally:
            self._active.discard(id(node.value))

    def _check_size(self, root: yaml.Node) -> None:
        """Refuse, before building anything, a value whose aliases expand past the budget:
        sizes are counted once per distinct node, so a bomb costs its size, not its
        expansion. Building would find it too, but only after 200,000 steps."""
        budget = self.max_nodes - self.nodes
        sizes: dict[int, int] = {}

        def size(node: yaml.Node, depth: int) -> int:
            if not isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) or depth > MAX_DEPTH:
                return 1  # too deep: build() says so, at the right node
            key = id(node.value)  # an alias is a copy of its anchor's node, sharing .value
            if key in sizes:
                return max(sizes[key], 0)  # -1: inside itself; build() names the recursion
            sizes[key] = -1
            if isinstance(node, yaml.SequenceNode):
                total = 1 + sum(size(n, depth + 1) for n in node.value)
            else:
                total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
            if total > budget:
                raise self._too_large(node)
            sizes[key] = total
            return total

        size(root, 0)

    def _too_large(self, node: yaml.Node) -> LoadError:
        return LoadError(
            f"document too large (alias expansion?); limit is {self.max_nodes} values",
            self.pos(node),
        )

    def check_tag(self, node: yaml.Node) -> None:
        if node.tag not in _SAFE_TAGS and node.tag != _MERGE:
            raise LoadError(
                f"unsupported YAML tag {node.tag!r}; runbook reads plain YAML and "
                "ansible-vault `!vault` strings only (no `!unsafe` or language-specific tags)",
                self.pos(node),
            )

    def scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            value = self._scalars.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise LoadError(f"bad scalar: {exc}", self.pos(node)) from None
        if isinstance(value, str) and _SURROGATE.search(value):
            value = self._join_surrogates(value, node)
        return value

    def _text_pos(self, node: yaml.ScalarNode) -> Position:
        if node.style in ("|", ">"):  # block scalar text starts on the line after the indicator
            return Position(self.filename, node.start_mark.line + 2, 1)
        return self.pos(node)

    def _join_surrogates(self, value: str, node: yaml.Node) -> str:
        """``"\\ud83c\\udf89"`` (JSON-style escapes) is one character; a lone half is an error:
        it cannot be encoded, so it would fail later, in the middle of a run."""
        try:
            return value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            raise LoadError(
                "string contains an unpaired UTF-16 surrogate escape", self.pos(node)
            ) from None

    def pairs(self, node: yaml.MappingNode) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        """Key and value nodes of a mapping: its own keys in order, then what ``<<`` merges
        in (earlier sources win), duplicate and non-scalar keys refused."""
        return list(self._merged(node, frozenset()).values())

    def _merged(
        self, node: yaml.MappingNode, active: frozenset[int]
    ) -> dict[str, tuple[yaml.ScalarNode, yaml.Node]]:
        if id(node.value) in active:
            raise LoadError("a merge key (<<) refers to the mapping it is in", self.pos(node))
        active = active | {id(node.value)}
        own: dict[str, tuple[yaml.ScalarNode, yaml.Node]] = {}
        merged: dict[str, tuple[yaml.ScalarNode, yaml.Node]] = {}
        for knode, vnode in node.value:
            if knode.tag == _MERGE:
                sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        raise LoadError("'<<' merges only mappings", self.pos(src))
                    for key, pair in self._merged(src, active).items():
                        merged.setdefault(key, pair)
                continue
            if not isinstance(knode, yaml.ScalarNode):
                raise LoadError("mapping keys must be plain strings", self.pos(knode))
            if knode.value in own:
                first = own[knode.value][0].start_mark.line + 1
                raise LoadError(
                    f"duplicate key {knode.value!r} (first at line {first})", self.pos(knode)
                )
            own[knode.value] = (knode, vnode)
        return {**own, **{k: v for k, v in merged.items() if k not in own}}

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for knode, vnode in self.pairs(node):
            self.check_tag(knode)
            key = self.scalar(knode)
            if not isinstance(key, str):
                key = str(key)
            if key in out:  # `1:` and `"1":` differ as text but are one key
                raise LoadError(f"duplicate key {key!r}", self.pos(knode))
            self.positions[(*path, key)] = self.pos(knode)
            out[key] = self.build(vnode, (*path, key), depth + 1)
            if isinstance(vnode, yaml.ScalarNode) and vnode.style in ("|", ">"):
                self.positions[(*path, key, "<text>")] = self._text_pos(vnode)
        return out


def too_deep(position: Position) -> LoadError:
    return LoadError(
        f"too deeply nested: more than {MAX_DEPTH} levels of lists and mappings", position
    )


class _TooDeep(yaml.YAMLError):
    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__()
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """PyYAML returns the anchored node itself for an alias, so an error found through an
    alias would point at the anchor; a shallow copy carries the alias's own position.

    PyYAML's pure-Python composer recurses once per level: a document nested deeper than
    ``MAX_DEPTH`` is refused before it can exhaust the stack (libyaml refuses 1,000
    levels itself since PyYAML 6.0.2's wheels, and such a document comes here)."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = copy.copy(super().compose_node(parent, index))
            if node is not None:
                node.start_mark = mark
            return node
        if self.depth > MAX_DEPTH:
            raise _TooDeep(self.peek_event().start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


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
    return count_nodes(root, stop_at_alias=True) < 0


def count_nodes(root: yaml.Node, stop_at_alias: bool = False) -> int:
    """Distinct nodes of a composed document (aliases not expanded); -1 at the first alias
    when ``stop_at_alias``. A budget proportional to this lets big documents through while
    alias bombs, which expand far past their size, still fail."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            if stop_at_alias:
                return -1
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack += (k, v)
    return len(seen)


def compose(text: str, filename: str) -> yaml.Node | None:
    """One YAML document's node graph (None when empty); ``YamlSyntaxError`` if it does not
    parse, ``LoadError`` if it holds more than one document."""
    try:
        nodes = _compose(text)
    except _TooDeep as exc:
        raise too_deep(Position(filename, exc.mark.line + 1, exc.mark.column + 1)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark and "end of stream" in (exc.problem or ""):
            mark = exc.context_mark  # the end of the file says nothing: show what is unclosed
        where = Position(filename, mark.line + 1, mark.column + 1) if mark else Position(filename)
        raise YamlSyntaxError(" ".join(p for p in (exc.context, exc.problem) if p), where) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc), Position(filename)) from None
    if len(nodes) > 1:
        raise LoadError("more than one YAML document", Builder(filename).pos(nodes[1]))
    return nodes[0] if nodes else None


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
    node = compose(text, filename)
    if node is None:
        return None, {}
    builder = Builder(filename)
    data = builder.build(node, ())
    return data, builder.positions
