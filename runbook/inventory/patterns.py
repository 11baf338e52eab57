"""Ansible host patterns: which hosts a step's ``hosts:`` or ``--limit`` names.

``a:b`` or ``a,b`` union, ``a:&b`` intersection, ``a:!b`` exclusion, globs over host and
group names, ``~regex`` over host names; ``all`` and ``*`` are every host.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence

from runbook.errors import InventoryError, Position
from runbook.model.runbook import LOCAL_NAMES, Host


def resolve(
    hosts: Mapping[str, Host],
    groups: Mapping[str, Sequence[str]],
    controller: Host,
    pattern: str | list[str],
    position: Position | None = None,
    step: str | None = None,
) -> list[Host]:
    """Hosts matched by ``pattern``, in inventory order; ``InventoryError`` for a name that
    is neither a host nor a group, or a bad regex."""
    terms = pattern if isinstance(pattern, list) else [pattern]
    parts = [t for term in terms for t in split(term)]
    union: set[str] = set()
    inter: list[set[str]] = []
    excl: set[str] = set()
    for part in parts:
        if part.startswith("&"):
            inter.append(_match(hosts, groups, part[1:], position, step))
        elif part.startswith("!"):
            excl |= _match(hosts, groups, part[1:], position, step)
        else:
            union |= _match(hosts, groups, part, position, step)
    if not any(not p.startswith(("&", "!")) for p in parts):
        union = set(hosts)  # only exclusions/intersections: start from all, as Ansible
    for s in inter:
        union &= s
    union -= excl
    ordered = [h for name, h in hosts.items() if name in union]
    if "localhost" in union and "localhost" not in hosts:
        ordered.append(controller)
    return ordered


def _match(
    hosts: Mapping[str, Host],
    groups: Mapping[str, Sequence[str]],
    term: str,
    position: Position | None,
    step: str | None,
) -> set[str]:
    if term in ("all", "*"):
        return set(hosts)
    if term in groups:
        return set(groups[term])
    if term == "ungrouped":  # Ansible's implicit group, empty here: it matches no host
        return set()
    if term in hosts or term in LOCAL_NAMES:
        return {term}
    if term.startswith("~"):
        try:
            rx = re.compile(term[1:])
        except re.error as exc:
            raise InventoryError(
                f"bad regex in pattern {term!r}: {exc}", position, step=step
            ) from None
        return {h for h in hosts if rx.search(h)}
    if any(c in term for c in "*?["):
        found = {h for h in hosts if fnmatch.fnmatchcase(h, term)}
        for g, members in groups.items():
            if fnmatch.fnmatchcase(g, term):
                found.update(members)
        if found:
            return found
    known = ", ".join(sorted(groups)) or "none"
    raise InventoryError(f"unknown host or group {term!r} (groups: {known})", position, step=step)


def split(pattern: str) -> list[str]:
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
