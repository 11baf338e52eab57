"""``runbook apply`` on a terminal or in a pipeline: prompts, the console, signals, the
recap, around one journaled run (``launch``).

Everything that can be wrong with the input is found before the first command starts
(``prepare``): the plan is complete, secrets are read, the journal is open.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from runbook.cli.console import Console, detach_stdout
from runbook.errors import UsageError
from runbook.options import ApplyOptions, Format
from runbook.prepare import prepare_run
from runbook.review.discovery import rediscover
from runbook.run.launch import Launch, PreparedRun, launch, locked_journal
from runbook.run.runner import Runner
from runbook.text import printable


def apply(opts: ApplyOptions) -> int:
    """Run the plan ``opts`` names; returns the exit code (0, 1 or 130)."""
    from runbook.cli.recap import recap

    prepared = prepare_run(opts)
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    if not opts.yes and not tty:
        raise UsageError("apply needs --yes when not run from a terminal")
    with locked_journal(opts.settings, prepared) as slot:
        prepared, settings = rediscover(prepared, opts.settings, slot, _notify)
        if not opts.yes and not _ask(f"{_summary(prepared)}\nProceed? [y/N] "):
            print("aborted; nothing was run", file=sys.stderr)
            return 1
        console = _console(opts, tty)
        how = Launch(
            listeners=[console],
            confirm=None if opts.yes else _confirmer(console),
            notify=_notify,
            warn=lambda message: _notify(f"WARNING: {message}"),
        )
        try:
            result, journal = launch(
                prepared, settings, slot, how, lambda runner: _signals_recorded(runner, console)
            )
        except BaseException:
            console.close()  # what it queued comes before the crash's one line
            raise
    console.close()  # the run is over and its lock released: now wait for the reader
    if opts.output != Format.JSON:
        _observe(lambda: recap(result, str(journal), approvals=prepared.approvals))
    return result.exit_code


def _confirmer(console: Console) -> Callable[[str, str | None], bool]:
    """A ``confirm`` message is runbook text: shown as written (escaped), never masked —
    masking replaces rendered secret values, not literal text (SPEC §6)."""

    def confirm(name: str, message: str | None) -> bool:
        with console.suspended():
            return _ask(f"{printable(message or '')}\nContinue with '{_one_line(name)}'? [y/N] ")

    return confirm


def _notify(message: str) -> None:
    _observe(lambda: print(_one_line(f"runbook: {message}"), file=sys.stderr))


def _one_line(text: str) -> str:
    return printable(text, multiline=False)


def _observe(show: Callable[[], None]) -> None:
    """Show something; a closed or hung-up terminal is no reason to fail: the run's
    result is the exit code and the journal, whatever the console could print."""
    try:
        show()
    except OSError:
        detach_stdout()


def _console(opts: ApplyOptions, tty: bool) -> Console:
    from runbook.cli.console import JsonLines, LiveConsole, PlainConsole

    if opts.output == Format.JSON:
        return JsonLines()
    return LiveConsole(opts.verbose) if tty else PlainConsole(sys.stdout, opts.verbose)


@contextmanager
def _signals_recorded(runner: Runner, console: Console) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM only call ``runner.interrupt`` and SIGHUP (the
    terminal went away) only ``console.detach``: neither may take a lock the main thread
    may hold."""
    handlers = {
        signal.SIGINT: runner.interrupt,
        signal.SIGTERM: runner.interrupt,
        signal.SIGHUP: console.detach,
    }

    def handler(signum: int, frame: FrameType | None) -> None:
        handlers[signal.Signals(signum)]()

    previous: dict[int, Any] = {s: signal.signal(s, handler) for s in handlers}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _summary(prepared: PreparedRun) -> str:
    from runbook.plan.text import counted

    plan = prepared.plan
    hosts = [_one_line(h) for h in sorted(plan.host_names)]
    shown = ", ".join(hosts[:8]) + (f", … ({len(hosts)} in all)" if len(hosts) > 8 else "")
    steps = "\n".join(
        f"  {i}. {_one_line(s.name)} ({counted(len({c.host.name for c in s.commands}), 'host')})"
        for i, s in enumerate(plan.steps, 1)
    )
    approved = f"\n{_one_line(prepared.approvals.summary())}" if prepared.approvals else ""
    return f"{_one_line(plan.name)}\n{steps}\nhosts: {shown}{approved}"


def _ask(prompt: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(prompt).strip().lower() in ("y", "yes")
    except EOFError:
        return False
