"""Inventory files and the runbook's inline ``hosts:`` into one resolved ``Inventory``.

Sources are read in order into one group graph, files first, then the inline groups, so
a later source's vars replace an earlier one's at the same level, as with Ansible's ``-i a
-i b``. Each host's vars are then merged by Ansible's precedence (see ``graph``), and its
``ansible_*`` connection vars become ``Host`` fields (see ``hosts``); fields written on an
inline host win over them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from runbook.errors import InventoryError, Position, Positions
from runbook.inventory.graph import GraphBuilder, RawInventory
from runbook.inventory.hosts import INLINE_FIELDS, check_vars, make_host
from runbook.inventory.patterns import resolve
from runbook.inventory.sources import read_source
from runbook.inventory.vars_dirs import load_layers
from runbook.load.vault import Keyring
from runbook.model.runbook import Connection, Host


@dataclass
class Inventory:
    """Resolved inventory: every host with its final fields and vars, every group's members."""

    hosts: dict[str, Host]
    groups: dict[str, list[str]]
    controller: Host = field(default_factory=lambda: Host("localhost", connection=Connection.LOCAL))

    def resolve(
        self, pattern: str | list[str], position: Position | None = None, step: str | None = None
    ) -> list[Host]:
        """Hosts matched by an Ansible-style pattern, in inventory order.

        ``a:b`` or ``a,b`` union, ``a:&b`` intersection, ``a:!b`` exclusion, globs, ``~regex``.
        """
        return resolve(self.hosts, self.groups, self.controller, pattern, position, step)


def build_inventory(
    inline: dict[str, Any],
    files: tuple[str, ...] | list[str] = (),
    positions: Positions | None = None,
    source: str = "<runbook>",
    vault: Keyring | None = None,
    scripts_refused: str | None = None,
) -> Inventory:
    """Merge Ansible inventory files (in order) and the runbook's inline groups.

    Raises ``InventoryError`` for any bad inventory, at file:line:col where one exists.
    ``vault`` opens wholly encrypted files; ``!vault`` values stay encrypted until read.
    ``scripts_refused`` says why an inventory script may not run (it is then exit 2).
    """
    positions = positions or {}
    graph = GraphBuilder(vault)
    graph.scripts_refused = scripts_refused
    for i, path in enumerate(files):
        try:
            read_source(path, graph)
        except InventoryError as exc:
            _point_at_reference(exc, i, positions)
            raise
    fields = _add_inline(inline, positions, source, graph)
    raw = graph.finish()
    raw.layers = load_layers([os.path.dirname(os.path.abspath(f)) for f in files], raw, vault)
    return _resolved(raw, fields)


def _point_at_reference(exc: InventoryError, index: int, positions: Positions) -> None:
    """A missing file has no line of its own: point at the runbook's reference to it."""
    ref = positions.get(("inventory", index))
    if ref is None and index == 0:
        ref = positions.get(("inventory",))
    if ref is not None and exc.position is not None and not exc.position.line:
        exc.message = f"inventory {exc.position.file}: {exc.message}"
        exc.position = ref


def _add_inline(
    inline: dict[str, Any], positions: Positions, source: str, graph: GraphBuilder
) -> dict[str, dict[str, Any]]:
    """Inline groups into ``graph`` (the schema has checked their shape); returns the host
    fields written inline, which win over ``ansible_*`` vars."""
    fields: dict[str, dict[str, Any]] = {}
    specs: dict[str, dict[str, Any]] = {
        g: {"hosts": s} if isinstance(s, list) else (s or {}) for g, s in inline.items()
    }
    for gname, spec in specs.items():
        here = ("hosts", gname)
        gpos = positions.get(here, Position(source))
        graph.group(gname, gpos)
        hosts = spec.get("hosts") or {}
        for hname, hspec in (dict.fromkeys(hosts) if isinstance(hosts, list) else hosts).items():
            hspec = hspec or {}
            hpos = positions.get((*here, "hosts", hname), gpos)
            values = _vars(hspec.get("vars"), (*here, "hosts", hname), hpos, positions)
            graph.add_host(gname, hname, values, hpos)
            fields.setdefault(hname, {}).update({k: hspec[k] for k in INLINE_FIELDS if k in hspec})
        for key, value in _vars(spec.get("vars"), here, gpos, positions).items():
            graph.set_group_var(gname, key, value, positions.get((*here, "vars", key), gpos))
    for gname, spec in specs.items():  # after every group exists, so order does not matter
        for i, child in enumerate(spec.get("children") or []):
            where = positions.get(("hosts", gname, "children", i), positions.get(("hosts", gname)))
            if child not in graph.groups:
                raise InventoryError(f"group {gname!r} lists unknown child group {child!r}", where)
            graph.add_child(gname, child, where)
    return fields


def _vars(
    values: dict[str, Any] | None, path: tuple[Any, ...], default: Position, positions: Positions
) -> dict[str, Any]:
    """Inline vars, their connection vars checked where they are written."""
    found = dict(values or {})
    check_vars(found, lambda key: positions.get((*path, "vars", key), default))
    return found


def _resolved(raw: RawInventory, fields: dict[str, dict[str, Any]]) -> Inventory:
    depth = raw.depths()
    memberships = raw.memberships()
    hosts: dict[str, Host] = {}
    for name in raw.hosts:
        mine = memberships.get(name, [])
        shown = sorted(
            (g for g in mine if g not in ("all", "ungrouped")), key=lambda g: (depth[g], g)
        )
        values = raw.host_vars(name, mine, depth)
        position = raw.host_positions.get(name)
        hosts[name] = make_host(name, values, fields.get(name, {}), tuple(shown), position)
    groups: dict[str, list[str]] = {g: [] for g in raw.groups}
    for name in raw.hosts:
        for g in memberships.get(name, []):
            groups[g].append(name)
    groups["all"] = list(raw.hosts)
    if not groups.get("ungrouped"):
        groups.pop("ungrouped", None)
    # Ansible's implicit localhost is in no group, yet takes the vars of `all` (and its own
    # host_vars); its connection stays local, whatever `all` says.
    implicit = raw.host_vars("localhost", ["all"] if "all" in raw.groups else [], depth)
    return Inventory(hosts=hosts, groups=groups, controller=implicit_localhost(implicit))


def implicit_localhost(values: dict[str, Any]) -> Host:
    """The controller, when the inventory does not name ``localhost`` itself."""
    return Host("localhost", connection=Connection.LOCAL, vars=values)
