"""Command line: argument parsing, exit codes, the terminal. The only module that prints.

Exit codes (SPEC §4): 0 completed, 1 halted on a failure, 2 invalid input (nothing ran),
130 interrupted. Heavy imports happen inside the commands, so ``--version`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runbook import __version__

EXIT_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="runbook",
        description="Plan and run YAML runbooks on hosts, locally or over SSH.",
    )
    p.add_argument("--version", action="version", version=f"runbook {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a variable (YAML scalar); @FILE.yml loads a file; repeatable",
    )
    common.add_argument("--vars-file", action="append", default=[], metavar="F")
    common.add_argument(
        "-i",
        "--inventory",
        action="append",
        default=[],
        metavar="FILE",
        help="Ansible INI or YAML inventory; repeatable",
    )
    common.add_argument("--limit", metavar="PATTERN", help="only hosts matching PATTERN")
    common.add_argument("--tags", action="append", default=[], metavar="T")
    common.add_argument("--skip-tags", action="append", default=[], metavar="T")
    common.add_argument("--start-at", metavar="STEP", help="skip the steps before STEP")

    v = sub.add_parser("validate", parents=[common], help="check schema and templates")
    v.add_argument("file")

    pl = sub.add_parser("plan", parents=[common], help="show every command on every host")
    pl.add_argument("file")
    pl.add_argument("--format", choices=("text", "json"), default="text")
    pl.add_argument("--out", metavar="PLAN.json", help="save the plan for `apply PLAN.json`")

    a = sub.add_parser("apply", parents=[common], help="run a runbook or a saved plan")
    a.add_argument("file", metavar="FILE|PLAN.json")
    a.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    a.add_argument("-f", "--forks", type=_positive, default=10, metavar="N")
    a.add_argument("--output", choices=("text", "json"), default="text")
    a.add_argument("-v", "--verbose", action="store_true", help="show every command's output")
    a.add_argument("--journal", metavar="DIR", help="journal directory (default .runbook/runs)")
    a.add_argument("--resume", metavar="RUN_ID", help="re-run a journaled run's plan")
    a.add_argument("--force", action="store_true", help="resume even if the runbook changed")
    a.add_argument("--host-key-policy", choices=("strict", "accept-new", "off"), default="strict")
    a.add_argument("--known-hosts", metavar="FILE")
    a.add_argument("--ssh-config", metavar="FILE")
    a.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")

    inv = sub.add_parser("inventory", parents=[common], help="list hosts, groups and vars")
    inv.add_argument("file", nargs="?")
    inv.add_argument("--format", choices=("text", "json"), default="text")

    r = sub.add_parser("runs", help="list journaled runs")
    r.add_argument("file", nargs="?", help="runbook whose runs to list (default: here)")
    r.add_argument("--journal", metavar="DIR")

    s = sub.add_parser("show", help="a run's recap, or one command's output")
    s.add_argument("run_id")
    s.add_argument("file", nargs="?", help="the runbook (default: runs here)")
    s.add_argument("--journal", metavar="DIR")
    s.add_argument("--host")
    s.add_argument("--step")
    return p


def _positive(s: str) -> int:
    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from runbook.errors import InputError, JournalError

    try:
        return COMMANDS[args.command](args)
    except InputError as exc:
        for err in (exc, *exc.others):
            print(str(err), file=sys.stderr)
        return EXIT_INPUT
    except JournalError as exc:
        print(f"runbook: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:
        return 0


def _extra_vars(args: argparse.Namespace) -> dict[str, Any]:
    """``--vars-file`` files, then each ``-e`` (``KEY=VALUE`` or ``@FILE``) in order."""
    from runbook.errors import Position, UsageError
    from runbook.yamlpos import load_yaml

    out: dict[str, Any] = {}
    for item in [f"@{f}" for f in args.vars_file] + args.extra_vars:
        if item.startswith("@"):
            data, _ = load_yaml(item[1:])
            if not isinstance(data, dict):
                raise UsageError("a vars file must be a YAML mapping", Position(item[1:], 1, 1))
            out.update(data)
            continue
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"-e {item!r}: expected KEY=VALUE with KEY a variable name")
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"-e {key}: the value is not valid UTF-8 text") from None
        out[key] = scalar(raw)
    return out


def scalar(raw: str) -> Any:
    """``-e`` value → int, float, bool or null when the text says so unambiguously, else the
    text as written: ``1.10`` stays "1.10", ``0755`` stays "0755", ``no`` stays "no"."""
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    for kind in (int, float):
        try:
            value = kind(raw)
        except ValueError:
            continue
        return value if str(value) == raw else raw
    return raw


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Load, validate, build the inventory, read secrets, plan. Raises ``InputError``."""
    from runbook.inventory import build_inventory
    from runbook.loader import load_runbook
    from runbook.planner import Selection, make_plan
    from runbook.secrets import Masker, resolve_secrets

    rb = load_runbook(args.file)
    extra = _extra_vars(args)
    inventory = build_inventory(rb.hosts, [*rb.inventory, *args.inventory], rb.positions, rb.path)
    secret_values = resolve_secrets(rb.secrets)
    selection = Selection(
        limit=args.limit,
        tags=tuple(args.tags),
        skip_tags=tuple(args.skip_tags),
        start_at=args.start_at,
    )
    plan = make_plan(rb, inventory, extra, secret_values, selection)
    return rb, plan, (Masker(secret_values.values()), secret_values)


