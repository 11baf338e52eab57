"""Run the benchmark suite and print one Markdown report (also saved, with a JSON file).

    python benchmarks/run.py                         # everything, ~10 minutes on 2 cores
    python benchmarks/run.py --suites ssh --hosts 50 --workloads W2 --reps 5
    python benchmarks/run.py --suites memory --memory-hosts 200

See benchmarks/README.md for what each number means. Results go to benchmarks/results/
(git-ignored scratch); copy a report worth keeping into the README.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness import Sample, Series, fmt, interleave, ratio, table
from workloads import (
    REPO,
    WORKLOADS,
    ControlMasters,
    FleetView,
    anchors_bin,
    ansible_argv,
    local_runbook,
    paramiko_loop_argv,
    plan_runbook,
    pyinfra_argv,
    runbook_command,
    runbook_ssh_argv,
    small_runbook,
    ssh_runbook,
)

SUITES = ("startup", "plan", "local", "ssh", "memory")


def fleet_cpu(fleet: Any) -> Callable[[], float]:
    """CPU seconds used so far by the fleet's sshds and everything they ran (reaped
    processes count in their parent's children times, live ones in their own)."""
    import psutil

    def probe() -> float:
        total = 0.0
        for h in fleet:
            for p in h.processes():
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
        return total

    return probe


MB = 1_000_000


def _csv(s: str) -> list[str]:
    return [x for x in s.split(",") if x]


