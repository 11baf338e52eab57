"""The group graph: hosts, groups, children, and Ansible's variable precedence over them.

Every inventory source (INI, YAML, ``--list`` JSON, a script, the runbook's inline
``hosts:``) is read into one ``GraphBuilder``, as Ansible reads every source into one
``InventoryData``; ``finish`` then rejects cycles and reconciles ``ungrouped`` and ``all``.

Vars are kept where they were written, because Ansible's precedence depends on it: the
inline vars of groups and hosts here, the ``group_vars/``/``host_vars/`` files of each
source in ``VarsLayer`` objects. ``RawInventory.host_vars`` merges them as Ansible's
``VariableManager`` does (lowest first):

1. ``all``'s inline vars, then every other group's, ordered by (depth, priority, name);
2. ``group_vars/all`` of each source, then each source's ``group_vars/`` of the host's
   other groups, in the same order;
3. the host's inline vars, then each source's ``host_vars/``.

So ``group_vars/all`` beats every group's inline vars, a deeper group beats its parents,
``ansible_group_priority`` orders groups of one depth (and is not a var), host beats group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.errors import InventoryError, Position
from runbook.inventory.hosts import CONNECTION_VARS
from runbook.inventory.words import check_word
from runbook.load.vault import Keyring, vault_all

PRIORITY = "ansible_group_priority"


@dataclass
class RawGroup:
    """One group as written: direct members, child groups, its own (inline) vars."""

    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    position: Position | None = None
    priority: int = 1


@dataclass
class VarsLayer:
    """The ``group_vars/`` and ``host_vars/`` files beside one inventory source."""

    directory: str
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RawInventory:
    """Hosts (with their inline vars) and groups, both in order of first appearance."""

    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, RawGroup] = field(default_factory=dict)
    host_positions: dict[str, Position] = field(default_factory=dict)
    layers: list[VarsLayer] = field(default_factory=list)

    def depths(self) -> dict[str, int]:
        """Each group's depth below ``all`` (0): its longest path, as Ansible counts it."""
        depth = dict.fromkeys(self.groups, 1)
        depth["all"] = 0
        for name in _topological(self.groups):
            for child in self.groups[name].children:
                depth[child] = max(depth[child], depth[name] + 1)
        return depth

    def memberships(self) -> dict[str, list[str]]:
        """Host -> every group it is in, children's members counted (``all`` included)."""
        found: dict[str, list[str]] = {h: [] for h in self.hosts}
        for name in self.groups:
            for host in effective_members(self, name):
                found.setdefault(host, []).append(name)
        return found

    def host_vars(self, host: str, groups: list[str], depth: dict[str, int]) -> dict[str, Any]:
        """``host``'s vars by Ansible's precedence; ``groups`` are all groups it is in."""
        ordered = sorted(
            (g for g in groups if g != "all"),
            key=lambda g: (depth[g], self.groups[g].priority, g),
        )
        merged: dict[str, Any] = {}
        if "all" in self.groups:
            merged.update(self.groups["all"].vars)
        for g in ordered:
            merged.update(self.groups[g].vars)
        for layer in self.layers:
            merged.update(layer.groups.get("all", {}))
        for layer in self.layers:
            for g in ordered:
                merged.update(layer.groups.get(g, {}))
        merged.update(self.hosts.get(host, {}))
        for layer in self.layers:
            merged.update(layer.hosts.get(host, {}))
        return merged

    def exported(self) -> RawInventory:
        """The inventory as ``ansible-inventory --list --export`` shows it: each group's and
        host's own vars, its vars files over its inline vars, layers folded in."""
        groups = {}
        for name, g in self.groups.items():
            own = dict(g.vars)
            if g.priority != 1:
                own[PRIORITY] = g.priority
            for layer in self.layers:
                own.update(layer.groups.get(name, {}))
            groups[name] = RawGroup(name, list(g.hosts), list(g.children), own, g.position)
        hosts = {}
        for name, own in self.hosts.items():
            hosts[name] = dict(own)
            for layer in self.layers:
                hosts[name].update(layer.hosts.get(name, {}))
        return RawInventory(hosts, groups, dict(self.host_positions))


def effective_members(inv: RawInventory, group: str) -> list[str]:
    """Every host of ``group``, its children's included, deduplicated.

    Order: the group's own hosts, then each child's members depth-first in the order the
    children were written, so a rolling ``serial`` walks hosts as the file lists them.
    Raises ``InventoryError`` for an unknown group; ``all`` is never unknown (an empty
    inventory has no ``all`` group, and then no hosts either).
    """
    if group not in inv.groups:
        if group == "all":
            return list(inv.hosts)
        known = ", ".join(sorted(inv.groups)) or "none"
        raise InventoryError(f"no group {group!r} in the inventory (groups: {known})")
    members: dict[str, None] = {}
    seen: set[str] = set()
    stack = [group]
    while stack:
        name = stack.pop()
        if name in seen or name not in inv.groups:
            continue  # cycles are rejected on load; hand-built inventories may still have one
        seen.add(name)
        g = inv.groups[name]
        members.update(dict.fromkeys(g.hosts))
        stack.extend(reversed(g.children))
    return list(members)


