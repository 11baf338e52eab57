"""Controller CPU of connections that do nothing: paramiko's poll, per connected host.

    python benchmarks/idle_cost.py                 # 50 and 500 hosts, 10 s idle each
    python benchmarks/idle_cost.py --hosts 100,1000 --idle 20

Each paramiko ``Transport`` thread reads its socket with a 0.1 s timeout
(``Transport._active_check_timeout``) so that it notices a close: an idle connection
wakes its thread, takes the GIL and raises ``socket.timeout`` ten times a second. This
opens N connections to a fleet (50 at a time), waits a second, then measures this
process's CPU over ``--idle`` seconds of doing nothing. What runbook pays on top of the
commands for every connected host, for as long as a run lasts. ``--polls`` sets
paramiko's poll interval (the class attribute) before connecting: runbook's transports
poll every 1.0 s (``contexts/paramiko_adapter.WatchedTransport``), paramiko's every 0.1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

import paramiko
from harness import table
from workloads import REPO


def idle_cpu(fleet: Any, n: int, idle: float, poll: float) -> dict[str, float]:
    paramiko.Transport._active_check_timeout = poll  # type: ignore[attr-defined]
    names = [f"h{i}" for i in range(1, n + 1)]
    key = paramiko.Ed25519Key.from_private_key_file(str(fleet.client_key))
    clients: list[paramiko.SSHClient] = []
    lock = threading.Lock()

    def connect(name: str) -> None:
        c = paramiko.SSHClient()
        c.load_host_keys(str(fleet.known_hosts))
        c.set_missing_host_key_policy(paramiko.RejectPolicy())
        port = fleet[name].port
        c.connect(
            "127.0.0.1",
            port,
            username="root",
            pkey=key,
            allow_agent=False,
            look_for_keys=False,
            timeout=60,
        )
        with lock:
            clients.append(c)

    for i in range(0, n, 50):
        batch = [threading.Thread(target=connect, args=(h,)) for h in names[i : i + 50]]
        for t in batch:
            t.start()
        for t in batch:
            t.join()
    time.sleep(1.0)
    t0, w0 = os.times(), time.monotonic()
    time.sleep(idle)
    t1, w1 = os.times(), time.monotonic()
    for c in clients:
        c.close()
    cpu = (t1.user - t0.user) + (t1.system - t0.system)
    wall = w1 - w0
    return {"connections": len(clients), "wall": wall, "cpu": cpu, "poll": poll}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hosts", default="50,500", help="comma-separated connection counts")
    p.add_argument("--idle", type=float, default=10.0, help="seconds measured, per count")
    p.add_argument("--polls", default="0.1,1.0", help="poll intervals (s), each measured")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.hosts.split(",") if x]
    polls = [float(x) for x in args.polls.split(",") if x]
    sys.path.insert(0, str(REPO))
    from tests.fleet import Fleet

    fleet = Fleet(max(counts))
    fleet.start(timeout=max(30.0, max(counts) / 5))
    rows, data = [], []
    with fleet:
        for n in counts:
            for poll in polls:
                r = idle_cpu(fleet, n, args.idle, poll)
                data.append(r)
                share = r["cpu"] / r["wall"]
                rows.append(
                    [
                        str(r["connections"]),
                        f"{poll:g}",
                        f"{r['cpu']:.2f}",
                        f"{share:.1%}",
                        f"{share / r['connections'] * 1e6 * poll:.0f}",
                    ]
                )
    print(
        f"### Idle paramiko connections ({args.idle:g} s; load {os.getloadavg()[0]:.1f})\n\n"
        + table(["connections", "poll s", "CPU s", "of one CPU", "µs per wake-up"], rows)
    )
    print(json.dumps(data), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
