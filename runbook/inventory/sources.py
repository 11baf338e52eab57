"""One inventory source into the graph: which reader a file needs.

An executable file is an inventory script (unless the kernel cannot run it: then, as in
Ansible, its text is read). Otherwise the format is JSON for ``.json`` files and files whose
text starts with ``{``: the ``--list`` shape if it looks like one, else a YAML-shaped
inventory written in JSON; YAML for ``.yml``/``.yaml`` and for any other file (``.ini``
excepted) whose content is a YAML mapping that looks like an inventory; INI otherwise.
"""

from __future__ import annotations

import os

from runbook.errors import InventoryError, Position
from runbook.inventory import ini, listing, script, yaml_inv
from runbook.inventory.graph import GraphBuilder, RawInventory
from runbook.inventory.text import parse_json, read_vaulted
from runbook.inventory.vars_dirs import load_layers
from runbook.load.vault import Keyring
from runbook.templating.lazy import mark


def read_source(path: str | os.PathLike[str], graph: GraphBuilder) -> None:
    """Read the inventory at ``path`` into ``graph``; ``InventoryError`` (with file:line:col
    where one exists) for an unreadable, non-UTF-8, vault-encrypted or malformed file, a
    failing script, a bad host range, or a group referenced but never declared."""
    file = os.fspath(path)
    if graph.scripts_refused is not None and script.looks_like_program(file):
        raise InventoryError(
            f"inventory script not run: {graph.scripts_refused}", Position(file, 1, 1)
        )
    if script.is_executable(file):
        try:
            script.read(file, graph)
            return
        except script.NotAScript:
            pass
    text, encrypted = read_vaulted(file, graph.vault)
    graph.secret_file = file if encrypted else None
    try:
        _read_text(file, text, graph)
    finally:
        graph.secret_file = None


def _read_text(file: str, text: str, graph: GraphBuilder) -> None:
    suffix = os.path.splitext(file)[1].lower()
    if suffix == ".json" or (suffix not in (".ini", ".yml", ".yaml") and text.lstrip()[:1] == "{"):
        data = parse_json(text, file, mark)
        if listing.is_listing(data):
            listing.read(data, graph, Position(file), None)
            return
        yaml_inv.read(text, file, graph)
    elif suffix in (".yml", ".yaml") or (
        suffix != ".ini" and yaml_inv.looks_like_inventory(text, file)
    ):
        yaml_inv.read(text, file, graph)
    else:
        ini.read(text, file, graph)


def load_inventory(path: str | os.PathLike[str], vault: Keyring | None = None) -> RawInventory:
    """One inventory file (with group_vars/ and host_vars/ beside it) as ``ansible-inventory
    --list --export`` shows it: structure, and each group's and host's own vars."""
    graph = GraphBuilder(vault)
    read_source(path, graph)
    inv = graph.finish()
    inv.layers = load_layers([os.path.dirname(os.path.abspath(os.fspath(path)))], inv, vault)
    exported = inv.exported()
    all_group = exported.groups.get("all")
    if all_group is not None and not (all_group.hosts or all_group.children or all_group.vars):
        del exported.groups["all"]
    return exported
