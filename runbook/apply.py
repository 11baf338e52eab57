"""``runbook apply``: from prepared options to a finished run — journal, console, signals.

Everything that can be wrong with the input is found before the first command starts
(``prepare``): the plan is complete, secrets are read, the journal is open.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from runbook.console import Console, detach_stdout
from runbook.contexts.base import ExecutionContext
from runbook.errors import UsageError
from runbook.journal import Journal
from runbook.options import ApplyOptions, SshOptions
from runbook.plan import Plan
from runbook.prepare import PreparedRun, prepare_run

THREAD_STACK = 2 << 20  # bytes; see apply()


def apply(opts: ApplyOptions) -> int:
    """Run the plan ``opts`` names; returns the exit code (0, 1 or 130)."""
    from runbook.journal import new_run_id, runs_dir, trusted_root
    from runbook.safedir import RunLock

    # A run has ~3 threads per remote host (worker, SSH transport, session reader): at
    # the default 8 MiB of stack each, 500 hosts reserve 12 GiB of address space, and an
    # address-space limit (ulimit -v) fails thread creation long before memory runs out.
    # None of these threads recurses deeply.
    threading.stack_size(THREAD_STACK)

    prepared = prepare_run(opts)
    plan = prepared.plan
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    if not opts.yes and not tty:
        raise UsageError("apply needs --yes when not run from a terminal")
    root = trusted_root(runs_dir(plan.source, opts.journal), create=True)
    run_id = new_run_id()
    lock = RunLock(root, plan.source)
    lock.acquire(run_id)
    try:
        if not opts.yes and not _ask(f"{_summary(plan)}\nProceed? [y/N] "):
            print("aborted; nothing was run", file=sys.stderr)
            return 1
        return _run(opts, prepared, Journal(root, run_id, *_journal_files(opts, prepared)), tty)
    finally:
        lock.release()


def _run(opts: ApplyOptions, prepared: PreparedRun, journal: Journal, tty: bool) -> int:
    from runbook import crash
    from runbook.recap import recap
    from runbook.runner import Runner
    from runbook.runtime import RunValues

    crash.attach(journal.path)
    mask = prepared.secrets.masker
    console = _console(opts, tty)
    context = _context(opts.ssh)

    def confirm(name: str, message: str | None) -> bool:
        with console.suspended():
            return _ask(f"{mask(message or '')}\nContinue with {name!r}? [y/N] ")

    runner = Runner(
        prepared.plan,
        context,
        run_id=journal.path.name,
        forks=opts.forks,
        listeners=[journal, console],
        mask=mask,
        confirm=None if opts.yes else confirm,
        resume=prepared.resume,
        notify=_notify,
        values=RunValues(prepared.plan, prepared.secrets.values, mask),
    )
    journal.on_error = runner.halt
    with _signals_recorded(runner.interrupt, console.detach):
        try:
            result = runner.run()
        finally:
            context.close()
            journal.close()
    if opts.output != "json":
        _observe(lambda: recap(result, str(journal.path)))
    return result.exit_code


def _notify(message: str) -> None:
    _observe(lambda: print(f"runbook: {message}", file=sys.stderr))


def _observe(show: Callable[[], None]) -> None:
    """Show something; a closed or hung-up terminal is no reason to fail: the run's
    result is the exit code and the journal, whatever the console could print."""
    try:
        show()
    except OSError:
        detach_stdout()


def _journal_files(
    opts: ApplyOptions, prepared: PreparedRun
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The journal's ``meta.json`` and ``plan.json`` (secrets only by name)."""
    from runbook import planfile

    plan = prepared.plan
    plan_data = planfile.plan_to_dict(plan, os.path.abspath)
    plan_data["secret_sources"] = prepared.secrets.sources
    meta = {
        "runbook": plan.name,
        "source": os.path.abspath(plan.source),
        "files": [os.path.abspath(f) for f in plan.files],
        "digest": plan.digest,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumes": opts.resume,
        "argv": [prepared.secrets.masker(a) for a in sys.argv[1:]],
    }
    return meta, plan_data


def _console(opts: ApplyOptions, tty: bool) -> Console:
    from runbook.console import JsonLines, LiveConsole, PlainConsole

    if opts.output == "json":
        return JsonLines()
    return LiveConsole(opts.verbose) if tty else PlainConsole(sys.stdout, opts.verbose)


class _signals_recorded:
    """While inside, SIGINT/SIGTERM only call ``interrupt`` and SIGHUP (the terminal went
    away) only ``hangup``; neither may take a lock (the main thread may hold it)."""

    def __init__(self, interrupt: Callable[[], None], hangup: Callable[[], None]) -> None:
        self.handlers = {signal.SIGINT: interrupt, signal.SIGTERM: interrupt, signal.SIGHUP: hangup}
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.handlers[signal.Signals(signum)]()

        for s in self.handlers:
            self.previous[s] = signal.signal(s, handler)

    def __exit__(self, *exc: object) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)


def _context(ssh: SshOptions) -> ExecutionContext:
    from runbook.contexts.fault import FAULT_ENV, with_faults
    from runbook.contexts.router import HostRouter

    def ssh_factory() -> ExecutionContext:
        from runbook.contexts.ssh import SshExecutionContext

        if ssh.host_key_policy == "off":
            print(
                "runbook: WARNING: --host-key-policy off: host keys are NOT checked; "
                "anyone on the path can impersonate your hosts",
                file=sys.stderr,
            )
        return SshExecutionContext(
            ssh, on_warning=lambda m: print(f"runbook: WARNING: {m}", file=sys.stderr)
        )

    return with_faults(HostRouter(ssh_factory), os.environ.get(FAULT_ENV))


def _summary(plan: Plan) -> str:
    from runbook.plantext import counted

    hosts = sorted(plan.host_names)
    shown = ", ".join(hosts[:8]) + (f", … ({len(hosts)} in all)" if len(hosts) > 8 else "")
    steps = "\n".join(
        f"  {i}. {s.name} ({counted(len(s.commands), 'host')})" for i, s in enumerate(plan.steps, 1)
    )
    return f"{plan.name}\n{steps}\nhosts: {shown}"


def _ask(prompt: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(prompt).strip().lower() in ("y", "yes")
    except EOFError:
        return False