def _ints(s: str) -> list[int]:
    return [int(x) for x in _csv(s)]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--suites",
        type=_csv,
        default=["startup", "plan", "local", "ssh"],
        help=f"comma-separated, of {', '.join(SUITES)} (default: all but memory)",
    )
    p.add_argument("--reps", type=int, default=3, help="timed runs per tool (median reported)")
    p.add_argument("--hosts", type=_ints, default=[10, 50], help="SSH fleet sizes")
    p.add_argument("--workloads", type=_csv, default=list(WORKLOADS), help="W1,W2,W3")
    p.add_argument(
        "--anchor-workloads",
        type=_csv,
        default=["W2"],
        help="workloads ansible/pyinfra run on (they are slow)",
    )
    p.add_argument(
        "--anchor-hosts",
        type=_ints,
        default=[10],
        help="fleet sizes ansible/pyinfra run at (ansible W2@50 takes minutes per run)",
    )
    p.add_argument("--anchor-reps", type=int, default=None, help="default: --reps")
    p.add_argument(
        "--anchors",
        metavar="VENV",
        help="venv with ansible-core and pyinfra "
        "(default $RUNBOOK_BENCH_ANCHORS or ~/.venvs/runbook-anchors)",
    )
    p.add_argument("--no-anchors", action="store_true", help="skip ansible and pyinfra")
    p.add_argument("--memory-hosts", type=int, default=200, help="fleet size for `memory`")
    p.add_argument("--plan-hosts", type=int, default=1000)
    p.add_argument("--plan-steps", type=int, default=20)
    p.add_argument("--local-commands", type=int, default=1000)
    p.add_argument("--local-forks", type=int, default=8)
    p.add_argument(
        "--local-shell",
        default="/bin/sh",
        help="shell of the local step and of xargs (same work on both sides)",
    )
    p.add_argument("--startup-reps", type=int, default=10)
    p.add_argument(
        "--runbook",
        metavar="CMD",
        help="runbook command (default: the script beside this python, not a pyenv shim)",
    )
    p.add_argument(
        "--runbook-b",
        metavar="CMD",
        action="append",
        default=[],
        help="another runbook (e.g. a patched copy: 'env PYTHONPATH=/tmp/proto python -m "
        "runbook') measured beside the first, shown as runbook (B); repeat for (C), (D)...",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return p.parse_args(argv)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rb = runbook_command(args.runbook)
        self.others = [runbook_command(cmd) for cmd in args.runbook_b]
        self.stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out.mkdir(parents=True, exist_ok=True)
        self.log = args.out / f"{self.stamp}.log"  # every tool's console output
        self.scratch = Path(tempfile.mkdtemp(prefix="runbook-bench-"))
        self.results: dict[str, Any] = {"meta": self.meta(), "suites": {}}
        self.sections: list[str] = []
        self.targets: list[tuple[str, str, str, bool | None]] = []

    # -- helpers ------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        def out(cmd: list[str]) -> str:
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=30)
            except OSError:
                return "?"
            return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else "?"

        import os

        return {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
            f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "paramiko": out([sys.executable, "-c", "import paramiko; print(paramiko.__version__)"]),
            "openssh": out(["ssh", "-V"]),
            "runbook": out([*runbook_command(self.args.runbook), "--version"]),
            "git": out(["git", "describe", "--always", "--dirty"]),
            "reps": self.args.reps,
        }

    def progress(self, s: Series, sample: Sample) -> None:
        flag = "" if sample.rc == 0 else f"  rc={sample.rc} (see {self.log})"
        print(
            f"  {s.tool:<28} {sample.wall:7.3f}s  {sample.maxrss_kib / 1024:6.1f} MiB{flag}",
            file=sys.stderr,
            flush=True,
        )

    def run(
        self, label: str, series: list[Series], reps: int, quiet: bool = False, **kw: Any
    ) -> list[Series]:
        """``quiet``: the tools' output goes to /dev/null, not the log (a 20,000-line plan)."""
        print(f"== {label}", file=sys.stderr, flush=True)
        # cwd: the scratch directory, never the repository, whose ./runbook would shadow a
        # --runbook-b given through PYTHONPATH (python -m puts the cwd first on sys.path).
        log = None if quiet else self.log
        interleave(series, reps, log=log, progress=self.progress, cwd=self.scratch, **kw)
        return series

    def target(self, what: str, goal: str, value: float | None, unit: str, met: bool | None):
        shown = "not measured" if value is None else f"{value:.3g}{unit}"
        self.targets.append((what, goal, shown, met if value is not None else None))

    def runbooks(self) -> list[tuple[str, list[str]]]:
        out = [("runbook", self.rb)]
        for letter, cmd in zip("BCDEFG", self.others, strict=False):
            out.append((f"runbook ({letter})", cmd))
        return out

    # -- suites ---------------------------------------------------------------------------------

    def startup(self) -> None:
        small = small_runbook(self.scratch / "small.yml")
        series = [Series("python -c pass", [sys.executable, "-c", "pass"])]
        for name, rb in self.runbooks():
            series += [
                Series(f"{name} --version", [*rb, "--version"]),
                Series(f"{name} validate", [*rb, "validate", str(small)]),
            ]
        self.run("start-up", series, self.args.startup_reps, warmup=True)
        base = series[0].wall
        rows = [
            [s.label, fmt(s.wall * 1000, 0), fmt(ratio(s.wall, base)), fmt(s.rss_mib, 1)]
            for s in series
        ]
        self.sections.append(
            f"### Start-up (median of {self.args.startup_reps})\n\n"
            + table(["command", "wall ms", "× python -c pass", "peak RSS MiB"], rows)
        )
        version = series[1].wall
        limit = 2 * base + 0.1
        self.target(
            "`runbook --version`",
            f"< 2× `python -c pass` + 100 ms (= {limit * 1000:.0f} ms)",
            version * 1000,
            " ms",
            version < limit,
        )
        self.results["suites"]["startup"] = [s.to_dict() for s in series]

    def plan(self) -> None:
        a = self.args
        d = self.scratch / "plan"
        d.mkdir()
        file = plan_runbook(d, a.plan_hosts, a.plan_steps)
        series = [Series(f"{n} plan", [*rb, "plan", str(file)]) for n, rb in self.runbooks()]
        self.run(
            f"plan {a.plan_hosts} hosts × {a.plan_steps} steps",
            series,
            a.reps,
            quiet=True,
            warmup=True,
        )
        cost = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "plan_cost.py"), str(file)],
            capture_output=True,
            text=True,
            check=True,
        )
        inproc = json.loads(cost.stdout)
        rows = [[s.label, fmt(s.wall), fmt(s.rss_mib, 1), fmt(s.cpu)] for s in series]
        b = inproc["best_s"]
        self.sections.append(
            f"### Planning: {a.plan_hosts} hosts × {a.plan_steps} steps = {inproc['commands']} "
            f"commands (median of {a.reps})\n\n"
            + table(["command", "wall s", "peak RSS MiB", "CPU s"], rows)
            + "\n\nIn process (best of 5): "
            f"{inproc['render_us_per_command']:.1f} µs per rendered command "
            f"({inproc['render_first_us_per_command']:.1f} µs on the first plan, templates "
            f"compiled); load {b['load'] * 1000:.0f} ms, inventory {b['inventory'] * 1000:.0f} "
            f"ms, render {b['render'] * 1000:.0f} ms, plan text {b['plan_text'] * 1000:.0f} ms; "
            f"imports {inproc['import_s'] * 1000:.0f} ms."
        )
        s = series[0]
        self.target(
            f"plan {a.plan_hosts}×{a.plan_steps}: wall", "< 1 s", s.wall, " s", s.wall < 1.0
        )
        self.target(
            f"plan {a.plan_hosts}×{a.plan_steps}: peak RSS",
            "< 300 MB",
            s.rss_mib * 1024 * 1024 / MB,
            " MB",
            s.rss_mib * 1024 * 1024 < 300 * MB,
        )
        self.results["suites"]["plan"] = {
            "cli": [s.to_dict() for s in series],
            "in_process": inproc,
        }

    def local(self) -> None:
        a = self.args
        d = self.scratch / "local"
        d.mkdir()
        file = local_runbook(d / "local.yml", a.local_commands, a.local_shell)
        series = [
            Series(
                "xargs -P",
                [
                    "/bin/sh",
                    "-c",
                    f"seq {a.local_commands} | xargs -P {a.local_forks} -n 1 "
                    f"{a.local_shell} -c true",
                ],
            )
        ]
        series += [
            Series(n, [*rb, "apply", "--yes", "--forks", str(a.local_forks), str(file)])
            for n, rb in self.runbooks()
        ]
        self.run(f"local {a.local_commands} commands", series, a.reps, warmup=True)
        base = series[0].wall
        rows = [
            [s.label, fmt(s.wall), fmt(ratio(s.wall, base)), fmt(s.rss_mib, 1), fmt(s.cpu)]
            for s in series
        ]
        self.sections.append(
            f"### Local: {a.local_commands} × `{a.local_shell} -c true`, {a.local_forks} in "
            f"parallel (median of {a.reps})\n\n"
            + table(["tool", "wall s", "× xargs", "peak RSS MiB", "CPU s"], rows)
        )
        r = ratio(series[1].wall, base)
        self.target(
            f"local {a.local_commands} commands, runbook / xargs",
            "≤ 1.5",
            r,
            "",
            r is not None and r <= 1.5,
        )
        self.results["suites"]["local"] = [s.to_dict() for s in series]

    @contextlib.contextmanager
    def fleet(self, size: int) -> Iterator[Any]:
        sys.path.insert(0, str(REPO))
        from tests.fleet import Fleet, sshd_available

        if not sshd_available():
            raise SystemExit("benchmarks: /usr/sbin/sshd is needed for the ssh suites")
        print(f"== starting a fleet of {size} sshd", file=sys.stderr, flush=True)
        with Fleet(size) as fleet:
            yield fleet

    def ssh_series(
        self,
        fleet: FleetView,
        name: str,
        n: int,
        masters: ControlMasters | None,
        anchors: Path | None,
    ) -> tuple[list[Series], dict[str, str]]:
        hosts = [f"h{i}" for i in range(1, n + 1)]
        steps = WORKLOADS[name]
        d = self.scratch / f"{name}-{n}"
        d.mkdir(exist_ok=True)
        rb_file = ssh_runbook(d / f"{name}.yml", f"{name} at {n} hosts", hosts, steps)
        series = [Series(t, runbook_ssh_argv(rb, rb_file, n, fleet)) for t, rb in self.runbooks()]
        series.append(Series("paramiko loop", paramiko_loop_argv(d, hosts, steps, fleet)))
        if masters is not None:
            series.append(
                Series(
                    "ssh ControlMaster",
                    masters.script(d / "cm.sh", hosts, steps),
                    note="RSS: largest single ssh process",
                )
            )
        env: dict[str, str] = {}
        wanted = name in self.args.anchor_workloads and n in self.args.anchor_hosts
        if anchors is not None and wanted:
            for tool, build in (("ansible-playbook", ansible_argv), ("pyinfra", pyinfra_argv)):
                built = build(d, hosts, steps, fleet, anchors)
                if built is None:
                    print(f"benchmarks: {tool} not in {anchors}: skipped", file=sys.stderr)
                    continue
                argv, extra = built
                env.update(extra)
                series.append(Series(tool, argv))
        return series, env

    def ssh(self) -> None:
        a = self.args
        anchors = None if a.no_anchors else anchors_bin(a.anchors)
        if anchors is None and not a.no_anchors:
            self.sections.append(
                "_ansible-playbook and pyinfra: not installed, skipped (see README, “Anchors”)._"
            )
            print("benchmarks: ansible/pyinfra venv not found: skipped", file=sys.stderr)
        rows, data = [], []
        with self.fleet(max(a.hosts)) as fl:
            view = FleetView.of(fl)
            probe = fleet_cpu(fl)
            masters = ControlMasters(view, fl.names)
            try:
                for n in a.hosts:
                    for i, name in enumerate(a.workloads):
                        series, env = self.ssh_series(view, name, n, masters, anchors)
                        core = [s for s in series if s.tool not in ("ansible-playbook", "pyinfra")]
                        slow = [s for s in series if s not in core]
                        self.run(f"{name} at {n} hosts", core, a.reps, warmup=i == 0, probe=probe)
                        if slow:  # slow: paired with a runbook of their own, A B A B
                            pair = Series(f"{core[0].tool} (beside anchors)", core[0].argv)
                            self.run(
                                f"{name} at {n} hosts (anchors)",
                                [pair, *slow],
                                a.anchor_reps or a.reps,
                                env=env,
                                probe=probe,
                            )
                            series.append(pair)
                        rows += self.ssh_rows(name, n, series)
                        data.append(
                            {"workload": name, "hosts": n, "series": [s.to_dict() for s in series]}
                        )
            finally:
                masters.close()
        self.sections.append(
            f"### SSH workloads (median of {a.reps}; fleet of one sshd per host on "
            "127.0.0.1; parallelism = hosts)\n\n"
            + table(
                [
                    "workload",
                    "hosts",
                    "tool",
                    "wall s (min–max)",
                    "× paramiko loop",
                    "× ControlMaster",
                    "peak RSS MiB",
                    "CPU s",
                    "sshd CPU s",
                ],
                rows,
            )
            + "\n\nW1 `echo hello`; W2 ten steps `echo step-K $(hostname)`; W3 `sleep 1`. "
            "CPU s: the controller process tree; sshd CPU s: the fleet's sshds and every "
            "remote command they ran (the same 2 CPUs: remote work slows the controller). "
            "ControlMaster RSS: the largest single `ssh` (masters opened before timing)."
        )
        self.results["suites"]["ssh"] = data

    def ssh_rows(self, name: str, n: int, series: list[Series]) -> list[list[str]]:
        by = {s.tool: s for s in series if s.samples}
        floor = by.get("paramiko loop")
        cm = by.get("ssh ControlMaster")
        rows = []
        for s in series:
            if not s.samples:
                continue
            spread = (
                f"{s.wall:.2f} ({min(x.wall for x in s.samples):.2f}–"
                f"{max(x.wall for x in s.samples):.2f})"
            )
            rows.append(
                [
                    name,
                    str(n),
                    s.label,
                    spread,
                    fmt(ratio(s.wall, floor.wall) if floor else None),
                    fmt(ratio(s.wall, cm.wall) if cm else None),
                    fmt(s.rss_mib, 1),
                    fmt(s.cpu),
                    fmt(s.remote_cpu),
                ]
            )
        rb = by.get("runbook")
        if n == 50 and rb and floor:
            goal = {"W1": 1.15, "W2": 1.10}.get(name)
            if goal:
                r = ratio(rb.wall, floor.wall)
                self.target(
                    f"{name}@50 runbook / paramiko loop",
                    f"≤ {goal:.2f}",
                    r,
                    "",
                    r is not None and r <= goal,
                )
        # Anchors: against the runbook run interleaved with them (the target is at
        # 50 hosts; at other sizes the ratio is shown for information).
        pair = by.get("runbook (beside anchors)")
        if pair:
            for tool, goal in (("ansible-playbook", 20.0), ("pyinfra", 1.5)):
                other = by.get(tool)
                if other:
                    r = ratio(other.wall, pair.wall)
                    self.target(
                        f"{name}@{n} {tool} / runbook",
                        f"≥ {goal:g}" + ("" if n == 50 else " (at 50 hosts)"),
                        r,
                        "",
                        r is not None and r >= goal,
                    )
        return rows

    def memory(self) -> None:
        a = self.args
        n = a.memory_hosts
        with self.fleet(n) as fl:
            view = FleetView.of(fl)
            series, _ = self.ssh_series(view, "W3", n, None, None)
            self.run(f"memory: W3 at {n} hosts", series, a.reps, probe=fleet_cpu(fl))
        floor = series[-1]
        rows = [
            [
                s.label,
                fmt(s.wall),
                fmt(s.rss_mib, 1),
                fmt(s.rss_mib / n, 2),
                fmt(ratio(s.rss_mib, floor.rss_mib)),
            ]
            for s in series
        ]
        self.sections.append(
            f"### Controller memory with {n} connected hosts (W3 `sleep 1`, forks {n}, "
            f"median of {a.reps})\n\n"
            + table(["tool", "wall s", "peak RSS MiB", "MiB per host", "× paramiko loop"], rows)
        )
        rb = series[0]
        self.target(
            f"controller memory, {n} hosts",
            "< 2 MiB per host",
            rb.rss_mib / n,
            " MiB/host",
            rb.rss_mib / n < 2.0,
        )
        self.results["suites"]["memory"] = [s.to_dict() for s in series]

    # -- report ---------------------------------------------------------------------------------

    def report(self) -> str:
        m = self.results["meta"]
        head = (
            f"## Benchmark run {m['date']}\n\n"
            f"{m['machine']}; Python {m['python']}; paramiko {m['paramiko']}; {m['openssh']}; "
            f"{m['runbook']} (git {m['git']}); medians of {m['reps']} interleaved runs.\n"
        )
        rows = [
            [what, goal, shown, "–" if met is None else ("**met**" if met else "**missed**")]
            for what, goal, shown, met in self.targets
        ]
        targets = "### Targets (issue 6)\n\n" + table(["measure", "target", "measured", ""], rows)
        self.results["targets"] = [
            {"measure": w, "target": g, "measured": s, "met": met} for w, g, s, met in self.targets
        ]
        return "\n\n".join([head, targets, *self.sections]) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        raise SystemExit(f"unknown suite(s): {', '.join(sorted(unknown))}")
    bench = Bench(args)
    try:
        for suite in SUITES:
            if suite in args.suites:
                getattr(bench, suite)()
    finally:
        import shutil

        shutil.rmtree(bench.scratch, ignore_errors=True)
    text = bench.report()
    (args.out / f"{bench.stamp}.md").write_text(text)
    (args.out / f"{bench.stamp}.json").write_text(json.dumps(bench.results, indent=2) + "\n")
    print(text)
    print(
        f"saved {args.out / bench.stamp}.md and .json; console output in {bench.log}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
