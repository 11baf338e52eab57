"""Run the benchmark suite and print one Markdown report (also saved, with a JSON file).

    python benchmarks/run.py                         # the default set, ~25 minutes on 2 cores
    python benchmarks/run.py --suites ssh --hosts 50 --workloads W2 --reps 5
    python benchmarks/run.py --suites scale          # 500 sshd: heavy, opt-in
    python benchmarks/run.py --runbook "runbook --transport session" \\
        --runbook-b "runbook --transport exec"      # both transports, interleaved

See benchmarks/README.md for what each number means. Results go to benchmarks/results/
(git-ignored scratch); copy a report worth keeping into the README.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import Sample, Series, fmt, interleave, ratio, table
from workloads import (
    REPO,
    WORKLOADS,
    ControlMasters,
    FleetView,
    Variant,
    anchors_bin,
    ansible_argv,
    fabric_argv,
    local_runbook,
    paramiko_loop_argv,
    plan_runbook,
    pssh_argv,
    pyinfra_argv,
    runbook_ssh_argv,
    small_runbook,
    ssh_runbook,
)

SUITES = ("startup", "plan", "local", "ssh", "copy", "memory", "scale")
DEFAULT_SUITES = ["startup", "plan", "local", "ssh", "copy"]
ANCHORS = ("ansible", "pyinfra", "fabric", "pssh")
SLOW = {"ansible": "ansible-playbook", "pyinfra": "pyinfra"}  # paired with a runbook of their own
FAST = {"fabric": "Fabric", "pssh": "parallel-ssh"}  # interleaved with runbook and the loop
LOOP = "paramiko loop"


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
        default=DEFAULT_SUITES,
        help=f"comma-separated, of {', '.join(SUITES)} (default: {','.join(DEFAULT_SUITES)})",
    )
    p.add_argument("--reps", type=int, default=3, help="timed runs per tool (median reported)")
    p.add_argument("--hosts", type=_ints, default=[10, 50], help="SSH fleet sizes")
    p.add_argument("--workloads", type=_csv, default=list(WORKLOADS), help="W1,W2,W3")
    p.add_argument(
        "--anchor-tools",
        type=_csv,
        default=list(ANCHORS),
        help=f"which anchors run, of {','.join(ANCHORS)} (default: all)",
    )
    p.add_argument(
        "--anchor-workloads",
        type=_csv,
        default=["W2"],
        help="workloads ansible/pyinfra run on (they are slow); Fabric and parallel-ssh run "
        "on every SSH workload",
    )
    p.add_argument(
        "--anchor-hosts",
        type=_ints,
        default=[50],
        help="fleet sizes ansible/pyinfra run at (ansible W2@50 takes ~2 minutes per run)",
    )
    p.add_argument("--anchor-reps", type=int, default=None, help="default: --reps")
    p.add_argument(
        "--anchors",
        metavar="VENV",
        help="venv with ansible-core, pyinfra, fabric and parallel-ssh "
        "(default $RUNBOOK_BENCH_ANCHORS or ~/.venvs/runbook-anchors)",
    )
    p.add_argument("--no-anchors", action="store_true", help="skip every anchor")
    p.add_argument("--memory-hosts", type=int, default=200, help="fleet size for `memory`")
    p.add_argument("--scale-hosts", type=int, default=500, help="fleet size for `scale`")
    p.add_argument("--scale-forks", type=int, default=100, help="runbook --forks for `scale`")
    p.add_argument("--scale-workloads", type=_csv, default=["W1", "W2"])
    p.add_argument("--scale-reps", type=int, default=None, help="default: --reps")
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
    p.add_argument("--copy-hosts", type=int, default=10, help="fleet size of `copy`")
    p.add_argument("--copy-mib", type=int, default=100, help="file size of `copy`")
    p.add_argument(
        "--copy-pythonpath",
        help="where `copy` imports runbook from (default: the PYTHONPATH= of --runbook, if "
        "it names one, else this checkout)",
    )
    p.add_argument(
        "--runbook",
        metavar="CMD",
        help="runbook command (default: the script beside this python, not a pyenv shim); "
        "words after the runbook program are options of `apply`: 'runbook --transport exec'",
    )
    p.add_argument(
        "--runbook-b",
        metavar="CMD",
        action="append",
        default=[],
        help="another runbook measured beside the first, shown as runbook (B): a patched copy "
        "('env PYTHONPATH=/tmp/proto python -m runbook') or other apply options ('runbook "
        "--transport exec'); repeat for (C), (D)...",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return p.parse_args(argv)


@dataclass
class Target:
    """One row of the targets table: a ratio (or a value) of medians against a goal."""

    issue: str
    measure: str
    goal: str
    value: float | None = None  # the ratio of medians, or the measured value
    unit: str = ""
    met: bool | None = None
    detail: str = ""  # medians (min–max) of both sides, per-round ratios

    def row(self) -> list[str]:
        shown = "not measured" if self.value is None else f"{self.value:.3g}{self.unit}"
        met = "–" if self.met is None else ("**met**" if self.met else "**missed**")
        return [self.issue, self.measure, self.goal, shown, self.detail or "–", met]


def spread(s: Series, unit: str = " s") -> str:
    """``median (min–max)`` of a series' wall times."""
    walls = [x.wall for x in s.samples]
    return f"{s.wall:.2f}{unit} ({min(walls):.2f}–{max(walls):.2f})"


