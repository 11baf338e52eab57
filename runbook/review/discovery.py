"""Running the discover steps: for ``plan --check``, and again before ``apply`` of a plan
it saved, which refuses when the world changed in between (SPEC §12).

A discovery is an ordinary journaled run (``launch``) of the plan's discover steps alone,
under the runbook's run lock: its ``meta.json`` has ``"kind": "discovery"`` and says what
it was for. Before ``apply PLAN.json`` it gets its own run id; when its values match the
plan's, the apply that follows starts from them as a resume would (``meta.json``:
``discovery_run``): its discover steps are ``ok`` "already in" the discovery run and their
registered values are the ones just compared, so nothing can change between the check
and the commands that read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from runbook.errors import InputError
from runbook.journal.store import new_run_id
from runbook.model.command import Status
from runbook.model.events import Event, Registered
from runbook.options import RunSettings
from runbook.plan.discover import Discovered, discovery_plan, merged, stale
from runbook.run.launch import Launch, PreparedRun, Slot, launch
from runbook.run.runner import Resume, RunResult

Notify = Callable[[str], None]


@dataclass
class DiscoveryRun:
    """A finished discovery: its journaled run and what the discover steps registered."""

    run_id: str
    journal: Path
    result: RunResult
    registered: list[Registered] = field(default_factory=list)

    @property
    def found(self) -> list[Discovered]:
        """Per step, per host: the compared fields of what it registered."""
        return merged(Discovered.of(r.step, r.name, r.hosts, r.value) for r in self.registered)

    @property
    def failures(self) -> list[str]:
        """``host 'step': status (why)`` for every discover command that did not end ok
        or skipped."""
        return [
            f"{r.host} {r.step!r}: {r.status.value}" + (f" ({r.error})" if r.error else "")
            for r in self.result.results
            if r.failed or r.status is Status.CANCELLED
        ]


class _Registrations:
    """A listener that keeps the run's ``registered`` events (secrets as tokens)."""

    def __init__(self) -> None:
        self.events: list[Registered] = []

    def handle(self, event: Event) -> None:
        if isinstance(event, Registered):
            self.events.append(event)


def discover(
    prepared: PreparedRun,
    settings: RunSettings,
    slot: Slot,
    purpose: str,
    notify: Notify = lambda message: None,
) -> DiscoveryRun | None:
    """Run the discover steps of ``prepared``'s plan, journaled under ``slot`` (the
    caller holds the run lock); None when the plan has none."""
    plan = discovery_plan(prepared.plan)
    if plan is None:
        return None
    kept = _Registrations()
    meta = {**settings.meta, "kind": "discovery", "for": purpose}
    result, journal = launch(
        PreparedRun(plan, prepared.secrets),
        replace(settings, meta=meta),
        slot,
        Launch(listeners=[kept], notify=notify, warn=lambda m: notify(f"WARNING: {m}")),
    )
    return DiscoveryRun(slot.run_id, journal, result, kept.events)


def rediscover(
    prepared: PreparedRun, settings: RunSettings, slot: Slot, notify: Notify
) -> tuple[PreparedRun, RunSettings]:
    """Before ``apply`` of a checked plan: the discover steps again, in a run of their
    own. Raises ``InputError`` (exit 2; nothing else has run) when a value differs from
    the plan's; otherwise the run to start, resuming from the discovery."""
    if not prepared.discovered or prepared.resume is not None:
        return prepared, settings
    run = discover(prepared, settings, Slot(slot.root, new_run_id()), "apply", notify)
    if run is None:  # narrowed to no discover step: nothing to compare
        return prepared, settings
    problems = stale(prepared.discovered, run.found)
    if problems:
        first, *rest = (InputError(f"stale plan: {p}") for p in problems)
        first.others = [
            *rest,
            InputError(
                f"nothing ran but the discover steps (run {run.run_id}, journal "
                f"{run.journal}); make the plan again with plan --check --out and review it"
            ),
        ]
        raise first
    compared = sum(len(d.values) for d in prepared.discovered)
    notify(
        f"discovery run {run.run_id}: the hosts still show what the plan was checked "
        f"against ({compared} values)"
    )
    done = frozenset((r.step, r.host) for r in run.result.results if r.ok)
    resume = Resume(run.run_id, done, tuple(run.registered))
    meta = {**settings.meta, "discovery_run": run.run_id}
    return replace(prepared, resume=resume), replace(settings, meta=meta)
