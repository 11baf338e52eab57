"""Where runbook's controller time goes on an SSH workload, per command, with py-spy.

    python benchmarks/profile.py                       # W2 at 50 hosts, 3 profiled runs
    python benchmarks/profile.py --runbook "runbook --transport exec" --reps 5
    python benchmarks/profile.py --hosts 500 --forks 100 --workload W2

Needs ``py-spy`` (``pip install py-spy`` into the project's environment) and what the SSH
suites need (README). For each run of ``runbook apply`` on a fresh fleet of sshds:

- one run unprofiled, timed as the suite times it (wall, controller CPU);
- one run under ``py-spy record --gil --nonblocking``: a sample only when some thread
  holds the GIL, of that thread. The samples add up to the controller's Python time,
  which on this engine is the serial resource (one GIL across the workers, paramiko's
  transport threads and the runner); time in C with the GIL released (socket calls,
  most crypto) is not in it. ``--nonblocking`` does not stop the process to sample
  (py-spy's default ptrace stop of every thread, 250 times a second, doubled the wall
  time of a 100-thread run);
- one run under ``py-spy record --nonblocking`` (every thread, GIL or not), to count
  time threads spend waiting on the runner's emit lock (py-spy cannot tell a lock wait
  from work, so these samples are read only for that line).

The report (stdout and ``benchmarks/results/profile-*.md``, with the raw stacks beside it)
gives the Python time per category and per function, in ms per command (samples ÷ rate
÷ hosts × steps, start-up and connections included: the whole run's cost spread over
its commands). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from harness import measure, table
from workloads import REPO, WORKLOADS, FleetView, Variant, runbook_ssh_argv, ssh_runbook

HERE = Path(__file__).resolve().parent

Stack = list[str]  # frames "function (file)", root first


def _has(*needles: str) -> Callable[[Stack], bool]:
    return lambda stack: any(n in f for f in stack for n in needles)


# Checked in order; a sample goes to the first category whose rule matches its stack.
CATEGORIES: list[tuple[str, Callable[[Stack], bool]]] = [
    ("start-up: imports", _has("_find_and_load")),
    (
        "before the run: parse, validate, plan, journal open",
        lambda s: any("cmd_apply" in f for f in s) and not any("Runner.run " in f for f in s),
    ),
    ("events: journal (to_dict, json.dumps, write, flush)", _has("Journal.handle")),
    ("events: console", lambda s: _has("Runner.emit")(s) and _has("runbook/cli/console.py")(s)),
    (
        "events: other (emit, listeners, building events)",
        _has("Runner.emit", "runbook/model/events.py"),
    ),
    (
        "connect: handshake, keys, auth",
        _has(
            "SSHClient.connect",
            "start_client",
            "_negotiate_keys",
            "_parse_kex_init",
            "_parse_newkeys",
            "_activate_",
            "paramiko/kex_",
            "paramiko/auth_handler.py",
            "paramiko/pkey.py",
            "paramiko/ed25519key.py",
        ),
    ),
    ("command channel: open, exec, read, close (ssh_run)", _has("runbook/run/ssh/channel.py")),
    (
        "host session (session.py, ssh_session.py)",
        _has("runbook/run/ssh/session.py", "runbook/run/ssh/sessions.py"),
    ),
    ("paramiko: packets, channels (transport threads)", _has("Transport.run")),
    ("recap and console at the end", _has("runbook/cli/recap.py", "Console.close", "recap")),
    ("runner and worker pool", _has("runbook/run/runner.py", "runbook/run/pool.py")),
    ("other", lambda s: True),
]


def parse_raw(path: Path) -> list[tuple[Stack, int]]:
    """py-spy's ``--format raw``: ``frame;frame;... COUNT`` per line, root first."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.strip() or not count.isdigit():
            continue  # a sample with no Python frame: no thread held the GIL
        out.append((stack.split(";"), int(count)))
    return out


def _function(frame: str) -> str:
    """``Runner.emit (runbook/run/runner.py:182)`` → ``Runner.emit (runbook/run/runner.py)``."""
    return re.sub(r":-?\d+\)$", ")", frame)


def analyse(
    gil: list[tuple[Stack, int]], threads: list[tuple[Stack, int]], rate: int, commands: int
) -> dict[str, list[tuple[str, float, float]]]:
    """(name, ms per command, share) rows: categories, inclusive runbook functions, self
    frames (with line), and the emit-lock wait from the every-thread profile."""
    total = sum(c for _, c in gil) or 1

    def per(samples: float) -> float:
        return samples / rate / commands * 1000

    cats: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for stack, count in gil:
        functions = [_function(f) for f in stack]
        for name, rule in CATEGORIES:
            if rule(functions):
                cats[name] += count
                break
        for f in set(functions):
            if "runbook/" in f or "paramiko/" in f:
                inclusive[f] += count
        own[stack[-1]] += count
    waits = sum(c for s, c in threads if s[-1].startswith("Runner.emit ("))
    rows = {
        "categories": [(n, per(c), c / total) for n, c in cats.most_common()],
        "inclusive": [(n, per(c), c / total) for n, c in inclusive.most_common(40)],
        "self": [(n, per(c), c / total) for n, c in own.most_common(30)],
        "emit_wait": [("Runner.emit, every thread, leaf frame", per(waits), waits)],
    }
    return rows


