"""Turns a ``Host`` plus ``~/.ssh/config`` into where and how to connect.

The config is looked up by the host's ``address`` (default: its name), as ``ssh ADDRESS``
and Ansible's ``ansible_host`` do; fields set on the ``Host`` win over the config (its
``proxy_jump`` too, which an inventory sets from ``ansible_ssh_common_args``).
Honoured keywords: HostName, Port, User, IdentityFile, IdentitiesOnly, ProxyJump,
ProxyCommand, UserKnownHostsFile, GlobalKnownHostsFile, HostKeyAlias.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass

import paramiko

from runbook.model.runbook import Host
from runbook.run.ssh.hostkeys import known_hosts_name
from runbook.run.ssh.paramiko_adapter import config_blocks, config_of

DEFAULT_CONFIG = "~/.ssh/config"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
MAX_JUMPS = 8


class ConfigError(Exception):
    """The ssh configuration cannot be used for this host (bad ProxyJump, missing key)."""


@dataclass(frozen=True)
class Endpoint:
    """One SSH server to authenticate to: a runbook host or a ProxyJump hop, resolved."""

    label: str
    address: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    known_hosts: tuple[str, ...] = ()  # the first one is where accept-new writes
    host_key_alias: str | None = None
    jump: Endpoint | None = None
    proxy_command: str | None = None

    @property
    def key(self) -> tuple[str, str, int, Endpoint | None]:
        """Identity of a connection, so hosts behind one bastion share its transport."""
        return (self.user, self.address, self.port, self.jump)

    @property
    def known_hosts_name(self) -> str:
        return self.host_key_alias or known_hosts_name(self.address, self.port)

    def __str__(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


def load_config(path: str | None) -> paramiko.SSHConfig | None:
    """The ssh_config to honour: ``path``, else ``~/.ssh/config`` when it exists."""
    explicit = path is not None
    path = os.path.expanduser(path or DEFAULT_CONFIG)
    if not explicit and not os.path.exists(path):
        return None
    try:
        return IndexedConfig(paramiko.SSHConfig.from_path(path))  # type: ignore[return-value]
    except (OSError, paramiko.ssh_exception.ConfigParseError) as exc:
        raise ConfigError(f"cannot read ssh config {path}: {exc}") from exc


class IndexedConfig:
    """``paramiko.SSHConfig`` with lookups that cost O(matching blocks), not O(blocks).

    paramiko's ``lookup`` scans every block twice and calls ``getpass.getuser()`` (a
    passwd lookup) for each: a generated config with one ``Host`` block per host makes
    resolving N hosts O(N²). Here a lookup runs on a copy holding only the blocks that
    can apply: those that name the host literally, plus every wildcard, negated or
    ``Match`` block, in file order, so paramiko's answer is unchanged.
    """

    def __init__(self, config: paramiko.SSHConfig) -> None:
        self.config = config
        self._literal: dict[str, list[int]] = {}
        self._generic: list[int] = []
        self._blocks = config_blocks(config)
        for i, block in enumerate(self._blocks):
            hosts = block.get("host") or []
            if "matches" in block or not hosts or any(set(h) & set("*?!") for h in hosts):
                self._generic.append(i)
            else:
                for h in hosts:
                    self._literal.setdefault(h.lower(), []).append(i)

    def lookup(self, alias: str) -> paramiko.SSHConfigDict:
        chosen = sorted({*self._generic, *self._literal.get(alias.lower(), ())})
        return config_of([self._blocks[i] for i in chosen]).lookup(alias)


def resolve(
    host: Host, config: paramiko.SSHConfig | None, known_hosts: str | None = None
) -> Endpoint:
    """Resolve a runbook host; ``known_hosts`` (the CLI option) beats UserKnownHostsFile.

    The host's own ``proxy_jump`` (from the inventory) wins over the config's ProxyJump,
    as ``ssh -J`` does; ``none`` turns the config's off. Its hops resolve through the
    config like the config's own.
    """
    identity = (os.path.expanduser(host.identity_file),) if host.identity_file else None
    if identity and not os.path.isfile(identity[0]):
        raise ConfigError(f"identity file {identity[0]} does not exist")
    return _endpoint(
        host.name,
        host.address or host.name,
        host.port,
        host.user,
        identity,
        config,
        known_hosts,
        depth=0,
        jump=host.proxy_jump,
    )


def _endpoint(
    label: str,
    alias: str,
    port: int | None,
    user: str | None,
    identity: tuple[str, ...] | None,
    config: paramiko.SSHConfig | None,
    known_hosts: str | None,
    depth: int,
    jump: str | None = None,
) -> Endpoint:
    if depth > MAX_JUMPS:
        raise ConfigError(f"ProxyJump chain longer than {MAX_JUMPS} hops (a loop?)")
    cfg = config.lookup(alias) if config is not None else {}
    try:
        port = port or int(cfg.get("port", 22))
    except ValueError as exc:
        raise ConfigError(f"bad Port in ssh config for {alias}: {cfg.get('port')}") from exc
    if identity is None:
        # Keys named in the config but missing are skipped, as ssh does.
        identity = tuple(
            p
            for p in (os.path.expanduser(f) for f in cfg.get("identityfile", ()))
            if os.path.isfile(p)
        )
    if known_hosts is not None:
        files: tuple[str, ...] = (os.path.expanduser(known_hosts),)
    else:
        user_files = cfg.get("userknownhostsfile", DEFAULT_KNOWN_HOSTS).split()
        global_files = cfg.get("globalknownhostsfile", GLOBAL_KNOWN_HOSTS).split()
        files = tuple(os.path.expanduser(f) for f in [*user_files, *global_files])
    proxy_jump = jump if jump is not None else cfg.get("proxyjump", "none")
    proxy_command = cfg.get("proxycommand")
    return Endpoint(
        label=label,
        address=cfg.get("hostname", alias),
        port=port,
        user=user or cfg.get("user") or getpass.getuser(),
        identity_files=identity,
        identities_only=cfg.get("identitiesonly", "no").lower() == "yes",
        known_hosts=files,
        host_key_alias=cfg.get("hostkeyalias"),
        jump=_jumps(proxy_jump, config, known_hosts, depth),
        proxy_command=None if proxy_command in (None, "none") else proxy_command,
    )


_HOP = re.compile(
    r"^(?:ssh://)?(?:(?P<user>[^@]+)@)?(?P<host>\[[^\]]+\]|[^:]+)(?::(?P<port>\d+))?$"
)


def _jumps(
    spec: str, config: paramiko.SSHConfig | None, known_hosts: str | None, depth: int
) -> Endpoint | None:
    """``ProxyJump a,b`` reaches b through a; each hop is resolved through the config too."""
    if spec.lower() == "none":
        return None
    *before, last = [h.strip() for h in spec.split(",")]
    match = _HOP.match(last)
    if not match:
        raise ConfigError(f"cannot parse ProxyJump hop {last!r}")
    alias = match["host"].strip("[]")
    return _endpoint(
        f"jump host {last}",
        alias,
        int(match["port"]) if match["port"] else None,
        match["user"],
        None,
        config,
        known_hosts,
        depth + 1,
        jump=",".join(before) if before else None,
    )
