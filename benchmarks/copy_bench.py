"""Copy throughput: runbook's ``copy`` against ``scp`` and paramiko's ``SFTPClient.put``;
``fetch`` against ``scp`` the other way.

    python benchmarks/copy_bench.py                       # 100 MiB to 10 hosts, 5 rounds
    python benchmarks/copy_bench.py --hosts 10 --size-mib 100 --reps 5 --big-gib 1
    python benchmarks/copy_bench.py --pythonpath /tmp/rb   # runbook exported there

Each round runs, interleaved (A B C A B C, see README "What is measured"), as whole
processes from fork to exit, connections included:

- **runbook**: ``runbook apply`` of one ``copy`` step to every host (``--forks`` = hosts);
- **runbook, unchanged**: the same apply again, every dest already right (the probe only);
- **scp**: one ``scp`` per host, all at once (OpenSSH 9 scp speaks SFTP);
- **paramiko put**: ``sftp_put.py``, one thread per host, ``SFTPClient.put``;
- **runbook fetch** and **scp fetch**: the same file back from every host into a
  directory of its own per host (``fetch`` and one ``scp host:file`` per host).

Ciphers: runbook prefers aes128-gcm (``contexts/paramiko_adapter.py``), paramiko put
negotiates paramiko's default (aes128-ctr + hmac-sha2-256), scp OpenSSH's
(chacha20-poly1305).

Dest files are removed before each timed write, so every tool writes every byte; every
dest is checked (sha256) after every run. ``--pythonpath`` (default: this checkout) is
where runbook is imported from: export a commit and compile it (README, "Which code
runs"), or every run also compiles runbook's modules when bytecode is not written.
Controller CPU is the tool's process tree (GNU time); fleet CPU is the sshds'
(``run.fleet_cpu``). ``--big-gib`` adds one host and a file of that size (runbook and
scp): wall time and runbook's peak RSS.

Nothing here asserts a time; the fleet runs on the same CPUs as the tools.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness import Series, fmt, measure, ratio, table
from run import fleet_cpu
from workloads import REPO, FleetView

HERE = Path(__file__).resolve().parent
MIB = 1 << 20


def make_file(path: Path, size: int) -> str:
    """``size`` random bytes (incompressible: no tool gains from compression)."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 8 * MIB))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MIB):
            h.update(block)
    return h.hexdigest()


class Bench:
    def __init__(self, fleet: FleetView, hosts: list[str], work: Path, src: Path) -> None:
        self.fleet, self.hosts, self.work, self.src = fleet, hosts, work, src
        self.dest = work / "dest"
        self.dest.mkdir(exist_ok=True)
        self.env = {"PYTHONPATH": str(REPO)}
        self.remote_src = self.dest / "fetch-src.bin"  # on the hosts (this machine)

    def dests(self, tool: str) -> list[Path]:
        return [self.dest / tool / f"{h}.bin" for h in self.hosts]

    def runbook(self, tool: str) -> list[str]:
        return self._apply(tool, "copy", self.src)

    def fetch(self, tool: str) -> list[str]:
        return self._apply(tool, "fetch", self.remote_src)

    def _apply(self, tool: str, action: str, src: object) -> list[str]:
        """``runbook apply`` of one ``copy`` or ``fetch`` step on every host, into
        ``DEST/TOOL/HOST.bin``."""
        (self.dest / tool).mkdir(exist_ok=True)
        rb = self.work / f"{tool}.yml"
        rb.write_text(
            f"name: {action} {self.src.name}\nhosts:\n  fleet: {json.dumps(self.hosts)}\n"
            f"steps:\n  - name: {action}\n    hosts: fleet\n"
            f"    {action}: {{src: {src}, "
            f'dest: "{self.dest / tool}/{{{{ host.name }}}}.bin"}}\n'
        )
        return [
            sys.executable,
            "-m",
            "runbook",
            "apply",
            "--yes",
            "--forks",
            str(len(self.hosts)),
        ] + ["--ssh-config", str(self.fleet.ssh_config), str(rb)]

    def scp_fetch(self, tool: str) -> list[str]:
        (self.dest / tool).mkdir(exist_ok=True)
        config = str(self.fleet.ssh_config)
        each = [
            shlex.join(["scp", "-q", "-F", config, f"{h}:{self.remote_src}", str(d)])
            for h, d in zip(self.hosts, self.dests(tool), strict=True)
        ]
        script = (
            " & ".join(each)
            + " & fail=0; for j in $(jobs -p); do wait $j || fail=1; done; exit $fail"
        )
        return ["/bin/bash", "-c", script]

    def scp(self, tool: str) -> list[str]:
        (self.dest / tool).mkdir(exist_ok=True)
        each = [
            shlex.join(["scp", "-q", "-F", str(self.fleet.ssh_config), str(self.src), f"{h}:{d}"])
            for h, d in zip(self.hosts, self.dests(tool), strict=True)
        ]
        script = (
            " & ".join(each)
            + " & fail=0; for j in $(jobs -p); do wait $j || fail=1; done; exit $fail"
        )
        return ["/bin/bash", "-c", script]

    def put(self, tool: str) -> list[str]:
        (self.dest / tool).mkdir(exist_ok=True)
        spec = [
            {
                "name": h,
                "address": "127.0.0.1",
                "port": self.fleet.ports[h],
                "user": "root",
                "key": str(self.fleet.client_key),
            }
            for h in self.hosts
        ]
        hosts_file = self.work / "put-hosts.json"
        hosts_file.write_text(json.dumps(spec))
        template = str(self.dest / tool / "{name}.bin")
        return [
            sys.executable,
            str(HERE / "sftp_put.py"),
            str(hosts_file),
            str(self.fleet.known_hosts),
            str(self.src),
            template,
        ]


