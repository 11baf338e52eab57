"""Hosts and groups from inline ``hosts:`` and Ansible inventories; patterns; var layering.

Vars are layered like Ansible's: ``all`` < parent group < child group (groups of equal
depth by name) < host. ``ansible_host/port/user/ssh_private_key_file/connection`` become
host fields; fields written on an inline host win over them.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from runbook.errors import InventoryError, Position
from runbook.model import LOCAL_NAMES, Host

ANSIBLE_FIELDS = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "identity_file",
    "ansible_connection": "connection",
}
HOST_FIELDS = ("address", "port", "user", "identity_file", "connection")


@dataclass
class _Group:
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    position: Position | None = None


@dataclass
class Inventory:
    """Resolved inventory: every host with its final fields and vars, every group's members."""

    hosts: dict[str, Host]
    groups: dict[str, list[str]]
    controller: Host = field(default_factory=lambda: Host("localhost", connection="local"))

    def resolve(
        self, pattern: str | list[str], position: Position | None = None, step: str | None = None
    ) -> list[Host]:
        """Hosts matched by an Ansible-style pattern, in inventory order.

        ``a:b`` or ``a,b`` union, ``a:&b`` intersection, ``a:!b`` exclusion, globs, ``~regex``.
        """
        terms = pattern if isinstance(pattern, list) else [pattern]
        parts = [t for term in terms for t in _split(term)]
        union: set[str] = set()
        inter: list[set[str]] = []
        excl: set[str] = set()
        for part in parts:
            if part.startswith("&"):
                inter.append(self._match(part[1:], position, step))
            elif part.startswith("!"):
                excl |= self._match(part[1:], position, step)
            else:
                union |= self._match(part, position, step)
        if not any(not p.startswith(("&", "!")) for p in parts):
            union = set(self.hosts)  # only exclusions/intersections: start from all, as Ansible
        for s in inter:
            union &= s
        union -= excl
        ordered = [h for name, h in self.hosts.items() if name in union]
        if "localhost" in union and "localhost" not in self.hosts:
            ordered.append(self.controller)
        return ordered

    def _match(self, term: str, position: Position | None, step: str | None) -> set[str]:
        if term in ("all", "*"):
            return set(self.hosts)
        if term in self.groups:
            return set(self.groups[term])
        if term in self.hosts or term in LOCAL_NAMES:
            return {term}
        if term.startswith("~"):
            try:
                rx = re.compile(term[1:])
            except re.error as exc:
                raise InventoryError(
                    f"bad regex in pattern {term!r}: {exc}", position, step=step
                ) from None
            return {h for h in self.hosts if rx.search(h)}
        if any(c in term for c in "*?["):
            found = {h for h in self.hosts if fnmatch.fnmatchcase(h, term)}
            for g, members in self.groups.items():
                if fnmatch.fnmatchcase(g, term):
                    found.update(members)
            if found:
                return found
        known = ", ".join(sorted(self.groups)) or "none"
        raise InventoryError(
            f"unknown host or group {term!r} (groups: {known})", position, step=step
        )


def _split(pattern: str) -> list[str]:
    """Split on ``:`` and ``,`` outside ``[...]`` (ranges like ``sdw[1:3]`` stay whole)."""
    parts, buf, depth = [], "", 0
    for c in pattern:
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        if c in ":," and depth == 0:
            parts.append(buf.strip())
            buf = ""
        else:
            buf += c
    parts.append(buf.strip())
    return [p for p in parts if p]


def build_inventory(
    inline: dict[str, Any],
    files: tuple[str, ...] | list[str] = (),
    positions: dict | None = None,
    source: str = "<runbook>",
) -> Inventory:
    """Merge Ansible inventory files (in order) and the runbook's inline groups."""
    groups: dict[str, _Group] = {}
    host_vars: dict[str, dict[str, Any]] = {}
    host_fields: dict[str, dict[str, Any]] = {}
    host_pos: dict[str, Position | None] = {}
    for i, path in enumerate(files):
        try:
            _merge_ansible(path, groups, host_vars, host_pos)
        except InventoryError as exc:
            # "not found" has no line of its own: point at the runbook's reference to it.
            ref = (positions or {}).get(("inventory", i))
            if ref is None and i == 0:
                ref = (positions or {}).get(("inventory",))
            if ref is not None and exc.position is not None and not exc.position.line:
                exc.message = f"inventory {exc.position.file}: {exc.message}"
                exc.position = ref
            raise
    _merge_inline(inline, positions or {}, source, groups, host_vars, host_fields, host_pos)
    depth = _depths(groups)
    members = {g: _members(g, groups) for g in groups}
    order = list(host_pos)
    hosts: dict[str, Host] = {}
    for name in order:
        mine = sorted((g for g in groups if name in members[g]), key=lambda g: (depth[g], g))
        merged: dict[str, Any] = {}
        for g in (["all"] if "all" in groups and "all" not in mine else []) + mine:
            merged.update(groups[g].vars)
        merged.update(host_vars.get(name, {}))
        hosts[name] = _make_host(name, merged, host_fields.get(name, {}), mine, host_pos[name])
    resolved = {g: [h for h in order if h in m] for g, m in members.items()}
    resolved["all"] = list(order)
    if not resolved.get("ungrouped"):
        resolved.pop("ungrouped", None)
    return Inventory(hosts=hosts, groups=resolved)


