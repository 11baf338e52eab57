"""``group_vars/`` and ``host_vars/`` beside each inventory source, as Ansible reads them.

For a group or host NAME, the first of ``NAME`` (file or directory), ``NAME.yml``,
``NAME.yaml``, ``NAME.json`` that exists is used, as Ansible's host_group_vars plugin
does. A directory's files (no extension, ``.yml``, ``.yaml``, ``.json``; hidden files and
``~`` backups skipped; subdirectories walked) are merged in sorted order, later files
replacing earlier keys. Files are looked up for every group and host of the finished
inventory, whichever source declared them, as Ansible does.
"""

from __future__ import annotations

import os
from typing import Any

from runbook.errors import InventoryError, Position
from runbook.inventory.graph import RawInventory, VarsLayer
from runbook.inventory.hosts import CONNECTION_VARS, check_vars
from runbook.inventory.text import parse_json, read_vaulted
from runbook.inventory.yaml_inv import load_errors, new_builder
from runbook.load.vault import Keyring, from_json, vault_all
from runbook.load.yamlpos import compose
from runbook.templating.lazy import mark

_VARS_SUFFIXES = ("", ".yml", ".yaml", ".json")


def load_layers(
    directories: list[str], inv: RawInventory, vault: Keyring | None = None
) -> list[VarsLayer]:
    """One layer per distinct directory that has a group_vars/ or host_vars/ inside."""
    layers = []
    for directory in dict.fromkeys(os.path.abspath(d) for d in directories):
        layer = VarsLayer(directory)
        for kind, names, found in (
            ("group_vars", inv.groups, layer.groups),
            ("host_vars", inv.hosts, layer.hosts),
        ):
            base = os.path.join(directory, kind)
            if not os.path.isdir(base):
                continue
            for name in names:
                files = _vars_files(base, name)
                if files:
                    found[name] = {}
                    for file in files:
                        found[name].update(load_vars_file(file, vault))
        if layer.groups or layer.hosts:
            layers.append(layer)
    return layers


def _vars_files(directory: str, name: str) -> list[str]:
    """The files Ansible's host_group_vars plugin reads for ``name``, in merge order."""
    if name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return []  # such a name cannot be a plain file beside the inventory
    for suffix in _VARS_SUFFIXES:
        candidate = os.path.join(directory, name + suffix)
        if os.path.isdir(candidate):
            return _dir_files(candidate)
        if os.path.isfile(candidate):
            return [candidate]
    return []


def _dir_files(directory: str) -> list[str]:
    found: list[str] = []
    for entry in sorted(os.listdir(directory)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        full = os.path.join(directory, entry)
        suffix = os.path.splitext(entry)[1]
        if os.path.isdir(full) and not suffix:
            found.extend(_dir_files(full))
        elif os.path.isfile(full) and suffix in _VARS_SUFFIXES:
            found.append(full)
    return found


def load_vars_file(file: str, vault: Keyring | None = None) -> dict[str, Any]:
    """A vars file's mapping; its Jinja strings marked (see ``runbook.templating.lazy``),
    its ``!vault`` strings (and, in a wholly encrypted file, all of them) ``Vaulted``."""
    text, encrypted = read_vaulted(file, vault)
    positions: dict[tuple[Any, ...], Position] = {}
    if file.endswith(".json"):
        data = parse_json(text, file, mark) if text.strip() else None
        data = from_json(data, Position(file))
    else:
        with load_errors():
            node = compose(text, file)
            builder = new_builder(file, node)
            data = builder.build(node) if node is not None else None
            positions = builder.positions
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InventoryError(
            f"a vars file must be a mapping of variable names to values, not a "
            f"{type(data).__name__}",
            Position(file, 1, 1),
        )
    check_vars(data, lambda key: positions.get((key,), Position(file)))
    if encrypted and vault is not None:
        secret: dict[str, Any] = vault_all(data, file, vault, CONNECTION_VARS)
        return secret
    return data
