"""One journaled run of a prepared plan: the lock, the journal, the execution context, the
runner. Shared by ``runbook apply`` (which adds the terminal: prompts, console, signals,
recap) and the Python API (``runbook.api.apply``, which adds nothing).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.journal.store import Journal
from runbook.load.secrets import Secrets
from runbook.model.approval import Approvals
from runbook.model.events import Event, Listener, PlanApproved
from runbook.model.plan import Plan
from runbook.options import RunSettings, SshOptions
from runbook.plan.discover import Discovered
from runbook.run.contexts.base import ExecutionContext
from runbook.run.runner import Resume, Runner, RunResult

THREAD_STACK = 2 << 20  # bytes; see launch()
Confirm = Callable[[str, str | None], bool]


@dataclass(frozen=True)
class PreparedRun:
    """Everything a run needs of its input before the first command starts."""

    plan: Plan
    secrets: Secrets
    resume: Resume | None = None
    # A saved plan of `plan --check --out`: what its discover steps found then (SPEC §12).
    discovered: tuple[Discovered, ...] = ()
    approvals: Approvals | None = None  # who signed the saved plan (--require-approvals)


@dataclass
class Launch:
    """What a run needs besides the plan: who watches it and who answers questions."""

    listeners: list[Listener] = field(default_factory=list)
    confirm: Confirm | None = None  # None: every confirmation is answered yes
    notify: Callable[[str], None] = lambda message: None
    warn: Callable[[str], None] = lambda message: None


@dataclass(frozen=True)
class Slot:
    """Where a run will journal, its id, and the lock of its runbook (held)."""

    root: Path
    run_id: str


@contextmanager
def locked_journal(settings: RunSettings, prepared: PreparedRun) -> Iterator[Slot]:
    """The journal root, with the run lock of this runbook held (SPEC §8). Raises
    ``JournalError`` (another run holds it, or the directory cannot be trusted)."""
    from runbook.journal.safedir import RunLock
    from runbook.journal.store import new_run_id, runs_dir, trusted_root

    root = trusted_root(runs_dir(prepared.plan.source, settings.journal), create=True)
    slot = Slot(root, new_run_id())
    lock = RunLock(root, prepared.plan.source)
    lock.acquire(slot.run_id)
    try:
        yield slot
    finally:
        lock.release()


def launch(
    prepared: PreparedRun,
    settings: RunSettings,
    slot: Slot,
    how: Launch,
    wrap: Callable[[Runner], Any] | None = None,
) -> tuple[RunResult, Path]:
    """Run ``prepared`` journaled under ``root``; ``wrap(runner)`` is a context manager
    around the run (the CLI installs its signal handlers there)."""
    from runbook import crash
    from runbook.run.values import RunValues

    journal = Journal(slot.root, slot.run_id, *journal_files(settings, prepared))
    crash.attach(journal.path)
    mask = prepared.secrets.masker
    context = execution_context(settings.ssh, how.warn, shell_runs(prepared.plan))
    runner = Runner(
        prepared.plan,
        context,
        run_id=journal.path.name,
        forks=settings.forks,
        listeners=[journal, *how.listeners],
        mask=mask,
        confirm=how.confirm,
        resume=prepared.resume,
        notify=how.notify,
        values=RunValues(prepared.plan, prepared.secrets.values, mask, prepared.secrets.sources),
        opening=_opening(journal.path.name, prepared.approvals),
    )
    journal.on_error = runner.halt
    with wrap(runner) if wrap is not None else nullcontext(), small_thread_stacks():
        try:
            result = runner.run()
        finally:
            context.close()
            journal.close()
    return result, journal.path


def _opening(run_id: str, approvals: Approvals | None) -> tuple[Event, ...]:
    """Events right after ``run_started``: who approved the plan, if anyone had to."""
    if approvals is None:
        return ()
    approvers = [a.to_dict() for a in approvals.approvers]
    return (
        PlanApproved(
            run_id=run_id,
            plan=approvals.plan,
            sha256=approvals.sha256,
            required=approvals.required,
            approvers=approvers,
        ),
    )


@contextmanager
def small_thread_stacks() -> Iterator[None]:
    """Threads started during the run get ``THREAD_STACK`` bytes of stack; the process's
    setting is restored after it.

    A run has ~4 threads per remote host (worker, SSH transport, session reader and
    heartbeat): at the default 8 MiB of stack each, 500 hosts reserve 16 GiB of address
    space, and an address-space limit (ulimit -v) fails thread creation long before
    memory runs out.
    None of these threads recurses deeply."""
    before = threading.stack_size(THREAD_STACK)
    try:
        yield
    finally:
        threading.stack_size(before)


def journal_files(
    settings: RunSettings, prepared: PreparedRun
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The journal's ``meta.json`` and ``plan.json`` (secrets only by name)."""
    from runbook.plan.saved import plan_to_dict

    plan = prepared.plan
    plan_data = plan_to_dict(plan, os.path.abspath)
    plan_data["secret_sources"] = prepared.secrets.sources
    meta = {
        "runbook": plan.name,
        "source": os.path.abspath(plan.source),
        "files": [os.path.abspath(f) for f in plan.files],
        "digest": plan.digest,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumes": settings.resumes,
        "argv": [prepared.secrets.masker(a) for a in sys.argv[1:]],
        **settings.meta,
    }
    if prepared.approvals is not None:
        meta["approvals"] = prepared.approvals.to_dict()
    return meta, plan_data


def shell_runs(plan: Plan) -> Counter[str]:
    """How many shell commands each host may run (retries included): under ``transport:
    auto`` a host that runs one gets no executor, whose start would cost more than it saves."""
    runs: Counter[str] = Counter()
    for c in plan.commands:
        if c.is_shell and c.skip_reason is None:
            runs[c.runs_on.name] += 1 + c.spec.retries
        elif c.wait is not None and c.wait.command is not None:  # a reboot: check (twice or
            runs[c.runs_on.name] += 3  # more) and its command
    return runs


def execution_context(
    ssh: SshOptions, warn: Callable[[str], None], runs: Mapping[str, int] | None = None
) -> ExecutionContext:
    """Local hosts locally, the others over SSH (created on first use), fault injection
    when ``RUNBOOK_FAULT_POINT`` is set. ``runs``: see ``shell_runs``."""
    from runbook.run.contexts.fault import FAULT_ENV, with_faults
    from runbook.run.contexts.router import HostRouter

    def ssh_factory() -> ExecutionContext:
        from runbook.run.ssh.context import SshExecutionContext

        if ssh.host_key_policy == "off":
            warn(
                "--host-key-policy off: host keys are NOT checked; "
                "anyone on the path can impersonate your hosts"
            )
        return SshExecutionContext(ssh, on_warning=warn, runs=runs)

    return with_faults(HostRouter(ssh_factory), os.environ.get(FAULT_ENV))