def _make_host(
    name: str,
    merged: dict[str, Any],
    fields: dict[str, Any],
    groups: list[str],
    pos: Position | None,
) -> Host:
    values: dict[str, Any] = {}
    for var, f in ANSIBLE_FIELDS.items():
        if var in merged:
            values[f] = merged[var]
    values.update({k: v for k, v in fields.items() if v is not None})
    conn = values.get("connection")
    if conn in ("smart", "paramiko", "paramiko_ssh", None):
        conn = "local" if name in LOCAL_NAMES and not values.get("address") else "ssh"
    if conn not in ("ssh", "local"):
        raise InventoryError(f"connection {conn!r} is not supported (ssh or local)", pos, host=name)
    port = values.get("port")
    if port is not None:
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise InventoryError(f"port {port!r} is not a number", pos, host=name) from None
    return Host(
        name=name,
        address=_opt_str(values.get("address")),
        port=port,
        user=_opt_str(values.get("user")),
        identity_file=_opt_str(values.get("identity_file")),
        connection=conn,
        vars=merged,
        groups=tuple(g for g in groups if g not in ("all", "ungrouped")),
    )


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def _merge_ansible(path: str, groups: dict, host_vars: dict, host_pos: dict) -> None:
    from runbook.ansible_inventory import load_inventory

    raw = load_inventory(path)
    for name, hv in raw.hosts.items():
        host_vars.setdefault(name, {}).update(hv)
        host_pos.setdefault(name, raw.host_positions.get(name))
    for gname, rg in raw.groups.items():
        g = groups.setdefault(gname, _Group(position=rg.position))
        g.hosts += [h for h in rg.hosts if h not in g.hosts]
        g.children += [c for c in rg.children if c not in g.children]
        g.vars.update(rg.vars)


def _merge_inline(
    inline: dict[str, Any],
    positions: dict,
    source: str,
    groups: dict[str, _Group],
    host_vars: dict,
    host_fields: dict,
    host_pos: dict,
) -> None:
    for gname, spec in inline.items():
        gpos = positions.get(("hosts", gname), Position(source))
        g = groups.setdefault(gname, _Group(position=gpos))
        if isinstance(spec, list):
            spec = {"hosts": spec}
        hosts = spec.get("hosts") or {}
        if isinstance(hosts, list):
            hosts = dict.fromkeys(hosts)
        for hname, hspec in hosts.items():
            if hname not in g.hosts:
                g.hosts.append(hname)
            host_pos.setdefault(hname, positions.get(("hosts", gname, "hosts", hname), gpos))
            hspec = hspec or {}
            host_vars.setdefault(hname, {}).update(hspec.get("vars", {}))
            fields = host_fields.setdefault(hname, {})
            fields.update({k: hspec[k] for k in HOST_FIELDS if k in hspec})
        g.children += [c for c in spec.get("children", []) if c not in g.children]
        g.vars.update(spec.get("vars", {}))
    for gname, g in list(groups.items()):
        for child in g.children:
            if child not in groups:
                raise InventoryError(
                    f"group {gname!r} lists unknown child group {child!r}", g.position
                )


def _depths(groups: dict[str, _Group]) -> dict[str, int]:
    """Depth below ``all``; raises on a cycle in ``children``."""
    depth: dict[str, int] = {}
    state: dict[str, int] = {}

    def visit(g: str, d: int, trail: list[str]) -> None:
        if state.get(g) == 1:
            cycle = " -> ".join([*trail[trail.index(g) :], g])
            raise InventoryError(f"cycle in group children: {cycle}", groups[g].position)
        if depth.get(g, -1) >= d and state.get(g) == 2:
            return
        depth[g] = max(depth.get(g, 0), d)
        state[g] = 1
        for c in groups[g].children:
            visit(c, d + 1, [*trail, g])
        state[g] = 2

    for g in groups:
        visit(g, 0 if g == "all" else 1, [])
    return depth


def _members(group: str, groups: dict[str, _Group]) -> set[str]:
    out: set[str] = set()
    stack, seen = [group], set()
    while stack:
        g = stack.pop()
        if g in seen:
            continue
        seen.add(g)
        out.update(groups[g].hosts)
        stack.extend(groups[g].children)
    return out
