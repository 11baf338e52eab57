"""The parallel-ssh anchor: ``ParallelSSHClient.run_command`` per step, then ``join``.

parallel-ssh's native client (libssh2 through ssh2-python, under gevent): one client for
every host, per step ``run_command`` on all hosts and ``join`` (a barrier per step, as in
runbook and the paramiko loop), output read, exit codes collected. ``--pool-size`` is
its concurrency (default: every host), as ``--forks`` is runbook's.

parallel-ssh checks no host key itself. To hold it to the rule the other tools follow
(strict: known_hosts must match), every host is connected and authenticated first
(``connect_auth``), and each host's key is checked against ``known_hosts`` through
libssh2's knownhost API before the first command; a missing or different key ends the run.

Runs in the anchors venv (README, "Anchors"), never in the project's environment:

    ~/.venvs/runbook-anchors/bin/python benchmarks/pssh_loop.py [--pool-size N] \
        HOSTS.json KNOWN_HOSTS 'echo step-1' 'echo step-2'

``HOSTS.json`` is the paramiko loop's (``{"name", "address", "port", "user", "key"}``).
Output: one line per host per step (``name: stdout``). Exit 1 if any host failed.
"""

from __future__ import annotations

import argparse
import json
import sys

from gevent import joinall
from pssh.clients import ParallelSSHClient
from pssh.config import HostConfig
from ssh2 import knownhost
from ssh2.exceptions import KnownHostCheckError
from ssh2.session import LIBSSH2_HOSTKEY_TYPE_ED25519, LIBSSH2_HOSTKEY_TYPE_RSA

KEY_TYPES = {
    LIBSSH2_HOSTKEY_TYPE_ED25519: knownhost.LIBSSH2_KNOWNHOST_KEY_ED25519,
    LIBSSH2_HOSTKEY_TYPE_RSA: knownhost.LIBSSH2_KNOWNHOST_KEY_SSHRSA,
}


def check_host_keys(client: ParallelSSHClient, hosts: list[dict], known_hosts: str) -> list[str]:
    """Each connected host's key against ``known_hosts``; one message per host refused."""
    refused = []
    for (i, _address), single in sorted(client._host_clients.items()):  # noqa: SLF001
        h = hosts[i]
        session = single.session
        key, key_type = session.hostkey()
        store = session.knownhost_init()
        store.readfile(known_hosts)
        mask = (
            knownhost.LIBSSH2_KNOWNHOST_TYPE_PLAIN
            | knownhost.LIBSSH2_KNOWNHOST_KEYENC_RAW
            | KEY_TYPES.get(key_type, knownhost.LIBSSH2_KNOWNHOST_KEY_UNKNOWN)
        )
        try:
            store.checkp(h["address"].encode(), h["port"], key, mask)
        except KnownHostCheckError as exc:
            refused.append(f"{h['name']}: host key not accepted: {exc!r}")
    return refused


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pool-size", type=int, default=0, help="default: every host")
    p.add_argument("hosts_file")
    p.add_argument("known_hosts")
    p.add_argument("steps", nargs="+")
    args = p.parse_args(argv)
    with open(args.hosts_file, encoding="utf-8") as f:
        hosts = json.load(f)
    client = ParallelSSHClient(
        [h["address"] for h in hosts],
        host_config=[
            HostConfig(
                user=h["user"],
                port=h["port"],
                private_key=h["key"],
                allow_agent=False,
                identity_auth=False,
                alias=h["name"],
                timeout=30,
            )
            for h in hosts
        ],
        pool_size=args.pool_size or len(hosts),
    )
    joinall(client.connect_auth(), raise_error=True)
    failures = check_host_keys(client, hosts, args.known_hosts)
    if len(client._host_clients) != len(hosts):  # noqa: SLF001
        failures.append("not every host connected")
    steps = [] if failures else args.steps
    for step in steps:
        output = client.run_command(step, stop_on_errors=False)
        client.join(output)
        for out in output:
            if out.exception is not None:
                failures.append(f"{out.alias}: {out.exception!r}")
                continue
            stdout = "".join(line + "\n" for line in out.stdout)
            stderr = "".join(line + "\n" for line in out.stderr)
            sys.stdout.write(f"{out.alias}: {stdout}")
            if stderr:
                sys.stdout.write(f"{out.alias} stderr: {stderr}")
            if out.exit_code != 0:
                failures.append(f"{out.alias}: {step!r} exited {out.exit_code}")
        if failures:
            break
    for line in failures:
        print(line, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