def cmd_validate(args: argparse.Namespace) -> int:
    from runbook.output import counted

    _, plan, _ = _prepare(args)
    hosts = {c.host.name for c in plan.commands}
    print(
        f"{args.file}: ok ({counted(len(plan.steps), 'step')}, {counted(len(hosts), 'host')}, "
        f"{counted(len(plan.commands), 'command')})"
    )
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from runbook import planfile
    from runbook.output import plan_text
    from runbook.secrets import tokenize

    rb, plan, (mask, values) = _prepare(args)
    if args.out:
        extra = {"secret_sources": _secret_sources(rb)}
        planfile.save_plan(plan, args.out, lambda t: tokenize(t, values), extra)
        print(f"plan saved to {args.out}", file=sys.stderr)
    if args.format == "json":
        sys.stdout.write(planfile.dumps(planfile.plan_to_dict(plan, mask)))
    elif not args.out:
        sys.stdout.write(plan_text(plan, mask))
    return 0


def _secret_sources(rb: Any) -> dict[str, dict[str, str]]:
    return {s.name: ({"env": s.env} if s.env else {"file": s.file}) for s in rb.secrets}


def cmd_inventory(args: argparse.Namespace) -> int:
    import json

    from runbook.inventory import build_inventory
    from runbook.loader import load_runbook

    if args.file and not args.file.endswith((".ini", ".cfg", ".hosts")) and _is_runbook(args.file):
        rb = load_runbook(args.file)
        inv = build_inventory(rb.hosts, [*rb.inventory, *args.inventory], rb.positions, rb.path)
    else:
        files = ([args.file] if args.file else []) + args.inventory
        inv = build_inventory({}, files)
    hosts = inv.resolve(args.limit) if args.limit else list(inv.hosts.values())
    data = {
        "groups": {g: m for g, m in sorted(inv.groups.items())},
        "hosts": {
            h.name: {
                **{k: v for k, v in h.facts().items() if v not in (None, [])},
                "connection": h.connection,
                "vars": h.vars,
            }
            for h in hosts
        },
    }
    if args.format == "json":
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
        return 0
    for g, members in data["groups"].items():
        print(f"{g} ({len(members)}): {', '.join(members)}")
    for name, h in data["hosts"].items():
        where = (
            "local"
            if h["connection"] == "local"
            else (
                f"{h.get('user', '') + '@' if h.get('user') else ''}{h['address']}"
                f"{':' + str(h['port']) if h.get('port') else ''}"
            )
        )
        print(f"\n{name}  {where}  groups: {', '.join(h.get('groups', [])) or '-'}")
        for k, v in sorted(h["vars"].items()):
            print(f"    {k} = {v!r}")
    return 0


def _is_runbook(path: str) -> bool:
    from runbook.errors import LoadError
    from runbook.yamlpos import load_yaml

    try:
        data, _ = load_yaml(path)
    except LoadError:  # not YAML at all: an INI inventory
        return False
    return isinstance(data, dict) and "steps" in data


def cmd_apply(args: argparse.Namespace) -> int:
    from runbook.apply import apply

    return apply(args)


def cmd_runs(args: argparse.Namespace) -> int:
    from runbook.journal import list_runs, runs_dir

    root = runs_dir(args.file, args.journal)
    runs = list_runs(root)
    if not runs:
        print(f"no runs in {root}")
        return 0
    for r in runs:
        f = r.finished or {}
        counts = f.get("counts") or _count(r.results())
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "-"
        resumed = f"  (resumes {r.meta['resumes']})" if r.meta.get("resumes") else ""
        print(
            f"{r.run_id}  {r.meta.get('started', '?')}  {r.status:<11}  "
            f"{r.meta.get('runbook', '?')}  {summary}{resumed}"
        )
    return 0


def _count(results: list[dict[str, Any]]) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(r["status"] for r in results))


def cmd_show(args: argparse.Namespace) -> int:
    from runbook.errors import UsageError
    from runbook.journal import read_run, runs_dir

    run = read_run(runs_dir(args.file, args.journal), args.run_id)
    results = run.results()
    if args.host or args.step:
        chosen = [
            r
            for r in results
            if (not args.host or r["host"] == args.host)
            and (not args.step or r["step"] == args.step)
        ]
        if not chosen:
            raise UsageError(f"run {args.run_id} has no result for that host/step")
        for r in chosen:
            print(
                f"== {r['step']} @ {r['host']}: {r['status']} rc={r['rc']} "
                f"attempts={r['attempts']} {r['duration']:.2f}s"
            )
            if r.get("error"):
                print(f"error: {r['error']}")
            print("--- stdout\n" + r["stdout"], end="" if r["stdout"].endswith("\n") else "\n")
            print("--- stderr\n" + r["stderr"], end="" if r["stderr"].endswith("\n") else "\n")
        return 0
    meta = run.meta
    print(f"run {run.run_id}: {meta.get('runbook')} ({meta.get('source')})")
    print(
        f"started {meta.get('started')}, status {run.status}"
        + (f", resumes {meta['resumes']}" if meta.get("resumes") else "")
    )
    steps: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        steps.setdefault(r["step"], []).append(r)
    for name, rs in steps.items():
        summary = ", ".join(f"{n} {s}" for s, n in _count(rs).items())
        print(f"  {name}: {summary}")
        for r in rs:
            if r["status"] not in ("ok", "skipped", "cancelled"):
                print(f"      {r['host']}: {r['status']} {r.get('error') or ''}".rstrip())
    f = run.finished
    if f:
        if f.get("steps_not_run"):
            print("steps not run: " + ", ".join(f["steps_not_run"]))
        print(f"finished: {f['status']} in {f['duration']:.2f}s, exit code {f['exit_code']}")
    else:
        print("the run did not finish (controller killed?); resume it with --resume")
    return 0


COMMANDS = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "apply": cmd_apply,
    "inventory": cmd_inventory,
    "runs": cmd_runs,
    "show": cmd_show,
}