def timed_rounds(
    bench: Bench,
    tools: list[tuple[Series, bool]],
    reps: int,
    want: str,
    probe: Callable[[], float],
) -> None:
    """``tools``: (series, remove its dests first). One untimed warm-up round."""
    for r in range(reps + 1):
        for series, fresh in tools:
            dests = bench.dests(series.tool.split(",")[0].replace(" ", "-"))
            if fresh:
                for d in dests:
                    d.unlink(missing_ok=True)
            before = probe()
            sample = measure(series.argv, env=bench.env, cwd=bench.work, timeout=1800)
            sample.remote_cpu = probe() - before
            bad = [d.name for d in dests if not d.exists() or digest(d) != want]
            if bad:
                sample.rc = sample.rc or 99
                print(f"  {series.tool}: wrong or missing dest on {bad}", file=sys.stderr)
            if r:
                series.samples.append(sample)
            print(
                f"  {'warm-up ' if not r else ''}{series.tool:<22} {sample.wall:7.2f}s "
                f"cpu {sample.cpu:6.2f}s  rss {sample.maxrss_kib / 1024:6.1f} MiB  "
                f"fleet cpu {sample.remote_cpu:6.2f}s",
                file=sys.stderr,
                flush=True,
            )


def report(series: list[Series], size: int, hosts: int) -> str:
    total = size * hosts / 1e6
    rows = []
    for s in series:
        rows.append(
            [
                s.label,
                fmt(s.wall),
                fmt(total / s.wall if s.wall else None, 0),
                fmt(s.cpu),
                fmt(s.remote_cpu),
                fmt(s.rss_mib, 1),
                ", ".join(f"{x.wall:.2f}" for x in s.samples),
            ]
        )
    head = [
        "tool",
        "wall (median, s)",
        "MB/s (all hosts)",
        "controller CPU s",
        "fleet CPU s",
        "peak RSS MiB",
        "runs",
    ]
    by = {s.tool: s for s in series}
    rb, scp, put = by["runbook"], by["scp"], by["paramiko put"]
    gib = size * hosts / 2**30
    lines = [
        table(head, rows),
        "",
        f"copy: runbook / scp: **{fmt(ratio(rb.wall, scp.wall))}×** (rounds "
        f"{_rounds(rb, scp)}); runbook / paramiko put: **{fmt(ratio(rb.wall, put.wall))}×**; "
        f"paramiko put / scp: {fmt(ratio(put.wall, scp.wall))}×",
        f"runbook's controller CPU per GiB written: {fmt(rb.cpu / gib)} s "
        f"(paramiko put: {fmt(put.cpu / gib)} s; scp, all its ssh "
        f"processes: {fmt(scp.cpu / gib)} s)",
    ]
    if "runbook fetch" in by and "scp fetch" in by:
        f, sf = by["runbook fetch"], by["scp fetch"]
        lines.append(
            f"fetch: runbook / scp: **{fmt(ratio(f.wall, sf.wall))}×** (rounds "
            f"{_rounds(f, sf)}); controller CPU per GiB read: runbook {fmt(f.cpu / gib)} s, "
            f"scp {fmt(sf.cpu / gib)} s"
        )
    return "\n".join(lines)