def _topological(groups: dict[str, RawGroup]) -> list[str]:
    """Parents before children (the graph has no cycle once ``finish`` has run)."""
    order: list[str] = []
    state: dict[str, bool] = {}  # False: being visited, True: done
    for root in groups:
        stack = [(root, iter(groups[root].children))] if root not in state else []
        state.setdefault(root, False)
        while stack:
            name, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                state[name] = True
                order.append(name)
            elif child not in state and child in groups:
                state[child] = False
                stack.append((child, iter(groups[child].children)))
    return order[::-1]


class GraphBuilder:
    """Accumulates hosts and groups from every source the way Ansible's InventoryData does."""

    def __init__(self, vault: Keyring | None = None) -> None:
        # Ansible creates these two first; empty ones are dropped in finish().
        self.inv = RawInventory(groups={"all": RawGroup("all"), "ungrouped": RawGroup("ungrouped")})
        self.vault = vault  # the passwords that open encrypted sources
        self.secret_file: str | None = None  # while reading a wholly encrypted source
        self.scripts_refused: str | None = None  # why inventory scripts may not run here
        self.edges: dict[tuple[str, str], Position | None] = {}
        self._members: dict[str, set[str]] = {}  # a set per group: ranges make big groups

    @property
    def groups(self) -> dict[str, RawGroup]:
        return self.inv.groups

    def group(self, name: str, position: Position | None) -> RawGroup:
        g = self.inv.groups.get(name)
        if g is None:
            g = self.inv.groups[name] = RawGroup(name, position=position)
        elif g.position is None:
            g.position = position
        return g

    def add_host(
        self, group: str, name: str, values: dict[str, Any], position: Position | None
    ) -> None:
        """``name`` into ``group``; every source adds its hosts here, so here a name that
        is not a safe word is refused (``words``), whichever source wrote it."""
        check_word("host name", name, position)
        self.inv.hosts.setdefault(name, {}).update(self._secret(values, "host", name))
        if position is not None:
            self.inv.host_positions.setdefault(name, position)
        members = self._members.setdefault(group, set())
        if name not in members:
            members.add(name)
            self.group(group, position).hosts.append(name)

    def update_host_vars(self, name: str, values: dict[str, Any]) -> None:
        """Vars for a host some group already lists (a listing's ``_meta.hostvars``)."""
        self.inv.hosts.setdefault(name, {}).update(self._secret(values, "host", name))

    def set_group_var(self, group: str, key: str, value: Any, position: Position | None) -> None:
        """A var written inline for ``group``; ``ansible_group_priority`` sets its priority."""
        g = self.group(group, position)
        if key != PRIORITY:
            g.vars[key] = self._secret({key: value}, "group", group)[key]
            return
        text = str(value).strip()
        if isinstance(value, bool) or not text.lstrip("-").isdigit():
            raise InventoryError(f"{PRIORITY} {value!r} is not a whole number", position)
        g.priority = int(text)

    def _secret(self, values: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
        """Values of a wholly encrypted source are secrets, every one (SPEC §13)."""
        if self.secret_file is None or not values:
            return values
        assert self.vault is not None  # it opened the file
        found: dict[str, Any] = vault_all(values, self.secret_file, self.vault, CONNECTION_VARS)
        return found

    def add_child(self, parent: str, child: str, position: Position | None) -> None:
        if child == "all":
            raise InventoryError(
                f"group 'all' cannot be a child of {parent!r}: it already contains every host",
                position,
            )
        self.group(child, position)
        g = self.group(parent, position)
        if child not in g.children:
            g.children.append(child)
            self.edges[(parent, child)] = position

    def finish(self) -> RawInventory:
        """Reject cycles, then reconcile ``ungrouped`` and ``all`` as Ansible does."""
        self._check_cycles()
        groups = self.inv.groups
        grouped = {h for n, g in groups.items() if n not in ("all", "ungrouped") for h in g.hosts}
        ungrouped = groups["ungrouped"]
        listed = [h for h in ungrouped.hosts if h not in grouped]
        only_in_all = [h for h in self.inv.hosts if h not in grouped and h not in listed]
        ungrouped.hosts = listed + only_in_all
        if not (ungrouped.hosts or ungrouped.children or ungrouped.vars):
            del groups["ungrouped"]  # an export lists it empty: drop the edge too
            for g in groups.values():
                g.children = [c for c in g.children if c != "ungrouped"]
        has_parent = {child for g in groups.values() for child in g.children}
        top = groups["all"]
        orphans = [n for n in groups if n != "all" and n not in has_parent]
        # Ansible makes 'ungrouped' the first child of 'all' when it creates them.
        first = [n for n in orphans if n == "ungrouped"]
        top.children = first + top.children + [n for n in orphans if n != "ungrouped"]
        return self.inv

    def _check_cycles(self) -> None:
        done: set[str] = set()
        groups = self.inv.groups
        for root in groups:
            if root in done:
                continue
            # Iterative DFS keeping the current path, so the error can spell the cycle out.
            path = [root]
            iters = [iter(groups[root].children)]
            while iters:
                child = next(iters[-1], None)
                if child is None:
                    iters.pop()
                    done.add(path.pop())
                elif child in path:
                    cycle = path[path.index(child) :] + [child]
                    raise InventoryError(
                        f"group cycle: {' -> '.join(cycle)}; a group cannot contain itself, "
                        "remove one of these child entries",
                        self.edges.get((path[-1], child)),
                    )
                elif child not in done:
                    path.append(child)
                    iters.append(iter(groups[child].children))
