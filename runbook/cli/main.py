"""Command line: argument parsing, the subcommands, exit codes. The CLI's modules print
(this one, ``apply``, ``console``, ``recap``); below them only ``crash`` (its one line)
and the journal's write-failure warning reach stderr.

Exit codes (SPEC §4): 0 completed, 1 halted on a failure, 2 invalid input (nothing ran),
130 interrupted. Heavy imports happen inside the commands, so ``--version`` stays fast.
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
from typing import TYPE_CHECKING, Any

from runbook import __version__
from runbook.options import (
    ApplyOptions,
    Format,
    HostKeyPolicy,
    PlanOptions,
    SshOptions,
    Transport,
)

if TYPE_CHECKING:
    from runbook.model.plan import Selection

EXIT_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="runbook",
        description="Plan and run YAML runbooks on hosts, locally or over SSH.",
    )
    p.add_argument("--version", action="version", version=f"runbook {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options()
    _planning_commands(sub, common)
    _apply_command(sub, common)
    _journal_commands(sub)
    ap = sub.add_parser(
        "approve",
        help="sign a saved plan with an SSH key (appended to PLAN.json.sig)",
        description="Sign PLAN.json's exact bytes with ssh-keygen -Y sign -n runbook-plan; "
        "apply PLAN.json --require-approvals N --allowed-signers FILE checks them.",
    )
    ap.add_argument("file", metavar="PLAN.json")
    ap.add_argument(
        "--key", required=True, metavar="KEY", help="private key (or public key in ssh-agent)"
    )
    return p


def _common_options() -> argparse.ArgumentParser:
    """What shapes a plan, for validate/plan/apply/inventory alike."""
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
    common.add_argument(
        "--vault-password-file",
        action="append",
        default=[],
        metavar="FILE",
        help="Ansible Vault password file (an executable one is run); repeatable",
    )
    common.add_argument(
        "--vault-id",
        action="append",
        default=[],
        metavar="LABEL@FILE",
        help="Ansible Vault id and its password file; repeatable",
    )
    return common


def _planning_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    v = sub.add_parser("validate", parents=[common], help="check schema and templates")
    v.add_argument("file")

    pl = sub.add_parser("plan", parents=[common], help="show every command on every host")
    pl.add_argument("file")
    pl.add_argument("--format", choices=_choices(Format.TEXT, Format.JSON), default=Format.TEXT)
    pl.add_argument("--out", metavar="PLAN.json", help="save the plan for `apply PLAN.json`")
    pl.add_argument(
        "--expand", action="store_true", help="one line per host (no grouping of hosts)"
    )
    pl.add_argument(
        "--check",
        action="store_true",
        help="contact the hosts read-only: run the discover steps, show what depends on "
        "them rendered and what each copy changes",
    )
    _run_options(pl)

    inv = sub.add_parser("inventory", parents=[common], help="list hosts, groups and vars")
    inv.add_argument("file", nargs="?")
    inv.add_argument("--format", choices=_choices(Format.TEXT, Format.JSON), default=Format.TEXT)
    _diff_parser(sub, common)


def _apply_command(sub: Any, common: argparse.ArgumentParser) -> None:
    a = sub.add_parser("apply", parents=[common], help="run a runbook or a saved plan")
    a.add_argument("file", metavar="FILE|PLAN.json")
    a.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    a.add_argument("--output", choices=_choices(Format.TEXT, Format.JSON), default=Format.TEXT)
    a.add_argument("-v", "--verbose", action="store_true", help="show every command's output")
    a.add_argument("--resume", metavar="RUN_ID", help="re-run a journaled run's plan")
    a.add_argument("--force", action="store_true", help="resume even if the runbook changed")
    a.add_argument(
        "--rerun-unknown",
        action="store_true",
        help="with --resume: run again the commands whose outcome is unknown",
    )
    a.add_argument(
        "--require-approvals",
        type=_positive,
        metavar="N",
        help="a saved plan runs only when N distinct principals of --allowed-signers "
        "signed exactly its bytes (runbook approve)",
    )
    a.add_argument(
        "--allowed-signers",
        metavar="FILE",
        help="who may approve: an OpenSSH allowed_signers file (as git uses)",
    )
    _run_options(a)


def _run_options(p: argparse.ArgumentParser) -> None:
    """What running commands on hosts needs: apply's, and plan --check's."""
    p.add_argument("-f", "--forks", type=int, default=10, metavar="N")  # checked by RunSettings
    p.add_argument("--journal", metavar="DIR", help="journal directory (default .runbook/runs)")
    p.add_argument(
        "--host-key-policy", choices=_choices(*HostKeyPolicy), default=HostKeyPolicy.STRICT
    )
    p.add_argument("--known-hosts", metavar="FILE")
    p.add_argument("--ssh-config", metavar="FILE")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    p.add_argument(
        "--transport",
        choices=_choices(*Transport),
        default=Transport.AUTO,
        help="SSH: one executor per host (session, needs python3), a channel per command "
        "(exec), or a session where possible (auto, the default)",
    )


def _journal_commands(sub: Any) -> None:
    r = sub.add_parser("runs", help="list journaled runs")
    r.add_argument("file", nargs="?", help="runbook whose runs to list (default: here)")
    r.add_argument("--journal", metavar="DIR")

    s = sub.add_parser(
        "show", help="a run's recap, or one command's output; a saved plan and who approved it"
    )
    s.add_argument("run_id", metavar="RUN_ID|PLAN.json")
    s.add_argument("file", nargs="?", help="the runbook (default: runs here)")
    s.add_argument("--journal", metavar="DIR")
    s.add_argument("--host")
    s.add_argument("--step", help="a step's name, or a unique start of it")
    s.add_argument(
        "--allowed-signers", metavar="FILE", help="a saved plan: name its approvers by FILE"
    )

    rep = sub.add_parser("report", help="write a run's HTML report (one self-contained file)")
    rep.add_argument("run_id")
    rep.add_argument("file", nargs="?", help="the runbook (default: runs here)")
    rep.add_argument("--journal", metavar="DIR")
    rep.add_argument("--out", metavar="FILE.html", help="default: report-RUN_ID.html")


def _diff_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    d = sub.add_parser(
        "diff",
        parents=[common],
        help="what a change runs differently",
        description="Plan OLD and NEW (or FILE at REV and FILE) and show what runs differently. "
        "Exit 0: no difference; 1: differences; 2: an input error on either side.",
    )
    d.add_argument("file", metavar="OLD|FILE", help="a runbook or a saved plan")
    d.add_argument("new", nargs="?", metavar="NEW", help="a runbook or a saved plan")
    d.add_argument("--git", metavar="REV", help="compare FILE at git revision REV with FILE")
    d.add_argument(
        "--trust-revision",
        action="store_true",
        help="with --git: run the revision's inventory scripts and pipe lookups",
    )
    d.add_argument("--format", choices=_choices(*Format), default=Format.TEXT)


def _choices(*choices: enum.StrEnum) -> list[str]:
    """Choices as argparse shows them; the options convert the chosen text back."""
    return [c.value for c in choices]


def _positive(s: str) -> int:
    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def main(argv: list[str] | None = None) -> int:
    """The command line (``argv`` None: this process's own, which exits after)."""
    try:
        return _main(argv)
    finally:
        if argv is None:
            # The process ends now: nothing it made is garbage worth collecting. Python's
            # finalization collects everything still alive several times over (sessions,
            # transports, the plan): ~0.1-0.2 s at 50 hosts, after the recap is printed.
            # Frozen objects are left to the exit; files and the journal are closed
            # already, stdout and stderr are flushed as always.
            import gc

            gc.freeze()


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    from runbook.errors import InputError, JournalError
    from runbook.text import printable

    try:
        return COMMANDS[args.command](args)
    except InputError as exc:  # messages quote runbook and host text: one line, escaped
        for err in (exc, *exc.others):
            print(printable(str(err), multiline=False), file=sys.stderr)
        return EXIT_INPUT
    except JournalError as exc:
        print(printable(f"runbook: {exc}", multiline=False), file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:  # `runbook plan | head`: the reader has what it wanted
        from runbook.cli.console import detach_stdout

        detach_stdout()
        return 0
    except Exception as exc:  # a bug: one line and a crash report, never a traceback
        from runbook import crash

        return crash.report(exc)


def plan_options(args: argparse.Namespace) -> PlanOptions:
    return PlanOptions(
        file=args.file,
        extra_vars=tuple(args.extra_vars),
        vars_files=tuple(args.vars_file),
        inventories=tuple(args.inventory),
        selection=_selection(args),
        vault_ids=_vault_ids(args),
    )


def _vault_ids(args: argparse.Namespace) -> tuple[str, ...]:
    """``--vault-password-file F`` is ``--vault-id default@F`` (F may hold an ``@``)."""
    return (*(f"default@{f}" for f in args.vault_password_file), *args.vault_id)


def _selection(args: argparse.Namespace) -> Selection:
    """The narrowing options; an empty or blank value is an input error (``Selection``)."""
    from runbook.model.plan import Selection

    return Selection(
        limit=args.limit,
        tags=tuple(args.tags),
        skip_tags=tuple(args.skip_tags),
        start_at=args.start_at,
    )


def ssh_options(args: argparse.Namespace) -> SshOptions:
    return SshOptions(
        host_key_policy=HostKeyPolicy(args.host_key_policy),
        known_hosts=args.known_hosts,
        ssh_config=args.ssh_config,
        connect_timeout=args.connect_timeout,
        transport=Transport(args.transport),
    )


def apply_options(args: argparse.Namespace) -> ApplyOptions:
    return ApplyOptions(
        plan=plan_options(args),
        yes=args.yes,
        forks=args.forks,
        output=Format(args.output),
        verbose=args.verbose,
        journal=args.journal,
        resume=args.resume,
        force=args.force,
        rerun_unknown=args.rerun_unknown,
        ssh=ssh_options(args),
        require_approvals=args.require_approvals or 0,
        allowed_signers=args.allowed_signers,
    )


def cmd_validate(args: argparse.Namespace) -> int:
    from runbook.plan.text import counted
    from runbook.prepare import prepare_plan

    plan = prepare_plan(plan_options(args)).plan
    hosts = plan.host_names
    print(
        f"{args.file}: ok ({counted(plan.step_count, 'step')}, {counted(len(hosts), 'host')}, "
        f"{counted(len(plan.commands), 'command')})"
    )
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from runbook.plan.saved import dumps, plan_to_dict, save_plan
    from runbook.plan.text import plan_text
    from runbook.prepare import prepare_plan

    prepared = prepare_plan(plan_options(args))
    plan = prepared.plan
    if args.check:
        return _checked_plan(args, prepared)
    if args.out:
        extra = {"secret_sources": prepared.secrets.sources}
        save_plan(plan, args.out, extra)
        print(f"plan saved to {args.out}", file=sys.stderr)
    if args.format == Format.JSON:
        sys.stdout.write(dumps(plan_to_dict(plan)))
    elif not args.out:
        sys.stdout.write(plan_text(plan, expand=args.expand))
    return 0


def _checked_plan(args: argparse.Namespace, prepared: Any) -> int:
    """``plan --check``: exit 0, or 1 when a discover step failed (the plan is then not
    saved: apply would compare with values that were never found)."""
    from runbook.options import RunSettings
    from runbook.plan.saved import dumps, plan_to_dict, save_plan
    from runbook.review.check import check

    settings = RunSettings(args.forks, args.journal, ssh_options(args))
    checked = check(prepared.plan, prepared.secrets, settings, _note, _warn)
    if args.out and checked.failures:
        print(f"plan NOT saved to {args.out}: a discover step failed", file=sys.stderr)
    elif args.out:
        extra = {"secret_sources": prepared.secrets.sources, "discovery": checked.stored()}
        save_plan(checked.plan, args.out, extra)
        print(f"plan saved to {args.out}", file=sys.stderr)
    if args.format == "json":
        data = plan_to_dict(checked.plan)
        data.update(discovery=checked.stored(), check=checked.to_dict())
        sys.stdout.write(dumps(data))
    else:
        sys.stdout.write(checked.text(prepared.secrets.masker, args.expand))
    return 1 if checked.failures else 0


def _note(message: str) -> None:
    print(f"runbook: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"runbook: WARNING: {message}", file=sys.stderr)


def cmd_diff(args: argparse.Namespace) -> int:
    """Exit 0: no difference; 1: differences; 2: an input error on either side."""
    from runbook.diff.sources import diff_sides
    from runbook.diff.views import render

    diff = diff_sides(plan_options(args), args.new, args.git, args.trust_revision)
    color = args.format == Format.TEXT and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    sys.stdout.write(render(diff, Format(args.format), color))
    return 1 if diff.changed else 0


def cmd_inventory(args: argparse.Namespace) -> int:
    import json

    from runbook.inventory.build import build_inventory
    from runbook.load.loader import load_runbook
    from runbook.load.vault import read_keyring, replace_vaulted
    from runbook.model.runbook import Connection

    keyring = read_keyring(_vault_ids(args))
    if args.file and not args.file.endswith((".ini", ".cfg", ".hosts")) and _is_runbook(args.file):
        rb = load_runbook(args.file)
        files = [*rb.inventory, *args.inventory]
        inv = build_inventory(rb.hosts, files, rb.positions, rb.path, keyring)
    else:
        files = ([args.file] if args.file else []) + args.inventory
        inv = build_inventory({}, files, vault=keyring)
    limit = _selection(args).limit
    hosts = inv.resolve(limit) if limit is not None else list(inv.hosts.values())
    data: dict[str, Any] = {
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
    if args.format == Format.JSON:
        # As ansible-inventory prints a vaulted value; a value of an encrypted file stays
        # its stand-in (SPEC §13).
        listed = replace_vaulted(
            data, lambda v: {"__ansible_vault": str(v)} if v.plain is None else str(v)
        )
        print(json.dumps(listed, indent=2, sort_keys=True, default=str))
        return 0
    data = replace_vaulted(data, lambda v: "!vault (encrypted)" if v.plain is None else str(v))
    lines = [f"{g} ({len(members)}): {', '.join(members)}" for g, members in data["groups"].items()]
    for name, h in data["hosts"].items():
        where = (
            "local"
            if h["connection"] == Connection.LOCAL
            else (
                f"{h.get('user', '') + '@' if h.get('user') else ''}{h['address']}"
                f"{':' + str(h['port']) if h.get('port') else ''}"
            )
        )
        lines += ["", f"{name}  {where}  groups: {', '.join(h.get('groups', [])) or '-'}"]
        lines += [f"    {k} = {v!r}" for k, v in sorted(h["vars"].items())]
    _print_lines(lines)
    return 0


def _is_runbook(path: str) -> bool:
    from runbook.errors import LoadError
    from runbook.load.yamlpos import load_yaml

    try:
        data, _ = load_yaml(path)
    except LoadError:  # not YAML at all: an INI inventory
        return False
    return isinstance(data, dict) and "steps" in data


def cmd_apply(args: argparse.Namespace) -> int:
    from runbook.cli.apply import apply

    return apply(apply_options(args))


def cmd_runs(args: argparse.Namespace) -> int:
    from runbook.journal.history import runs_lines
    from runbook.journal.store import list_runs, runs_dir

    root = runs_dir(args.file, args.journal)
    runs, unreadable = list_runs(root)
    if args.file:  # only that runbook's runs, not every runbook's beside it
        source = os.path.abspath(args.file)
        runs = [r for r in runs if r.meta.get("source") == source]
    if not runs and not unreadable:
        print(f"no runs in {root}" + (f" for {args.file}" if args.file else ""))
        return 0
    lines = runs_lines(runs)
    lines += [f"{run_id}  cannot be read: {why}" for run_id, why in sorted(unreadable.items())]
    _print_lines(lines)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from runbook.review.approvals import approve, signatures_file

    key = approve(args.file, args.key)
    print(f"{args.file}: approved with {key}; signature appended to {signatures_file(args.file)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from runbook.journal.history import result_lines, story_lines
    from runbook.journal.store import read_run, runs_dir

    if args.run_id.endswith(".json") and os.path.isfile(args.run_id):
        from runbook.review.saved_view import saved_plan_lines

        _print_lines(saved_plan_lines(args.run_id, args.allowed_signers))
        return 0
    run = read_run(runs_dir(args.file, args.journal), args.run_id)
    if args.host or args.step:
        _print_lines(result_lines(run, args.host, args.step))
    else:
        _print_lines(story_lines(run))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from runbook.journal.report import write_report
    from runbook.journal.store import read_run, runs_dir

    run = read_run(runs_dir(args.file, args.journal), args.run_id)
    out = Path(args.out or f"report-{run.run_id}.html")
    write_report(run, out)
    print(f"report written to {out}", file=sys.stderr)
    return 0


def _print_lines(lines: list[str]) -> None:
    from runbook.text import printable

    sys.stdout.write("".join(printable(line, multiline=False) + "\n" for line in lines))


COMMANDS = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "diff": cmd_diff,
    "apply": cmd_apply,
    "inventory": cmd_inventory,
    "runs": cmd_runs,
    "show": cmd_show,
    "report": cmd_report,
    "approve": cmd_approve,
}