def _rounds(a: Series, b: Series) -> str:
    """The ratio in each interleaved round, min–max."""
    r = [x.wall / y.wall for x, y in zip(a.samples, b.samples, strict=False) if y.wall]
    return f"{min(r):.2f}–{max(r):.2f}" if r else "–"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=10)
    p.add_argument("--size-mib", type=int, default=100)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--big-gib", type=float, default=0, help="also one host, a file this big")
    p.add_argument("--no-fetch", action="store_true", help="copy only")
    p.add_argument("--json", type=Path, help="also write every sample here (run.py reads it)")
    p.add_argument(
        "--pythonpath", default=str(REPO), help="where runbook is imported from (a compiled export)"
    )
    a = p.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.fleet import Fleet

    work = Path(tempfile.mkdtemp(prefix="rbcopy-"))
    try:
        src = work / "src.bin"
        want = make_file(src, a.size_mib * MIB)
        with Fleet(a.hosts) as fl:
            view, probe = FleetView.of(fl), fleet_cpu(fl)
            hosts = fl.names
            bench = Bench(view, hosts, work, src)
            bench.env = {"PYTHONPATH": a.pythonpath}
            rb = Series("runbook", bench.runbook("runbook"))
            again = Series("runbook, unchanged", rb.argv)
            scp = Series("scp", bench.scp("scp"))
            put = Series("paramiko put", bench.put("paramiko-put"))
            tools = [(rb, True), (again, False), (scp, True), (put, True)]
            if not a.no_fetch:
                shutil.copyfile(src, bench.remote_src)
                tools += [
                    (Series("runbook fetch", bench.fetch("runbook-fetch")), True),
                    (Series("scp fetch", bench.scp_fetch("scp-fetch")), True),
                ]
            print(f"== {a.size_mib} MiB to {len(hosts)} hosts, {a.reps} rounds", file=sys.stderr)
            load = os.getloadavg()
            timed_rounds(bench, tools, a.reps, want, probe)
            out = [
                f"## Copy: {a.size_mib} MiB to {len(hosts)} hosts (load average before: "
                f"{load[0]:.1f}, after: {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs)",
                "",
                report([s for s, _ in tools], a.size_mib * MIB, len(hosts)),
            ]
            print("\n".join(out), flush=True)  # kept, whatever happens to the big file
            if a.json:
                a.json.write_text(
                    json.dumps(
                        {
                            "hosts": len(hosts),
                            "size_mib": a.size_mib,
                            "load": [load[0], os.getloadavg()[0]],
                            "series": [s.to_dict() for s, _ in tools],
                            "report": "\n".join(out),
                        },
                        indent=2,
                    )
                )
            if a.big_gib:
                print("\n" + big(bench, view, hosts[0], work, a.big_gib, probe))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def big(
    bench: Bench, view: FleetView, host: str, work: Path, gib: float, probe: Callable[[], float]
) -> str:
    src = work / "big.bin"
    want = make_file(src, int(gib * 2**30))
    (work / "big").mkdir(exist_ok=True)
    one = Bench(view, [host], work / "big", src)
    one.env = bench.env
    rb = Series("runbook", one.runbook("runbook"))
    scp = Series("scp", one.scp("scp"))
    print(f"== {gib:g} GiB to one host, 1 round", file=sys.stderr)
    timed_rounds(one, [(rb, True), (scp, True)], 1, want, probe)
    r, s = rb.samples[-1], scp.samples[-1]
    return (
        f"## Copy: {gib:g} GiB to one host\n\nrunbook: {r.wall:.1f}s, peak RSS "
        f"{r.maxrss_kib / 1024:.0f} MiB, controller CPU {r.cpu:.1f}s; scp: {s.wall:.1f}s "
        f"(runbook / scp {fmt(ratio(r.wall, s.wall))}×)"
    )


if __name__ == "__main__":
    sys.exit(main())
