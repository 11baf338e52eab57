"""Vaulted values read by a command: secrets, as ``secrets:`` are (SPEC §13).

A command that reads a var holding a ``!vault`` string (or a value of a wholly encrypted
file) is planned as a secret command: shown and stored rendered with the stand-in, its
template kept with the var's value in which each vaulted string is a ``((secret:NAME))``
token, and rendered with the plaintext only in memory at apply time (``run.values``).
The plaintext is revealed here, once per value, into the run's ``Keyring``; from there it
joins the run's secrets, so it is masked wherever it could still appear (output, errors).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from runbook.load.secrets import token
from runbook.load.vault import Keyring, Vaulted, has_vaulted, replace_vaulted, vaulted_in
from runbook.text import STAND_IN

# Names the planner itself puts in a context: never vaulted, and large (``groups``).
PLANNER_NAMES = frozenset({"host", "groups", "runbook", "step", "env", "hostvars", "batch"})


@dataclass(frozen=True)
class VaultReads:
    names: frozenset[str]  # vars read whose values hold vaulted strings
    secrets: frozenset[str]  # the secret names of those strings
    tokenized: dict[str, Any]  # those vars, each vaulted string a ((secret:NAME)) token


NONE = VaultReads(frozenset(), frozenset(), {})


def split_vaulted(
    ctx: MutableMapping[str, Any], reads: frozenset[str], keyring: Keyring
) -> VaultReads:
    """Reveal the vaulted values of the vars ``reads`` names (``InputError`` at the
    value's file:line without a password that opens it) and put their stand-ins in
    ``ctx``, so everything rendered now shows ``********``."""
    names = frozenset(n for n in reads - PLANNER_NAMES if n in ctx and has_vaulted(ctx[n]))
    if not names:
        return NONE
    secrets: set[str] = set()
    tokenized: dict[str, Any] = {}
    for name in sorted(names):
        for value in vaulted_in(ctx[name]):
            keyring.reveal(value)
            secrets.add(value.name)
        tokenized[name] = replace_vaulted(ctx[name], _token)
        ctx[name] = replace_vaulted(ctx[name], lambda _: STAND_IN)
    return VaultReads(names, frozenset(secrets), tokenized)


def _token(value: Vaulted) -> str:
    return token(value.name)


def vaulted_names(ctx: MutableMapping[str, Any], names: frozenset[str]) -> frozenset[str]:
    """Which of ``names`` hold vaulted strings in ``ctx``."""
    return frozenset(n for n in names - PLANNER_NAMES if n in ctx and has_vaulted(ctx[n]))
