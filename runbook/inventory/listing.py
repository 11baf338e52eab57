"""The ``ansible-inventory --list`` JSON shape, which is also what inventory scripts print.

Top-level keys are groups: ``{"hosts": [...], "children": [...], "vars": {...}}``, or a
bare list of hosts; ``_meta.hostvars`` holds each host's vars. Ansible's own reader of this
shape is its script plugin, and we follow it: children named but never described are
groups all the same (``ungrouped`` in every export), and a group written as a mapping
without hosts/children/vars keys is a host of that name with those vars — unless the
mapping is empty: ``"ungrouped": {}`` (which ansible-inventory exports print for an
empty group, as they print ``{"hosts": []}``) is a group with no hosts, never a host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runbook.errors import InventoryError, Position
from runbook.inventory.graph import GraphBuilder
from runbook.inventory.hosts import check_vars
from runbook.load.vault import from_json

_KEYS = ("hosts", "children", "vars")

HostVars = Callable[[str], dict[str, Any]]


def is_listing(data: Any) -> bool:
    """True for a ``--list``-shaped mapping: ``_meta``, or groups with lists in them."""
    if not isinstance(data, dict):
        return False
    if "_meta" in data:
        return True
    return any(
        isinstance(g, list)
        or (isinstance(g, dict) and any(isinstance(g.get(k), list) for k in ("hosts", "children")))
        for g in data.values()
    )


def read(data: Any, graph: GraphBuilder, where: Position, host_vars: HostVars | None) -> None:
    """Read a listing into ``graph``. Host vars come from ``_meta.hostvars`` or, when a
    script prints none, from ``host_vars(name)`` (its ``--host NAME``)."""
    if not isinstance(data, dict):
        raise InventoryError(f"expected a JSON object of groups, got {type(data).__name__}", where)
    hosts: dict[str, None] = {}
    for name, group in data.items():
        if name != "_meta":
            hosts.update(dict.fromkeys(_group(graph, name, group, where)))
    meta = data.get("_meta")
    if meta is not None and not isinstance(meta, dict):
        raise InventoryError("_meta must be a JSON object with hostvars", where)
    found = meta.get("hostvars") if meta else None
    if found is not None and not isinstance(found, dict):
        raise InventoryError("_meta.hostvars must map host names to their vars", where)
    for host in hosts:
        if found is not None:
            values = found.get(host, {})
        else:
            values = host_vars(host) if host_vars is not None else {}
        if not isinstance(values, dict):
            raise InventoryError(f"vars of host {host!r} must be a JSON object", where)
        values = from_json(values, where)
        check_vars(values, lambda _: where)
        graph.update_host_vars(host, values)


def _group(graph: GraphBuilder, name: str, group: Any, where: Position) -> list[str]:
    """Add one group; returns its hosts."""
    if name == "" or any(ch.isspace() for ch in name):
        raise InventoryError(f"invalid group name {name!r}", where)
    graph.group(name, where)
    if isinstance(group, list):
        group = {"hosts": group}
    elif not isinstance(group, dict):
        raise InventoryError(f"group {name!r} must be a JSON object or a list of hosts", where)
    elif group and not any(k in group for k in _KEYS):
        group = {"hosts": [name], "vars": group}  # Ansible's shorthand: a host and its vars
    hosts = group.get("hosts") or []
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise InventoryError(f"hosts of group {name!r} must be a list of names", where)
    values = group.get("vars") or {}
    if not isinstance(values, dict):
        raise InventoryError(f"vars of group {name!r} must be a JSON object", where)
    children = group.get("children") or []
    if not isinstance(children, (list, dict)) or not all(isinstance(c, str) for c in children):
        raise InventoryError(f"children of group {name!r} must be a list of names", where)
    for host in hosts:
        graph.add_host(name, host, {}, where)
    values = from_json(values, where)
    check_vars(values, lambda _: where)
    for key, value in values.items():
        graph.set_group_var(name, key, value, where)
    for child in children:
        graph.add_child(name, child, where)
    return hosts