def paired(a: Series, b: Series) -> tuple[float | None, str]:
    """The ratio of medians a/b, and the detail: per-round ratios (the same interleaved
    round: drift hits both) and each side's median (min–max)."""
    r = ratio(a.wall, b.wall)
    rounds = [x.wall / y.wall for x, y in zip(a.samples, b.samples, strict=False) if y.wall > 0]
    per = f"rounds {min(rounds):.2f}–{max(rounds):.2f}; " if rounds else ""
    return r, f"{per}{spread(a)} / {spread(b)}"


class LoadSampler:
    """The 1-minute load average every few seconds while the suite runs (it includes the
    suite's own fleet and tools: the remote hosts are on these CPUs)."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="loadavg", daemon=True)

    def __enter__(self) -> LoadSampler:
        self.start = os.getloadavg()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.end = os.getloadavg()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def summary(self) -> str:
        if not self.samples:
            return "load average: not sampled"
        s = self.samples
        return (
            f"1-minute load average during the run: median {statistics.median(s):.1f}, "
            f"min {min(s):.1f}, max {max(s):.1f} (every {self.every:g} s; "
            f"{self.start[0]:.1f} at the start, {self.end[0]:.1f} at the end; the suite's "
            "own fleet and tools included)"
        )


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        names = ["runbook"] + [f"runbook ({letter})" for letter in "BCDEFG"]
        specs = [args.runbook, *args.runbook_b]
        if len(specs) > len(names):
            raise SystemExit("benchmarks: at most 6 --runbook-b")
        self.variants = [Variant.parse(n, s) for n, s in zip(names, specs, strict=False)]
        self.stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out.mkdir(parents=True, exist_ok=True)
        self.log = args.out / f"{self.stamp}.log"  # every tool's console output
        self.scratch = Path(tempfile.mkdtemp(prefix="runbook-bench-"))
        self.results: dict[str, Any] = {"meta": self.meta(), "suites": {}}
        self.sections: list[str] = []
        self.targets: list[Target] = []
        self.load: LoadSampler | None = None
        # What the targets are computed from, suite by suite.
        self.got: dict[Any, Any] = {}

    # -- helpers ------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        def out(cmd: list[str]) -> str:
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=30)
            except OSError:
                return "?"
            return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else "?"

        anchors = None if self.args.no_anchors else anchors_bin(self.args.anchors)
        versions = "-"
        if anchors is not None:
            versions = out(
                [
                    str(anchors / "python"),
                    "-c",
                    "from importlib.metadata import version as v\n"
                    "names = ('ansible-core', 'pyinfra', 'fabric', 'parallel-ssh', 'paramiko',"
                    " 'ssh2-python', 'gevent')\n"
                    "print(', '.join(n + ' ' + v(n) for n in names))",
                ]
            )
        return {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
            f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "paramiko": out([sys.executable, "-c", "import paramiko; print(paramiko.__version__)"]),
            "openssh": out(["ssh", "-V"]),
            "runbook": out([*self.variants[0].command, "--version"]),
            "git": out(["git", "describe", "--always", "--dirty"]),
            "variants": {v.label: [*v.command, "apply", *v.apply_args] for v in self.variants},
            "anchors": versions,
            "reps": self.args.reps,
        }

    def progress(self, s: Series, sample: Sample) -> None:
        flag = "" if sample.rc == 0 else f"  rc={sample.rc} (see {self.log})"
        print(
            f"  {s.tool:<34} {sample.wall:7.3f}s  {sample.maxrss_kib / 1024:6.1f} MiB{flag}",
            file=sys.stderr,
            flush=True,
        )

    def run(
        self, label: str, series: list[Series], reps: int, quiet: bool = False, **kw: Any
    ) -> list[Series]:
        """``quiet``: the tools' output goes to /dev/null, not the log (a 20,000-line plan)."""
        print(f"== {label}  (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        # cwd: the scratch directory, never the repository, whose ./runbook would shadow a
        # --runbook-b given through PYTHONPATH (python -m puts the cwd first on sys.path).
        log = None if quiet else self.log
        interleave(series, reps, log=log, progress=self.progress, cwd=self.scratch, **kw)
        return series

    def anchors(self) -> Path | None:
        return None if self.args.no_anchors else anchors_bin(self.args.anchors)

    # -- suites ---------------------------------------------------------------------------------

    def copy(self) -> None:
        """``copy_bench.py`` (its own fleet): 100 MiB to 10 hosts against scp, and back."""
        a = self.args
        out = self.scratch / "copy.json"
        print(
            f"== copy {a.copy_mib} MiB to {a.copy_hosts} hosts (load {os.getloadavg()[0]:.1f})",
            file=sys.stderr,
            flush=True,
        )
        subprocess.run(
            [
                sys.executable,
                str(Path(__file__).parent / "copy_bench.py"),
                "--hosts",
                str(a.copy_hosts),
                "--size-mib",
                str(a.copy_mib),
                "--reps",
                str(a.reps),
                "--json",
                str(out),
                "--pythonpath",
                a.copy_pythonpath or self._pythonpath(),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=self.scratch,
        )
        data = json.loads(out.read_text())
        self.sections.append("### " + data["report"].lstrip("#").lstrip())
        self.got["copy"] = data
        self.results["suites"]["copy"] = data

    def _pythonpath(self) -> str:
        """The ``PYTHONPATH=`` of the first runbook's command (a compiled export), if any."""
        for word in self.variants[0].command:
            if word.startswith("PYTHONPATH="):
                return word.split("=", 1)[1]
        return str(REPO)

    def startup(self) -> None:
        small = small_runbook(self.scratch / "small.yml")
        series = [Series("python -c pass", [sys.executable, "-c", "pass"])]
        for v in self.variants:
            series += [
                Series(f"{v.label} --version", [*v.command, "--version"]),
                Series(f"{v.label} validate", [*v.command, "validate", str(small)]),
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
        self.got["startup"] = series
        self.results["suites"]["startup"] = [s.to_dict() for s in series]

    def plan(self) -> None:
        a = self.args
        d = self.scratch / "plan"
        d.mkdir()
        file = plan_runbook(d, a.plan_hosts, a.plan_steps)
        series = [Series(f"{v.label} plan", [*v.command, "plan", str(file)]) for v in self.variants]
        self.run(
            f"plan {a.plan_hosts} hosts × {a.plan_steps} steps",
            series,
            a.reps,
            quiet=True,
            warmup=True,
        )
        # The checkout holding this suite, not whatever `runbook` the interpreter finds
        # (an editable install may point at another tree).
        cost = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "plan_cost.py"), str(file)],
            capture_output=True,
            text=True,
            check=True,
            cwd=self.scratch,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        inproc = json.loads(cost.stdout)
        rows = [[s.label, spread(s), fmt(s.rss_mib, 1), fmt(s.cpu)] for s in series]
        b = inproc["best_s"]
        self.sections.append(
            f"### Planning: {a.plan_hosts} hosts × {a.plan_steps} steps = {inproc['commands']} "
            f"commands (median of {a.reps})\n\n"
            + table(["command", "wall (min–max)", "peak RSS MiB", "CPU s"], rows)
            + f"\n\nIn process (best of 5; the runbook package of {REPO}): "
            f"{inproc['render_us_per_command']:.1f} µs per rendered command "
            f"({inproc['render_first_us_per_command']:.1f} µs on the first plan, templates "
            f"compiled); load {b['load'] * 1000:.0f} ms, inventory {b['inventory'] * 1000:.0f} "
            f"ms, render {b['render'] * 1000:.0f} ms, plan text {b['plan_text'] * 1000:.0f} ms; "
            f"imports {inproc['import_s'] * 1000:.0f} ms."
        )
        self.got["plan"] = series
        self.results["suites"]["plan"] = {
            "cli": [s.to_dict() for s in series],
            "in_process": inproc,
        }

    def local(self) -> None:
        a = self.args
        d = self.scratch / "local"
        d.mkdir()
        file = local_runbook(d / "local.yml", a.local_commands, a.local_shell)
        xargs = Series(
            "xargs -P",
            [
                "/bin/sh",
                "-c",
                f"seq {a.local_commands} | xargs -P {a.local_forks} -n 1 {a.local_shell} -c true",
            ],
        )
        series = [xargs] + [
            Series(v.label, v.apply("--yes", "--forks", str(a.local_forks), str(file)))
            for v in self.variants
        ]
        self.run(f"local {a.local_commands} commands", series, a.reps, warmup=True)
        rows = [
            [s.label, spread(s), fmt(ratio(s.wall, xargs.wall)), fmt(s.rss_mib, 1), fmt(s.cpu)]
            for s in series
        ]
        self.sections.append(
            f"### Local: {a.local_commands} × `{a.local_shell} -c true`, {a.local_forks} in "
            f"parallel (median of {a.reps})\n\n"
            + table(["tool", "wall (min–max)", "× xargs", "peak RSS MiB", "CPU s"], rows)
        )
        self.got["local"] = series
        self.results["suites"]["local"] = [s.to_dict() for s in series]

    @contextlib.contextmanager
    def fleet(self, size: int) -> Iterator[Any]:
        sys.path.insert(0, str(REPO))
        from tests.fleet import Fleet, sshd_available

        if not sshd_available():
            raise SystemExit("benchmarks: /usr/sbin/sshd is needed for the ssh suites")
        print(f"== starting a fleet of {size} sshd", file=sys.stderr, flush=True)
        started = time.perf_counter()
        fleet = Fleet(size)
        try:
            fleet.start(timeout=max(30.0, size / 5))
        except BaseException:
            fleet.stop()
            raise
        self.got[("fleet_start", size)] = time.perf_counter() - started
        with fleet:
            yield fleet

    def ssh_series(
        self,
        fleet: FleetView,
        name: str,
        n: int,
        masters: ControlMasters | None,
        anchors: Path | None,
        *,
        forks: int | None = None,
        loop: bool = True,
        slow: bool = True,
    ) -> tuple[list[Series], list[Series], dict[str, str]]:
        """(core, slow, env): the tools interleaved together; ansible and pyinfra, which
        run paired with a runbook of their own; the environment they need."""
        hosts = [f"h{i}" for i in range(1, n + 1)]
        steps = WORKLOADS[name]
        d = self.scratch / f"{name}-{n}"
        d.mkdir(exist_ok=True)
        rb_file = ssh_runbook(d / f"{name}.yml", f"{name} at {n} hosts", hosts, steps)
        core = [
            Series(v.label, runbook_ssh_argv(v, rb_file, n, fleet, forks)) for v in self.variants
        ]
        if loop:
            core.append(Series(LOOP, paramiko_loop_argv(d, hosts, steps, fleet)))
        tools = self.args.anchor_tools
        if anchors is not None:
            if "fabric" in tools and forks is None:
                argv = fabric_argv(d, hosts, steps, fleet, anchors)
                if argv is None:
                    print(f"benchmarks: fabric not in {anchors}: skipped", file=sys.stderr)
                else:
                    core.append(Series(FAST["fabric"], argv))
            if "pssh" in tools:
                argv = pssh_argv(d, hosts, steps, fleet, anchors, forks)
                if argv is None:
                    print(f"benchmarks: parallel-ssh not in {anchors}: skipped", file=sys.stderr)
                else:
                    core.append(Series(FAST["pssh"], argv))
        if masters is not None:
            core.append(
                Series(
                    "ssh ControlMaster",
                    masters.script(d / "cm.sh", hosts, steps),
                    note="RSS: largest single ssh process",
                )
            )
        env: dict[str, str] = {}
        late: list[Series] = []
        wanted = slow and name in self.args.anchor_workloads and n in self.args.anchor_hosts
        if anchors is not None and wanted:
            for key, build in (("ansible", ansible_argv), ("pyinfra", pyinfra_argv)):
                if key not in tools:
                    continue
                built = build(d, hosts, steps, fleet, anchors)
                if built is None:
                    print(f"benchmarks: {SLOW[key]} not in {anchors}: skipped", file=sys.stderr)
                    continue
                argv, extra = built
                env.update(extra)
                late.append(Series(SLOW[key], argv))
        return core, late, env

    def ssh(self) -> None:
        a = self.args
        anchors = self.anchors()
        if anchors is None and not a.no_anchors:
            self.sections.append("_Anchors: not installed, skipped (see README, “Anchors”)._")
            print("benchmarks: anchors venv not found: skipped", file=sys.stderr)
        rows, data = [], []
        with self.fleet(max(a.hosts)) as fl:
            view = FleetView.of(fl)
            probe = fleet_cpu(fl)
            masters = ControlMasters(view, fl.names)
            try:
                for n in a.hosts:
                    for i, name in enumerate(a.workloads):
                        core, slow, env = self.ssh_series(view, name, n, masters, anchors)
                        self.run(f"{name} at {n} hosts", core, a.reps, warmup=i == 0, probe=probe)
                        series = list(core)
                        if slow:  # slow: paired with the runbooks of their own, A B A B
                            pairs = [
                                Series(f"{s.tool} (beside anchors)", s.argv)
                                for s in core[: len(self.variants)]
                            ]
                            self.run(
                                f"{name} at {n} hosts (slow anchors)",
                                [*pairs, *slow],
                                a.anchor_reps or a.reps,
                                env=env,
                                probe=probe,
                            )
                            series += pairs + slow
                        self.got[(name, n)] = {s.tool: s for s in series if s.samples}
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
                    "CPU ms/command",
                    "sshd CPU s",
                ],
                rows,
            )
            + "\n\nW1 `echo hello`; W2 ten steps `echo step-K $(hostname)`; W3 `sleep 1`. "
            "CPU s: the controller process tree; CPU ms/command: that over hosts × steps "
            "(connections and start-up included); sshd CPU s: the fleet's sshds and every "
            "remote command they ran (the same 2 CPUs: remote work slows the controller). "
            "ControlMaster RSS: the largest single `ssh` (masters opened before timing). "
            "ansible-playbook and pyinfra run in rounds of their own, paired with the "
            "runbooks marked “beside anchors”; their ratios are against those."
        )
        self.results["suites"]["ssh"] = data

    def ssh_rows(self, name: str, n: int, series: list[Series]) -> list[list[str]]:
        by = {s.tool: s for s in series if s.samples}
        floor = by.get(LOOP)
        cm = by.get("ssh ControlMaster")
        commands = n * len(WORKLOADS[name])
        rows = []
        for s in series:
            if not s.samples:
                continue
            rows.append(
                [
                    name,
                    str(n),
                    s.label,
                    spread(s, ""),
                    fmt(ratio(s.wall, floor.wall) if floor else None),
                    fmt(ratio(s.wall, cm.wall) if cm else None),
                    fmt(s.rss_mib, 1),
                    fmt(s.cpu),
                    fmt(s.cpu / commands * 1000),
                    fmt(s.remote_cpu),
                ]
            )
        return rows

    def memory(self) -> None:
        a = self.args
        n = a.memory_hosts
        with self.fleet(n) as fl:
            view = FleetView.of(fl)
            series, _, _ = self.ssh_series(view, "W3", n, None, None, slow=False)
            self.run(f"memory: W3 at {n} hosts", series, a.reps, probe=fleet_cpu(fl))
        floor = series[-1]
        rows = [
            [
                s.label,
                spread(s),
                fmt(s.rss_mib, 1),
                fmt(s.rss_mib / n, 2),
                fmt(ratio(s.rss_mib, floor.rss_mib)),
            ]
            for s in series
        ]
        self.sections.append(
            f"### Controller memory with {n} connected hosts (W3 `sleep 1`, forks {n}, "
            f"median of {a.reps})\n\n"
            + table(
                ["tool", "wall (min–max)", "peak RSS MiB", "MiB per host", "× paramiko loop"], rows
            )
        )
        self.got["memory"] = (n, series)
        self.results["suites"]["memory"] = [s.to_dict() for s in series]

    def scale(self) -> None:
        """500 hosts from one controller: runbook with ``--forks 100`` against
        parallel-ssh with a pool of 100, W1 and W2, whole processes interleaved."""
        a = self.args
        n, forks = a.scale_hosts, a.scale_forks
        reps = a.scale_reps or a.reps
        anchors = self.anchors()
        rows, data = [], []
        with self.fleet(n) as fl:
            view = FleetView.of(fl)
            probe = fleet_cpu(fl)
            for i, name in enumerate(a.scale_workloads):
                series, _, _ = self.ssh_series(
                    view, name, n, None, anchors, forks=forks, loop=False, slow=False
                )
                self.run(
                    f"scale: {name} at {n} hosts, forks {forks}",
                    series,
                    reps,
                    warmup=i == 0,
                    probe=probe,
                )
                self.got[("scale", name)] = {s.tool: s for s in series if s.samples}
                base = self.got[("scale", name)].get(FAST["pssh"])
                commands = n * len(WORKLOADS[name])
                for s in series:
                    if not s.samples:
                        continue
                    rows.append(
                        [
                            name,
                            s.label,
                            spread(s, ""),
                            fmt(ratio(s.wall, base.wall) if base else None),
                            fmt(s.rss_mib, 1),
                            fmt(s.rss_mib / n, 3),
                            fmt(s.cpu),
                            fmt(s.cpu / commands * 1000),
                            fmt(s.remote_cpu),
                        ]
                    )
                data.append({"workload": name, "series": [s.to_dict() for s in series]})
        start = self.got[("fleet_start", n)]
        self.sections.append(
            f"### {n} hosts from one controller (runbook `--forks {forks}`, parallel-ssh "
            f"pool {forks}; median of {reps})\n\n"
            + table(
                [
                    "workload",
                    "tool",
                    "wall s (min–max)",
                    "× parallel-ssh",
                    "peak RSS MiB",
                    "MiB per host",
                    "CPU s",
                    "CPU ms/command",
                    "sshd CPU s",
                ],
                rows,
            )
            + f"\n\nThe fleet of {n} sshd started in {start:.1f} s. MiB per host: the "
            "controller's peak RSS over the hosts (the whole process, start-up included)."
        )
        self.results["suites"]["scale"] = {"hosts": n, "forks": forks, "workloads": data}

    # -- targets --------------------------------------------------------------------------------

    def compute_targets(self) -> None:
        """Issue 27's table, then what earlier issues ask that it does not restate."""
        t = self.targets
        for v in self.variants:
            t += self.issue27_targets(v.label)
        for v in self.variants:
            t += self.issue14_targets(v.label)
        t += self.issue6_targets()

    def ratio_target(
        self, issue: str, key: Any, num: str, den: str, goal: str, ok: Callable[[float], bool]
    ) -> Target:
        """``num / den`` of one workload's series (medians; per-round range in detail)."""
        got = self.got.get(key, {})
        target = Target(issue, f"{key[0]}@{key[1]} {num} / {den}", goal)
        if num in got and den in got:
            target.value, target.detail = paired(got[num], got[den])
            target.met = target.value is not None and ok(target.value)
        return target

    def anchor_target(
        self, issue: str, anchor: str, rb: str, goal: str, ok: Callable[[float], bool]
    ) -> Target:
        """A slow anchor's W2@50 time over the runbook measured in its rounds (ansible and
        pyinfra run in rounds of their own, beside ``RB (beside anchors)``)."""
        target = self.ratio_target(issue, ("W2", 50), anchor, f"{rb} (beside anchors)", goal, ok)
        target.measure = f"W2@50 {anchor} / {rb}"
        return target

    def issue27_targets(self, rb: str) -> list[Target]:
        a = self.args
        out = [
            self.ratio_target("27", ("W2", 50), rb, LOOP, "≤ 0.85", lambda x: x <= 0.85),
            self.ratio_target("27", ("W1", 50), rb, LOOP, "≤ 1.05", lambda x: x <= 1.05),
            self.ratio_target("27", ("W3", 50), rb, LOOP, "≤ 1.03", lambda x: x <= 1.03),
        ]
        out.append(self.startup_target(rb))
        plan = {s.tool: s for s in self.got.get("plan", [])}
        s = plan.get(f"{rb} plan")
        target = Target(
            "27", f"`{rb} plan`, {a.plan_hosts} hosts × {a.plan_steps} steps", "≤ 0.50 s"
        )
        if s is not None:
            target.value, target.unit, target.met = s.wall, " s", s.wall <= 0.5
            target.detail = spread(s) + f", CPU {s.cpu:.2f} s, {s.rss_mib:.0f} MiB"
        out.append(target)
        out.append(self.anchor_target("27", "pyinfra", rb, "≥ 1.5", lambda x: x >= 1.5))
        out.append(self.cpu_target(rb))
        if rb == self.variants[0].label:
            out.append(self.copy_target(rb))
        return out

    def startup_target(self, rb: str) -> Target:
        """``validate`` of a small file minus ``python -c pass``, same interpreter, same
        rounds (the difference of the medians; per-round differences in detail)."""
        startup = {s.tool: s for s in self.got.get("startup", [])}
        base, validate = startup.get("python -c pass"), startup.get(f"{rb} validate")
        target = Target("27", f"`{rb} validate` small file − `python -c pass`", "≤ +80 ms")
        if base is None or validate is None:
            return target
        extra = (validate.wall - base.wall) * 1000
        rounds = [
            (x.wall - y.wall) * 1000 for x, y in zip(validate.samples, base.samples, strict=False)
        ]
        target.value, target.unit, target.met = extra, " ms", extra <= 80
        target.detail = (
            f"rounds {min(rounds):+.0f}–{max(rounds):+.0f} ms; {validate.wall * 1000:.0f} ms "
            f"/ {base.wall * 1000:.0f} ms; CPU {validate.cpu * 1000:.0f} / {base.cpu * 1000:.0f} ms"
        )
        return target

    def cpu_target(self, rb: str) -> Target:
        """Controller CPU per command at 500 hosts (``scale``), W2: the run's CPU over its
        5,000 commands, start-up and connections included (as issue 27 quotes
        parallel-ssh's 0.55 ms). The detail adds what one more command costs, (CPU of W2 −
        CPU of W1) / (hosts × 9), where start-up and connections cancel out, and
        parallel-ssh's two figures."""
        n = self.args.scale_hosts
        w1, w2 = self.got.get(("scale", "W1"), {}), self.got.get(("scale", "W2"), {})
        target = Target(
            "27",
            f"controller CPU per command, W2@{n} ({rb}, `--forks {self.args.scale_forks}`)",
            "≤ 0.6 ms (parallel-ssh 0.55)",
        )
        if rb not in w2:
            return target
        commands = n * len(WORKLOADS["W2"])
        extra = n * (len(WORKLOADS["W2"]) - len(WORKLOADS["W1"]))

        def figures(tool: str) -> str:
            total = f"{w2[tool].cpu / commands * 1000:.2f} ms"
            if tool not in w1:
                return total
            return f"{total}; one more: {(w2[tool].cpu - w1[tool].cpu) / extra * 1000:.2f} ms"

        target.value, target.unit = w2[rb].cpu / commands * 1000, " ms"
        target.met = target.value <= 0.6
        target.detail = figures(rb)
        if FAST["pssh"] in w2:
            target.detail += f"; parallel-ssh: {figures(FAST['pssh'])}"
        return target

    def copy_target(self, rb: str) -> Target:
        copy = self.got.get("copy")
        target = Target("27", f"copy 100 MiB × 10 hosts, {rb} / scp", "≤ 1.3")
        if not copy:
            return target
        by = {}
        for d in copy["series"]:
            series = Series(d["tool"], d["argv"])
            series.samples = [Sample(**x) for x in d["samples"]]
            by[d["tool"]] = series
        target.measure = f"copy {copy['size_mib']} MiB × {copy['hosts']} hosts, {rb} / scp"
        if "runbook" in by and "scp" in by and by["scp"].samples:
            target.value, target.detail = paired(by["runbook"], by["scp"])
            target.met = target.value is not None and target.value <= 1.3
            if "runbook fetch" in by and "scp fetch" in by and by["scp fetch"].samples:
                r, _ = paired(by["runbook fetch"], by["scp fetch"])
                target.detail += f"; fetch: runbook / scp {fmt(r)}"
        return target

    def issue14_targets(self, rb: str) -> list[Target]:
        """Issue 14's, where issue 27 does not restate them."""
        a = self.args
        out = [
            self.ratio_target("14", ("W2", 50), rb, FAST["fabric"], "< 1", lambda x: x < 1),
            self.ratio_target("14", ("W2", 50), rb, FAST["pssh"], "< 1", lambda x: x < 1),
        ]
        out.append(self.anchor_target("14", "ansible-playbook", rb, "≥ 30", lambda x: x >= 30))
        local = {s.tool: s for s in self.got.get("local", [])}
        target = Target("14", f"local {a.local_commands} commands, {rb} / xargs -P 8", "≤ 1.5")
        if rb in local:
            target.value, target.detail = paired(local[rb], local["xargs -P"])
            target.met = target.value is not None and target.value <= 1.5
        out.append(target)
        s = self.got.get(("scale", "W1"), {}).get(rb)
        n = a.scale_hosts
        target = Target(
            "14",
            f"{n} hosts, W1, `--forks {a.scale_forks}`, {rb}: completes; controller RSS",
            "rc 0; < 2 MiB per host",
        )
        if s is not None:
            target.value, target.unit = s.rss_mib / n, " MiB/host"
            target.met = s.ok and target.value < 2.0
            target.detail = (
                f"{'every run rc 0' if s.ok else 'a run failed'}; {s.rss_mib:.0f} MiB; {spread(s)}"
            )
        out.append(target)
        w2s = self.got.get(("scale", "W2"), {})
        target = Target("14", f"W2@{n} {rb} / parallel-ssh (forks {a.scale_forks})", "–")
        if rb in w2s and FAST["pssh"] in w2s:
            target.value, target.detail = paired(w2s[rb], w2s[FAST["pssh"]])
        out.append(target)
        return out

    def issue6_targets(self) -> list[Target]:
        out = []
        startup = self.got.get("startup")
        if startup:
            base, version = startup[0].wall, startup[1].wall
            limit = 2 * base + 0.1
            out.append(
                Target(
                    "6",
                    "`runbook --version`",
                    f"< 2× `python -c pass` + 100 ms (= {limit * 1000:.0f} ms)",
                    version * 1000,
                    " ms",
                    version < limit,
                )
            )
        plan = self.got.get("plan")
        if plan:
            s = plan[0]
            mb = s.rss_mib * 1024 * 1024 / MB
            out.append(Target("6", "plan 1000×20: peak RSS", "< 300 MB", mb, " MB", mb < 300))
        memory = self.got.get("memory")
        if memory:
            n, series = memory
            mib = series[0].rss_mib / n
            out.append(
                Target("6", f"controller memory, {n} hosts", "< 2 MiB per host", mib, " MiB/host")
            )
            out[-1].met = mib < 2.0
        return out

    # -- report ---------------------------------------------------------------------------------

    def report(self) -> str:
        m = self.results["meta"]
        variants = "; ".join(
            f"{label} = `{' '.join(argv)}`" for label, argv in m["variants"].items()
        )
        head = (
            f"## Benchmark run {m['date']}\n\n"
            f"{m['machine']}; Python {m['python']}; paramiko {m['paramiko']}; {m['openssh']}; "
            f"{m['runbook']} (git {m['git']}); medians of {m['reps']} interleaved runs. "
            f"Anchors venv: {m['anchors']}.\n\n"
            f"Runbooks under test: {variants}.\n\n"
            + (self.load.summary() if self.load else "")
            + "\n"
        )
        self.compute_targets()
        rows = [x.row() for x in self.targets]
        targets = (
            "### Targets\n\n"
            + table(["issue", "measure", "target", "measured", "detail", ""], rows)
            + "\n\nMeasured: the ratio of the two medians (or the median). Detail: the ratio "
            "in each interleaved round (min–max), then each side's median wall time "
            "(min–max), numerator first."
        )
        self.results["targets"] = [
            {
                "issue": x.issue,
                "measure": x.measure,
                "target": x.goal,
                "value": x.value,
                "unit": x.unit,
                "met": x.met,
                "detail": x.detail,
            }
            for x in self.targets
        ]
        if self.load:
            self.results["meta"]["loadavg"] = {
                "samples": self.load.samples,
                "start": self.load.start,
                "end": self.load.end,
            }
        return "\n\n".join([head, targets, *self.sections]) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        raise SystemExit(f"unknown suite(s): {', '.join(sorted(unknown))}")
    unknown = set(args.anchor_tools) - set(ANCHORS)
    if unknown:
        raise SystemExit(f"unknown anchor(s): {', '.join(sorted(unknown))}")
    bench = Bench(args)
    try:
        with LoadSampler() as bench.load:
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
