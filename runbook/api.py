"""The Python API: load, plan and apply a runbook from a program (a CI job, a chat-ops bot).

    from runbook import api

    plan = api.plan("playbooks/cluster-restart.yml", limit="sdw1", variables={"db_port": 5433})
    print(api.plan_text(plan))
    result = api.apply(plan, listeners=[MyListener()], forks=20)
    print(result.status, result.exit_code)

Input errors raise ``runbook.errors.InputError`` (``str(err)`` is the one-line
``FILE:LINE:COL: ...`` message the CLI prints); nothing runs then. ``apply`` journals
like the CLI (``.runbook/runs`` beside the runbook, the same lock), and listeners get
the typed events of ``runbook.model.events`` (``handle(event)``; they must not block).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runbook.load.secrets import Secrets
from runbook.model.events import Listener
from runbook.model.plan import Plan, Selection
from runbook.options import PlanOptions, RunSettings, SshOptions
from runbook.plan.text import plan_text as _plan_text
from runbook.prepare import Prepared, check_before_run, prepare_plan
from runbook.run.launch import Confirm, Launch, PreparedRun, launch, locked_journal
from runbook.run.runner import RunResult

__all__ = ["Planned", "RunResult", "SshOptions", "apply", "load", "plan", "plan_text"]


@dataclass(frozen=True)
class Planned:
    """A runbook planned for a run: the plan and the secrets it reads (never shown)."""

    plan: Plan
    secrets: Secrets = field(default_factory=Secrets)
    path: str = ""


def load(
    path: str,
    *,
    variables: Mapping[str, Any] | None = None,
    inventories: Iterable[str] = (),
    limit: str | None = None,
    tags: Iterable[str] = (),
    skip_tags: Iterable[str] = (),
    start_at: str | None = None,
    vault_ids: Iterable[str] = (),
) -> Planned:
    """Load and plan ``path`` (``variables`` are like ``-e``, already typed; ``vault_ids``
    like ``--vault-id [LABEL@]FILE``). Raises ``InputError``."""
    opts = PlanOptions(
        file=path,
        inventories=tuple(inventories),
        selection=Selection(limit, tuple(tags), tuple(skip_tags), start_at),
        variables=tuple((variables or {}).items()),
        vault_ids=tuple(vault_ids),
    )
    prepared: Prepared = prepare_plan(opts)
    return Planned(prepared.plan, prepared.secrets, path)


def plan(path: str, **options: Any) -> Planned:
    """``load``, by the CLI's other name for it."""
    return load(path, **options)


def plan_text(planned: Planned | Plan, expand: bool = False) -> str:
    """The plan as ``runbook plan`` prints it."""
    return _plan_text(planned.plan if isinstance(planned, Planned) else planned, expand=expand)


def apply(
    planned: Planned | str,
    *,
    listeners: Iterable[Listener] = (),
    forks: int = 10,
    ssh: SshOptions | None = None,
    journal: str | None = None,
    confirm: Confirm | None = None,
) -> RunResult:
    """Run a planned runbook (or plan and run a path). ``confirm(name, message)`` answers
    a step's or group's ``confirm:`` (default: yes). Raises ``InputError`` before anything
    runs, ``JournalError`` when the journal cannot be written or another run of the
    runbook holds its lock."""
    if isinstance(planned, str):
        planned = load(planned)
    settings = RunSettings(forks=forks, journal=journal, ssh=ssh or SshOptions())
    prepared = PreparedRun(planned.plan, planned.secrets)
    check_before_run(prepared)
    with locked_journal(settings, prepared) as slot:
        result, _ = launch(prepared, settings, slot, Launch(list(listeners), confirm))
    return result