def pyspy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(found, os.X_OK):
        raise SystemExit("benchmarks: py-spy not found (pip install py-spy)")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hosts", type=int, default=50)
    p.add_argument("--forks", type=int, default=None, help="default: --hosts")
    p.add_argument("--workload", default="W2", choices=list(WORKLOADS))
    p.add_argument("--runbook", metavar="CMD", help="as run.py's --runbook")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rate", type=int, default=250, help="samples per second")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)

    spy = pyspy()
    variant = Variant.parse("runbook", args.runbook)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    raw_dir = args.out / f"profile-{stamp}"
    raw_dir.mkdir()
    scratch = Path(tempfile.mkdtemp(prefix="runbook-prof-"))
    version = subprocess.run(
        [*variant.command, "--version"], capture_output=True, text=True, cwd=scratch
    ).stdout.strip()
    sys.path.insert(0, str(REPO))
    from tests.fleet import Fleet

    steps = WORKLOADS[args.workload]
    commands = args.hosts * len(steps)
    names = [f"h{i}" for i in range(1, args.hosts + 1)]
    gil: list[tuple[Stack, int]] = []
    threads: list[tuple[Stack, int]] = []
    plain, profiled = [], []
    loads = []
    try:
        fleet = Fleet(args.hosts)
        fleet.start(timeout=max(30.0, args.hosts / 5))
        with fleet:
            view = FleetView.of(fleet)
            file = ssh_runbook(scratch / "w.yml", args.workload, names, steps)
            apply = runbook_ssh_argv(variant, file, args.hosts, view, args.forks)
            log = raw_dir / "console.log"
            measure(apply, stdout=log, cwd=scratch)  # warm-up
            for rep in range(args.reps):
                loads.append(os.getloadavg()[0])
                plain.append(measure(apply, stdout=log, cwd=scratch))
                for mode, into in (("gil", gil), ("threads", threads)):
                    raw = raw_dir / f"{mode}-{rep}.txt"
                    flags = ["--gil"] if mode == "gil" else []
                    spied = measure(
                        [spy, "record", *flags, "--nonblocking", "-r", str(args.rate)]
                        + ["-f", "raw", "-o", str(raw), "--", *apply],
                        stdout=log,
                        cwd=scratch,
                    )
                    if mode == "gil":
                        profiled.append(spied)
                    into.extend(parse_raw(raw))
                print(
                    f"  run {rep + 1}: {plain[-1].wall:.2f} s unprofiled, "
                    f"{profiled[-1].wall:.2f} s profiled",
                    file=sys.stderr,
                )
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(scratch)
    rows = analyse(gil, threads, args.rate * args.reps, commands)
    held = sum(c for _, c in gil) / args.rate / args.reps
    cpu = statistics.median(s.cpu for s in plain)
    wall = statistics.median(s.wall for s in plain)

    def block(title: str, key: str) -> str:
        body = [
            [n if key == "categories" else f"`{n}`", f"{ms:.3f}", f"{x:.0%}"]
            for n, ms, x in rows[key]
        ]
        return f"#### {title}\n\n" + table(["", "ms per command", "share"], body)

    text = "\n\n".join(
        [
            f"### Profile: {args.workload} at {args.hosts} hosts, forks "
            f"{args.forks or args.hosts}, `{' '.join(variant.apply('...'))}` ({version}); "
            f"{args.reps} runs, py-spy {args.rate} Hz",
            f"Unprofiled: median wall {wall:.2f} s, controller CPU {cpu:.2f} s = "
            f"{cpu / commands * 1000:.2f} ms per command ({commands} commands). Profiled "
            f"(`--gil --nonblocking`): median wall "
            f"{statistics.median(s.wall for s in profiled):.2f} s; GIL held {held:.2f} s per "
            f"run = {held / commands * 1000:.2f} ms per command. 1-minute load average at "
            f"each run: {', '.join(f'{x:.1f}' for x in loads)}.",
            block("By category (GIL held; first matching rule)", "categories"),
            block("Functions, inclusive (runbook and paramiko frames)", "inclusive"),
            block("Leaf frames (self, with line)", "self"),
            "#### Waiting on the emit lock\n\n"
            f"Every-thread profile: {rows['emit_wait'][0][2]:.0f} samples with `Runner.emit` as "
            f"the leaf frame (the `with self._emit_lock` line and the listener loop) = "
            f"{rows['emit_wait'][0][1]:.3f} ms per command of thread time, over all threads.",
        ]
    )
    (args.out / f"profile-{stamp}.md").write_text(text + "\n")
    print(text)
    print(f"saved {args.out}/profile-{stamp}.md; raw stacks in {raw_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
