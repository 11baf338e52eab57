"""``runbook apply``: from a runbook, a saved plan or a journaled run to a finished run.

Everything that can be wrong with the input is found before the first command starts:
the plan is complete, secrets are read, the journal is open.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

from runbook.errors import UsageError


def _load(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], Any, set]:
    """→ (plan, masker, secret values, secret sources, done-set for --resume)."""
    from runbook import planfile
    from runbook.cli import _prepare, _secret_sources
    from runbook.errors import InputError
    from runbook.journal import read_run, runs_dir
    from runbook.loader import file_digest

    saved = planfile.read_saved_plan(args.file)
    if args.resume:
        run = read_run(runs_dir(args.file, args.journal), args.resume)
        digest = file_digest(args.file) if saved is None else None
        if digest and digest != run.meta.get("digest") and not args.force:
            raise InputError(
                f"{args.file} changed since run {args.resume} (digest "
                f"{run.meta.get('digest', '?')[:19]} → {digest[:19]}); "
                "use --force to resume the journaled plan anyway"
            )
        return (*_with_secrets(run.plan(), args.file), run.ok_commands())
    if saved is not None:
        return (*_with_secrets(saved, args.file), set())
    rb, plan, (mask, values) = _prepare(args)
    return plan, mask, values, _secret_sources(rb), set()


def _with_secrets(data: dict[str, Any], path: str) -> tuple[Any, Any, dict[str, str], Any]:
    """A plan from JSON, its secrets read again now (they are never stored)."""
    from runbook import planfile
    from runbook.model import SecretSpec
    from runbook.secrets import Masker, detokenize, resolve_secrets

    sources = data.get("secret_sources", {})
    specs = [SecretSpec(name=n, env=s.get("env"), file=s.get("file")) for n, s in sources.items()]
    values = resolve_secrets(specs)
    plan = planfile.plan_from_dict(data, path, lambda t: detokenize(t, values))
    return plan, Masker(values.values()), values, sources


def apply(args: argparse.Namespace) -> int:
    from runbook import planfile
    from runbook.journal import Journal, new_run_id, runs_dir
    from runbook.runner import Runner
    from runbook.secrets import tokenize

    plan, mask, values, sources, done = _load(args)
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    if not args.yes and not tty:
        raise UsageError("apply needs --yes when not run from a terminal")
    if not args.yes and not _ask(f"{_summary(plan)}\nProceed? [y/N] "):
        print("aborted; nothing was run", file=sys.stderr)
        return 1

    run_id = new_run_id()
    journal_root = runs_dir(plan.source, args.journal)
    plan_data = planfile.plan_to_dict(plan, lambda t: tokenize(t, values))
    plan_data["secret_sources"] = sources
    meta = {
        "runbook": plan.name,
        "source": os.path.abspath(plan.source),
        "digest": plan.digest,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumes": args.resume,
        "argv": [_mask_arg(a, mask) for a in sys.argv[1:]],
    }
    journal = Journal(journal_root, run_id, meta, plan_data)

    console: Any = None
    if args.output == "json":
        from runbook.output import JsonLines

        console = JsonLines()
    else:
        from runbook.output import LiveConsole, PlainConsole

        console = LiveConsole(args.verbose) if tty else PlainConsole(sys.stdout, args.verbose)
    listeners: list[Any] = [journal, console]

    context = _context(args, plan)

    def confirm(step: Any) -> bool:
        with console.suspended():
            return _ask(f"{mask(step.confirm)}\nContinue with step {step.name!r}? [y/N] ")

    runner = Runner(
        plan,
        context,
        run_id=run_id,
        forks=args.forks,
        listeners=listeners,
        fault_point=os.environ.get("RUNBOOK_FAULT_POINT"),
        mask=mask,
        confirm=None if args.yes else confirm,
        done=done,
        resumes=args.resume,
    )
    journal.on_error = runner.halt
    previous = {
        s: signal.signal(s, lambda *_: runner.interrupt()) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        result = runner.run()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        context.close()
        journal.close()
    if args.output != "json":
        from runbook.output import recap

        recap(result, str(journal.path))
    return result.exit_code


def _context(args: argparse.Namespace, plan: Any) -> Any:
    from runbook.contexts.router import HostRouter

    def ssh_factory() -> Any:
        from runbook.contexts.ssh import SshExecutionContext, SshOptions

        opts = SshOptions(
            host_key_policy=args.host_key_policy,
            known_hosts=args.known_hosts,
            ssh_config=args.ssh_config,
            connect_timeout=args.connect_timeout,
        )
        if opts.host_key_policy == "off":
            print(
                "runbook: WARNING: --host-key-policy off: host keys are NOT checked; "
                "anyone on the path can impersonate your hosts",
                file=sys.stderr,
            )
        return SshExecutionContext(
            opts, on_warning=lambda m: print(f"runbook: WARNING: {m}", file=sys.stderr)
        )

    return HostRouter(ssh_factory)


def _summary(plan: Any) -> str:
    hosts = sorted({c.host.name for c in plan.commands})
    shown = ", ".join(hosts[:8]) + (f", … ({len(hosts)} in all)" if len(hosts) > 8 else "")
    steps = "\n".join(
        f"  {i}. {s.name} ({len(s.commands)} hosts)" for i, s in enumerate(plan.steps, 1)
    )
    return f"{plan.name}\n{steps}\nhosts: {shown}"


def _ask(prompt: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(prompt).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _mask_arg(arg: str, mask: Any) -> str:
    return mask(arg)
