"""Load: 200 hosts × 10 steps over SSH with 50 forks, in-process, so the controller's
threads, file descriptors and peak RSS can be measured.

200 host names share 4 sshd (50 names each, one port per sshd): each name is its own
connection, as 200 real hosts would be. MaxStartups is raised on these sshd because the
MaxStartups behaviour has its own test (``test_faults_ssh``); here 200 handshakes in
parallel must not be what is measured.

The full size runs by default if it fits in a minute; ``RUNBOOK_LOAD_HOSTS`` and
``RUNBOOK_LOAD_STEPS`` change it (the soak variant runs 500 × 20 with ``-m soak``).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.fleet import Fleet
from tests.reliability.harness import Collector, build_plan, ssh_files, ssh_router
from tests.reliability.helpers import fd_count

SSHD = 4


def vm_hwm_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM), so the figure is this run's alone."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def settle(predicate, timeout: float = 15.0) -> bool:
    """Threads of closed transports end asynchronously; give them a bounded moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


class Sampler(Collector):
    """Also samples the controller's threads and fds as results arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.max_threads = 0
        self.max_fds = 0

    def handle(self, event) -> None:
        super().handle(event)
        if event.kind == "command_finished" and len(self.events) % 25 == 0:
            self.max_threads = max(self.max_threads, threading.active_count())
            self.max_fds = max(self.max_fds, fd_count())


def run_load(fleet_factory, tmp_path: Path, hosts: int, steps: int, forks: int) -> dict:
    from runbook.run.runner import Runner

    fleet: Fleet = fleet_factory(SSHD, max_startups="300:30:400")
    files = ssh_files(fleet, tmp_path)
    ports = [h.port for h in fleet]
    lines = ["name: load", "hosts:", "  fleet:", "    hosts:"]
    lines += [
        f"      n{i:03d}: {{address: 127.0.0.1, port: {ports[i % SSHD]}}}" for i in range(hosts)
    ]
    lines.append("steps:")
    for s in range(steps):
        lines += [
            f"  - name: step {s}",
            "    hosts: fleet",
            "    timeout: 120",
            f"    run: echo {{{{ host.name }}}} {s}",
        ]
    rb = tmp_path / "load.yml"
    rb.write_text("\n".join(lines) + "\n")
    plan = build_plan(rb)

    threads_before, fds_before = threading.active_count(), fd_count()
    thread_names_before = {t.name for t in threading.enumerate()}
    exact_peak = reset_peak_rss()
    events = Sampler()
    router = ssh_router(ssh_config=str(files.ssh_config), connect_timeout=30)
    runner = Runner(plan, router, run_id="load", forks=forks, listeners=[events])
    started = time.monotonic()
    try:
        result = runner.run()
        wall = time.monotonic() - started
    finally:
        router.close()
    peak = vm_hwm_mib()
    threads_back = settle(lambda: threading.active_count() <= threads_before)
    fds_back = settle(lambda: fd_count() <= fds_before)
    figures = {
        "hosts": hosts,
        "steps": steps,
        "commands": hosts * steps,
        "forks": forks,
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(peak, 1),
        "peak_rss_scope": "this run (VmHWM reset)" if exact_peak else "process lifetime",
        "threads_before_peak_after": (threads_before, events.max_threads, threading.active_count()),
        "fds_before_peak_after": (fds_before, events.max_fds, fd_count()),
        "statuses": result.counts(),
        "connections": sum(h.connections() for h in fleet),
    }
    print(f"\nload figures: {figures}")
    leftover = [t.name for t in threading.enumerate() if t.name not in thread_names_before]
    assert result.exit_code == 0, result.halted
    assert figures["statuses"]["ok"] == hosts * steps, figures["statuses"]
    assert len(events.of("command_finished")) == hosts * steps
    assert figures["connections"] == hosts, "one connection per host, reused by every step"
    assert threads_back, f"threads {threading.active_count()} > {threads_before}: {leftover}"
    assert fds_back, f"fds {fd_count()} > {fds_before}"
    return figures


@pytest.mark.ssh
def test_two_hundred_hosts_ten_steps_fifty_forks(fleet_factory, tmp_path: Path) -> None:
    hosts = int(os.environ.get("RUNBOOK_LOAD_HOSTS", "200"))
    steps = int(os.environ.get("RUNBOOK_LOAD_STEPS", "10"))
    run_load(fleet_factory, tmp_path, hosts, steps, forks=50)


@pytest.mark.ssh
@pytest.mark.soak
def test_soak_five_hundred_hosts_twenty_steps(fleet_factory, tmp_path: Path) -> None:
    """``pytest -m soak tests/reliability``: a longer run of the same promises."""
    run_load(fleet_factory, tmp_path, 500, 20, forks=50)
