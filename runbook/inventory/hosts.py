"""Ansible's connection variables as ``Host`` fields.

``ansible_host``/``ansible_port``/``ansible_user``/key file/``ansible_connection``,
``ansible_become``/``ansible_become_user`` and a ProxyJump inside
``ansible_ssh_common_args``/``ansible_ssh_extra_args`` become fields of
``runbook.model.runbook.Host``; fields written on an inline runbook host win over them.
Where Ansible accepts two names, the ssh-specific one wins, as in Ansible
(``ansible_ssh_host`` over ``ansible_host``).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from runbook.errors import InventoryError, Position
from runbook.inventory.words import check_word
from runbook.load.vault import has_vaulted, vaulted_in
from runbook.model.runbook import LOCAL_NAMES, Connection, Host
from runbook.templating.lazy import Render, TemplatedValue, has_templates, resolve_templates

# Field -> the variables that set it, in rising precedence (the last one present wins).
FIELD_VARS: dict[str, tuple[str, ...]] = {
    "address": ("ansible_host", "ansible_ssh_host"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
    "identity_file": ("ansible_private_key_file", "ansible_ssh_private_key_file"),
    "connection": ("ansible_connection",),
    "become": ("ansible_become",),
    "become_user": ("ansible_become_user",),
}
# Where ssh options live; the first ProxyJump wins, as ssh keeps the first value it reads
# and Ansible puts the common args before the extra ones.
SSH_ARGS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
# Vars that say how to reach a host: shown in every plan, so never secrets (a value of a
# wholly encrypted file is one, except these; a `!vault` one is refused).
CONNECTION_VARS = frozenset(v for names in FIELD_VARS.values() for v in names) | frozenset(SSH_ARGS)
# Fields an inline runbook host may set (the schema's host properties).
INLINE_FIELDS = ("address", "port", "user", "identity_file", "connection")

_TRUE = frozenset({"y", "yes", "on", "1", "true", "t"})  # Ansible's boolean()
_FALSE = frozenset({"n", "no", "off", "0", "false", "f"})
_DEFAULT_CONNECTIONS = ("smart", "paramiko", "paramiko_ssh", None)  # ssh, or local for localhost
_OPTION = re.compile(r"\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*)$", re.DOTALL)


def check_vars(values: Mapping[str, Any], where: Callable[[str], Position | None]) -> None:
    """Refuse, where it is written, a port or become flag no host could use.

    Readers call this as they read, because only they know each value's position; a
    template is checked once rendered (``resolve_host``).
    """
    for name in (*FIELD_VARS["port"], *FIELD_VARS["become"]):
        if name in values and not has_templates(values[name]):
            parse = port if name in FIELD_VARS["port"] else boolean
            parse(name, values[name], where(name))


def port(name: str, value: Any, position: Position | None) -> int:
    text = str(value).strip()
    if (
        isinstance(value, bool)
        or not (text.isascii() and text.isdigit())
        or not 0 < int(text) < 65536
    ):
        raise InventoryError(f"{name} {value!r} is not a port number 1-65535", position)
    return int(text)


def boolean(name: str, value: Any, position: Position | None) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise InventoryError(f"{name} {value!r} is not a boolean (true/false, yes/no)", position)


def proxy_jump(args: str, name: str, position: Position | None) -> str | None:
    """The ProxyJump in ssh arguments: ``-J h``, ``-Jh``, ``-o ProxyJump=h`` or
    ``-o 'ProxyJump h'``; None if there is none."""
    try:
        words = shlex.split(args)
    except ValueError as e:
        raise InventoryError(f"{name}: cannot split {args!r}: {e}", position) from None
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else None
        if word == "-J" and following is not None:
            return following
        if word.startswith("-J") and len(word) > 2:
            return word[2:]
        option = following if word == "-o" else word[2:] if word.startswith("-o") else None
        m = _OPTION.match(option or "")
        if m and m.group(1).lower() == "proxyjump" and m.group(2).strip():
            return m.group(2).strip()
    return None


def host_fields(name: str, values: Mapping[str, Any], position: Position | None) -> dict[str, Any]:
    """Fields set by ``values`` (a host's merged vars); templated ones are left out, except
    strings, which stay raw until ``resolve_host`` renders them."""
    fields: dict[str, Any] = {}
    for field, names in FIELD_VARS.items():
        for var in names:
            if var in values and values[var] is not None:
                fields[field] = values[var]
    for var in sorted(CONNECTION_VARS & values.keys()):
        if has_vaulted(values[var]):
            found = vaulted_in(values[var])[0]
            raise InventoryError(
                f"{var} of host {name!r} is an ansible-vault value: how a host is reached is "
                "shown in every plan, so it cannot be a secret; write it in plain text",
                found.position or position,
            )
    for field in ("port", "become", "connection"):
        if has_templates(fields.get(field)):
            del fields[field]
    if "port" in fields:
        fields["port"] = port(FIELD_VARS["port"][0], fields["port"], position)
    if "become" in fields:
        fields["become"] = boolean("ansible_become", fields["become"], position)
    for field in ("address", "user", "identity_file", "become_user", "connection"):
        if field in fields and not isinstance(fields[field], TemplatedValue):
            fields[field] = str(fields[field])
    for var in SSH_ARGS:
        args = values.get(var)
        if isinstance(args, str) and not has_templates(args):
            jump = proxy_jump(args, var, position)
            if jump is not None:
                fields["proxy_jump"] = jump
                break
    return fields


def make_host(
    name: str,
    values: dict[str, Any],
    inline: Mapping[str, Any],
    groups: tuple[str, ...],
    position: Position | None,
) -> Host:
    """A ``Host`` from its merged inventory vars and the fields written inline for it."""
    try:
        fields = host_fields(name, values, position)
    except InventoryError as e:
        e.host = name
        raise
    fields.update({k: v for k, v in inline.items() if v is not None})
    check_words(name, fields, position)
    connection = fields.pop("connection", None)
    if connection in _DEFAULT_CONNECTIONS:
        local = name in LOCAL_NAMES and not fields.get("address")
        connection = Connection.LOCAL if local else Connection.SSH
    if connection not in {c.value for c in Connection}:
        raise InventoryError(
            f"connection {connection!r} is not supported (ssh or local)", position, host=name
        )
    return Host(name=name, connection=Connection(connection), vars=values, groups=groups, **fields)


def resolve_host(host: Host, context: Mapping[str, Any], render: Render) -> Host:
    """``host`` with the fields that came from templated ``ansible_*`` vars rendered.

    Reading the inventory leaves such fields raw (address, user, key, become user) or
    unset (port, become, ProxyJump); a field set inline in the runbook is never templated
    and is kept. Raises ``InventoryError`` if a rendered value is not valid for its field.
    """
    names = {n for names in FIELD_VARS.values() for n in names} | set(SSH_ARGS)
    templated = {n: v for n, v in host.vars.items() if n in names and has_templates(v)}
    if not templated:
        return host
    rendered = {
        **host.vars,
        **{n: resolve_templates(v, context, render) for n, v in templated.items()},
    }
    fields = host_fields(host.name, rendered, _position(templated))
    check_words(host.name, fields, _position(templated))
    changes = {
        field: fields[field]
        for field, var_names in {**FIELD_VARS, "proxy_jump": SSH_ARGS}.items()
        if field in fields and any(n in templated for n in var_names) and _unset(host, field)
    }
    return dataclasses.replace(host, **changes)


def check_words(name: str, fields: Mapping[str, Any], position: Position | None) -> None:
    """A host's address, user and ProxyJump hosts are safe words, as its name is
    (``words``); a templated one is checked once rendered (``resolve_host``)."""
    for field in ("address", "user"):
        value = fields.get(field)
        if isinstance(value, str) and not isinstance(value, TemplatedValue):
            check_word(field, value, position, host=name)
    jump = fields.get("proxy_jump")
    if isinstance(jump, str) and not isinstance(jump, TemplatedValue):
        for hop in jump.split(","):
            hop = hop.strip().removeprefix("ssh://")
            check_word("ProxyJump host", hop.replace("[", "").replace("]", ""), position, name)


def _unset(host: Host, field: str) -> bool:
    """True if ``field`` holds what reading left for a template (inline fields are kept)."""
    value = getattr(host, field)
    return value is None or isinstance(value, TemplatedValue) or field == "connection"


def _position(values: Mapping[str, Any]) -> Position | None:
    for v in values.values():
        if isinstance(v, TemplatedValue):
            return v.position
    return None
