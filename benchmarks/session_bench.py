"""Host sessions against the bare paramiko loop, and the session's controller CPU.

    python benchmarks/session_bench.py                  # W2 at 10 and 50 hosts, 5 paired runs
    python benchmarks/session_bench.py --hosts 10 --reps 3 --workload W1
    python benchmarks/session_bench.py --suites local   # controller CPU per command only
    python benchmarks/session_bench.py --suites cost    # fixed and per-command CPU, 1 host

**ssh**: ``paramiko_loop.py`` (one ``exec_command`` per command) against
``session_loop.py`` (the same loop, each command one request to a host session), and the
session again with Nagle's algorithm left on: whole processes, interleaved A B C A B C,
medians (see README, "What is measured"). **local**: in this process, N ``true``
commands through a local session (``/bin/sh -c BOOTSTRAP`` through pipes), one at a
time and from several threads: this process's CPU (every thread) per command, which is
the controller's cost of the protocol (the executor is another process). **cost**: on
one host, one command at a time, the fixed cost (connect, start, close) and the cost per
command of each transport, host and controller CPU: the steadiest figures on a busy
machine.

Nothing here asserts a time; read the numbers with the README's caveats (2 shared CPUs,
the "remote" hosts on the same CPUs).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import Series, fmt, interleave, ratio, table
from run import fleet_cpu
from workloads import REPO, WORKLOADS, FleetView, paramiko_loop_argv

HERE = Path(__file__).resolve().parent


def local_cpu(commands: int, threads: int, reps: int) -> str:
    """Controller CPU per command (µs) and wall, sequential and with ``threads`` callers."""
    sys.path.insert(0, str(REPO))
    from runbook.run.ssh.session import SessionRequest, local_session

    session = local_session()
    rows = []
    try:
        for _ in range(50):  # warm-up: imports, first forks
            session.run(SessionRequest("true"))
        for callers in (1, threads):
            samples = []
            for _ in range(reps):
                samples.append(_local_run(session, SessionRequest, commands, callers))
            cpu = statistics.median(s[0] for s in samples)
            wall = statistics.median(s[1] for s in samples)
            rows.append([str(callers), str(commands), f"{cpu:.0f}", f"{wall:.2f}"])
    finally:
        session.close()
    return (
        f"### Controller CPU per command, local session (median of {reps})\n\n"
        + table(["callers", "commands", "controller CPU µs/command", "wall ms/command"], rows)
        + "\n\n`true` with the default shell (/bin/bash); CPU is user + system of this "
        "process, every thread (callers and the session's reader); the executor and the "
        "commands are other processes."
    )


def _local_run(session: object, request: type, commands: int, callers: int) -> tuple[float, float]:
    per = commands // callers

    def caller() -> None:
        for _ in range(per):
            session.run(request("true"))  # type: ignore[attr-defined]

    before, started = os.times(), time.perf_counter()
    workers = [threading.Thread(target=caller) for _ in range(callers)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall, after = time.perf_counter() - started, os.times()
    cpu = (after.user + after.system) - (before.user + before.system)
    done = per * callers
    return cpu / done * 1e6, wall / done * 1e3


def ssh(hosts: list[int], workload: str, reps: int) -> str:
    sys.path.insert(0, str(REPO))
    from tests.fleet import Fleet

    steps = WORKLOADS[workload]
    rows = []
    env = {"PYTHONPATH": str(REPO)}
    with Fleet(max(hosts)) as fleet, tempfile.TemporaryDirectory() as scratch:
        view, probe = FleetView.of(fleet), fleet_cpu(fleet)
        for n in hosts:
            names = fleet.names[:n]
            loop = paramiko_loop_argv(Path(scratch), names, steps, view)
            session = [loop[0], str(HERE / "session_loop.py"), *loop[2:]]
            series = [
                Series("paramiko loop", loop),
                Series("session", session),
                Series("session, Nagle on", [*session[:2], "--no-nodelay", *session[2:]]),
            ]
            print(f"== {workload} at {n} hosts", file=sys.stderr, flush=True)
            interleave(series, reps, env=env, warmup=True, probe=probe)
            base = series[0].wall
            for s in series:
                lo, hi = min(x.wall for x in s.samples), max(x.wall for x in s.samples)
                rows.append(
                    [
                        workload,
                        str(n),
                        s.label,
                        f"{s.wall:.2f} ({lo:.2f}–{hi:.2f})",
                        fmt(ratio(s.wall, base)),
                        fmt(s.cpu),
                        fmt(s.remote_cpu),
                    ]
                )
    header = ["workload", "hosts", "tool", "wall s (min–max)", "× loop", "CPU s", "sshd CPU s"]
    return f"### Session vs paramiko loop (median of {reps}, interleaved)\n\n" + table(header, rows)


def costs(reps: int, commands: int) -> str:
    """Fixed and per-command CPU of each transport, on one host, one command at a time.

    Every figure is a total taken after the connection closed, when every remote process
    has been reaped: a live process's /proc times lag (here by ~15 ms per executor), so a
    probe while it runs under-reports. Slope between 0 and ``commands`` commands.
    """
    sys.path.insert(0, str(REPO))
    from tests.fleet import Fleet

    rows = []
    with Fleet(1) as fleet:
        probe = fleet_cpu(fleet)
        for mode in ("exec_command", "session"):
            zero = [_cost_once(fleet, probe, mode, 0) for _ in range(reps)]
            many = [_cost_once(fleet, probe, mode, commands) for _ in range(reps)]
            fixed = [statistics.median(x[i] for x in zero) for i in range(3)]
            per = [(statistics.median(x[i] for x in many) - fixed[i]) / commands for i in range(3)]
            rows.append(
                [mode, f"{fixed[0]:.1f}", f"{per[0]:.2f}", f"{fixed[1]:.1f}", f"{per[1]:.2f}"]
                + [f"{per[2]:.2f}"]
            )
    header = ["transport", "host ms fixed", "host ms/cmd", "controller ms fixed"]
    header += ["controller ms/cmd", "wall ms/cmd"]
    return (
        f"### Fixed and per-command cost, one host, sequential (median of {reps})\n\n"
        + table(header, rows)
        + f"\n\n`{WORKLOADS['W2'][0]}`; TCP_NODELAY on for both. Fixed: connect, (start "
        "the executor,) close. Host: sshd and everything it ran."
    )


def _cost_once(fleet: object, probe: object, mode: str, n: int) -> tuple[float, float, float]:
    import paramiko

    from runbook.run.ssh.session import SessionRequest, open_channel_session

    h = fleet["h1"]  # type: ignore[index]
    before, cpu, started = probe(), time.process_time(), time.perf_counter()  # type: ignore[operator]
    client = paramiko.SSHClient()
    client.load_host_keys(str(fleet.known_hosts))  # type: ignore[attr-defined]
    client.connect("127.0.0.1", h.port, username="root", key_filename=str(fleet.client_key))  # type: ignore[attr-defined]
    transport = client.get_transport()
    assert transport is not None
    transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
    session = open_channel_session(transport) if mode == "session" else None
    for _ in range(n):
        if session is not None:
            session.run(SessionRequest(WORKLOADS["W2"][0]))
        else:
            _, out, err = client.exec_command(WORKLOADS["W2"][0])
            out.read(), err.read(), out.channel.recv_exit_status()
    wall = time.perf_counter() - started
    if session is not None:
        session.close()
    client.close()
    time.sleep(0.3)  # let sshd reap everything
    host = probe() - before  # type: ignore[operator]
    return host * 1e3, (time.process_time() - cpu) * 1e3, wall * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--suites", default="local,cost,ssh")
    p.add_argument("--hosts", default="10,50")
    p.add_argument("--workload", default="W2", choices=sorted(WORKLOADS))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--local-commands", type=int, default=1000)
    p.add_argument("--local-threads", type=int, default=8)
    p.add_argument("--cost-commands", type=int, default=100)
    a = p.parse_args(argv)
    suites = a.suites.split(",")
    sections = []
    if "local" in suites:
        sections.append(local_cpu(a.local_commands, a.local_threads, a.reps))
        print(sections[-1] + "\n", flush=True)
    if "cost" in suites:
        sections.append(costs(a.reps, a.cost_commands))
        print(sections[-1] + "\n", flush=True)
    if "ssh" in suites:
        hosts = [int(x) for x in a.hosts.split(",") if x]
        sections.append(ssh(hosts, a.workload, a.reps))
        print(sections[-1] + "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
