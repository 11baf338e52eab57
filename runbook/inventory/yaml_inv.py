"""YAML inventories (``ansible-inventory --list -y`` exports included), read through
``runbook.load.yamlpos`` so they keep its guarantees: positions, no custom tags, no duplicate
keys, a budget against alias bombs.

The structure (groups, ``hosts``, ``children``, ``vars``) is walked node by node, so every
group and host keeps its line and column and a group reached again through an alias is
seen as the cycle it is; values are built by yamlpos, their Jinja strings marked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import yaml

from runbook.errors import InventoryError, LoadError, Position
from runbook.inventory.graph import GraphBuilder
from runbook.inventory.hosts import check_vars
from runbook.inventory.ranges import PatternError, expand_host
from runbook.load.yamlpos import MAX_NODES, Builder, YamlSyntaxError, compose, count_nodes
from runbook.templating.lazy import mark

_SECTIONS = ("hosts", "children", "vars")
_NULL = "tag:yaml.org,2002:null"
_PLAIN_KEY_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")
)


@contextlib.contextmanager
def load_errors() -> Iterator[None]:
    """yamlpos's ``LoadError`` as an ``InventoryError``, so callers see one error type."""
    try:
        yield
    except YamlSyntaxError as e:
        raise InventoryError(f"not valid YAML: {e.detail}", e.position) from None
    except LoadError as e:
        raise InventoryError(e.message, e.position) from None


def new_builder(file: str, root: yaml.Node | None) -> Builder:
    """A builder whose budget grows with the document: a 5,000-host export builds what it
    holds, while an alias bomb, which expands far past its size, still fails."""
    size = count_nodes(root) if root is not None else 0
    return Builder(file, max_nodes=MAX_NODES + 2 * size, strings=mark)


def looks_like_inventory(text: str, file: str) -> bool:
    """True for a YAML mapping with ``all``/``plugin`` or a group with hosts/children/vars."""
    try:
        root = compose(text, file)
    except LoadError:
        return False
    if not isinstance(root, yaml.MappingNode):
        return False
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value in ("all", "plugin"):
            return True
        if isinstance(value, yaml.MappingNode) and any(
            isinstance(k, yaml.ScalarNode) and k.value in _SECTIONS for k, _ in value.value
        ):
            return True
    return False


def read(text: str, file: str, graph: GraphBuilder) -> None:
    """Read a YAML inventory into ``graph``; ``InventoryError`` at file:line:col if bad."""
    with load_errors():
        root = compose(text, file)
        _Reader(file, graph, new_builder(file, root)).read(root)


class _Reader:
    def __init__(self, file: str, graph: GraphBuilder, builder: Builder) -> None:
        self.file = file
        self.graph = graph
        self.b = builder
        self.walked: set[tuple[str, int]] = set()

    def error(self, message: str, node: yaml.Node) -> InventoryError:
        return InventoryError(message, self.b.pos(node))

    def read(self, root: yaml.Node | None) -> None:
        if root is None or _is_null(root):
            raise InventoryError("empty YAML inventory", Position(self.file))
        if not isinstance(root, yaml.MappingNode):
            raise self.error("a YAML inventory is a mapping of group names (usually `all:`)", root)
        pairs = self.b.pairs(root)
        for key, _ in pairs:
            if key.value == "plugin":
                raise self.error(
                    "this is an inventory plugin configuration; runbook reads only static "
                    "inventories (export one with `ansible-inventory --list -y`)",
                    key,
                )
        for key, value in pairs:
            self.group(self.name(key, "group"), key, value, parent=None)

    def group(self, name: str, key: yaml.Node, data: yaml.Node, parent: str | None) -> None:
        if parent is None:
            self.graph.group(name, self.b.pos(key))
        else:
            self.graph.add_child(parent, name, self.b.pos(key))
        if _is_null(data):
            return
        if not isinstance(data, yaml.MappingNode):
            raise self.error(
                f"group {name!r} must be a mapping with hosts, children or vars (or empty)", data
            )
        # A group reached twice through an alias adds nothing new; skipping it also stops
        # recursive aliases and alias fan-out ("billion laughs") from walking forever.
        if (name, id(data.value)) in self.walked:
            return
        self.walked.add((name, id(data.value)))
        for section_key, section in self.b.pairs(data):
            self.section(name, section_key, section)

    def section(self, group: str, key: yaml.ScalarNode, section: yaml.Node) -> None:
        if key.value not in _SECTIONS:
            raise self.error(
                f"unexpected key {key.value!r} in group {group!r}; "
                "a group has only hosts, children and vars",
                key,
            )
        if _is_null(section):
            return
        if key.value == "vars":
            if not isinstance(section, yaml.MappingNode):
                raise self.error(f"vars of group {group!r} must be a mapping", section)
            for name, value, where in self.values(section):
                self.graph.set_group_var(group, name, value, where)
        elif key.value == "hosts":
            self.hosts(group, section)
        else:
            for child_key, child in self.entries(group, "children", section):
                self.group(self.name(child_key, "group"), child_key, child, parent=group)

    def hosts(self, group: str, section: yaml.Node) -> None:
        for key, data in self.entries(group, "hosts", section):
            pattern = self.name(key, "host")
            try:
                names, port = expand_host(pattern)
            except PatternError as e:
                m = key.start_mark
                raise InventoryError(
                    str(e), Position(self.file, m.line + 1, m.column + 1 + e.offset)
                ) from None
            if _is_null(data):
                values: dict[str, Any] = {}
            elif isinstance(data, yaml.MappingNode):
                values = {name: value for name, value, _ in self.values(data)}
            else:
                raise self.error(
                    f"host {pattern!r} must map to its vars (a mapping) or to nothing", data
                )
            if port is not None:
                values = {"ansible_port": port, **values}
            for host in names:
                self.graph.add_host(group, host, values, self.b.pos(key))

    def values(self, node: yaml.MappingNode) -> list[tuple[str, Any, Position]]:
        """A vars mapping's (name, value, position of its key), checked as connection vars."""
        self.b.positions.clear()
        data = self.b.build(node)
        where = {k: self.b.positions.get((k,), self.b.pos(node)) for k in data}
        check_vars(data, where.__getitem__)
        return [(k, v, where[k]) for k, v in data.items()]

    def entries(
        self, group: str, section: str, node: yaml.Node
    ) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        """Pairs of a hosts/children section; a lone name is allowed, as in Ansible."""
        if isinstance(node, yaml.ScalarNode):
            return [(node, yaml.ScalarNode(_NULL, "", node.start_mark))]
        if isinstance(node, yaml.SequenceNode):
            raise self.error(
                f"{section} of group {group!r} must be a mapping, not a list: write each name "
                "as a key ending in ':' (`web1:`), optionally with its vars under it",
                node,
            )
        assert isinstance(node, yaml.MappingNode)  # the only node kind left
        return self.b.pairs(node)

    def name(self, key: yaml.ScalarNode, what: str) -> str:
        if key.tag not in _PLAIN_KEY_TAGS:
            raise self.error(f"unsupported YAML tag {key.tag!r} on a {what} name", key)
        if not key.value or key.tag == _NULL:
            raise self.error(f"empty {what} name", key)
        if what == "group" and any(ch.isspace() for ch in key.value):
            raise self.error(f"group name {key.value!r} contains whitespace", key)
        return str(key.value)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL
