"""The Fabric 3 anchor: a ``ThreadingGroup`` running each step's command on every host.

What a Fabric user writes for a runbook: one ``ThreadingGroup`` of every host, and per
step ``group.run(cmd)``, which runs the command on all hosts in threads and returns when
every host has finished (a barrier per step, as in runbook and the paramiko loop).
Connections open on the first step and are kept across steps. Host keys are checked
against ``known_hosts`` and an unknown or changed key is refused: Fabric's own default is
paramiko's ``AutoAddPolicy``, so every connection gets ``RejectPolicy`` before it opens.

Runs in the anchors venv (README, "Anchors"), never in the project's environment:

    ~/.venvs/runbook-anchors/bin/python benchmarks/fabric_loop.py HOSTS.json KNOWN_HOSTS \
        'echo step-1' 'echo step-2'

``HOSTS.json`` is the paramiko loop's (``{"name", "address", "port", "user", "key"}``).
Output: one line per host per step (``name: stdout``). Exit 1 if any host failed.
"""

from __future__ import annotations

import json
import sys

import paramiko
from fabric import Config, Connection, ThreadingGroup
from fabric.exceptions import GroupException


def main(argv: list[str]) -> int:
    hosts_file, known_hosts, *steps = argv
    with open(hosts_file, encoding="utf-8") as f:
        hosts = json.load(f)
    # No ~/.ssh/config or /etc/ssh/ssh_config: everything a connection needs is given here.
    config = Config(overrides={"load_ssh_configs": False})
    connections = []
    for h in hosts:
        c = Connection(
            h["address"],
            user=h["user"],
            port=h["port"],
            config=config,
            connect_timeout=30,
            connect_kwargs={
                "key_filename": h["key"],
                "allow_agent": False,
                "look_for_keys": False,
            },
        )
        c.client.load_host_keys(known_hosts)
        c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        connections.append(c)
    names = {id(c): h["name"] for c, h in zip(connections, hosts, strict=True)}
    group = ThreadingGroup.from_connections(connections)
    failures: list[str] = []
    try:
        for step in steps:
            try:
                results = group.run(step, hide=True, warn=True, in_stream=False)
            except GroupException as exc:  # a connection failed: report, stop
                for c, r in exc.result.items():
                    if isinstance(r, BaseException):
                        failures.append(f"{names[id(c)]}: {r!r}")
                break
            for c, r in results.items():
                sys.stdout.write(f"{names[id(c)]}: {r.stdout}")
                if r.stderr:
                    sys.stdout.write(f"{names[id(c)]} stderr: {r.stderr}")
                if r.exited != 0:
                    failures.append(f"{names[id(c)]}: {step!r} exited {r.exited}")
    finally:
        group.close()
    for line in failures:
        print(line, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
