"""A run and its resumes read as one story, for ``--resume`` (SPEC §6: a resumed run is
itself resumable).

Each ``apply --resume R`` journals a run of its own that names R in ``meta.json``
(``resumes``). Reading only R, a second ``--resume R`` ran again what the first resume
had finished. So ``--resume`` reads the whole family — R's ancestors and every run that
resumes any of them, in the order they ran — and takes as done whatever any of them
finished, as unknown whatever one started and no later one ran again, and the values
they registered, later ones last. ``--resume R --limit X`` then finishes X; what the
narrowing leaves out and no run has finished keeps the run from "completed" (``Story``).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from runbook.journal.store import RunRecord, read_run
from runbook.model.command import Status
from runbook.model.events import Registered

Key = tuple[str, str]  # (step, host)


@dataclass(frozen=True)
class Story:
    """What a run's family did, all runs together."""

    root: RunRecord  # the first run, whose plan is the whole procedure
    runs: tuple[str, ...]  # every run of the family, in the order they ran
    done: frozenset[Key]  # ok in some run (a whole command, not a loop's item)
    finished: frozenset[Key]  # ok, skipped or rescued: nothing left to do
    rescued: frozenset[Key]  # an inner step's failure a rescue handled
    done_items: frozenset[tuple[str, str, int]]  # a loop's items ok in some run
    unknown: tuple[tuple[str, str, str], ...]  # (step, host, run id): may have run, unknown
    registered: tuple[Registered, ...]  # every registered value, in the order journaled


def story(root: Path, run: RunRecord) -> Story:
    """``run``'s family in journal root ``root``. Raises ``JournalError`` if one of its
    runs cannot be read or trusted."""
    parents = _parents(root)
    top = run.run_id
    seen = {top}
    while (parent := parents.get(top)) is not None and parent in parents and parent not in seen:
        top = parent
        seen.add(top)
    members = {top}
    grew = True
    while grew:  # every run that resumes a member, transitively
        found = {child for child, parent in parents.items() if parent in members}
        grew = not found <= members
        members |= found
    records = [run if rid == run.run_id else read_run(root, rid) for rid in members]
    records.sort(key=lambda r: (r.events[0].time if r.events else 0.0, r.run_id))
    return _told(next(r for r in records if r.run_id == top), records)


def _parents(root: Path) -> dict[str, str | None]:
    """Run id → the run it resumes, from each run's ``meta.json`` alone (the events are
    read only for the family's runs)."""
    parents: dict[str, str | None] = {}
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
            resumes = meta.get("resumes") if isinstance(meta, dict) else None
            parents[path.name] = resumes if isinstance(resumes, str) else None
    return parents


def _told(root: RunRecord, records: list[RunRecord]) -> Story:
    done: set[Key] = set()
    finished: set[Key] = set()
    rescued: set[Key] = set()
    items: set[tuple[str, str, int]] = set()
    unknown: dict[Key, str] = {}
    registered: list[Registered] = []
    for record in records:
        for r in record.results():
            key = (r.step, r.host)
            if r.status is Status.OK and r.item is not None:
                items.add((r.step, r.host, r.item))
            elif r.status is Status.OK:
                done.add(key)
            if r.status is Status.RESCUED:
                rescued.add(key)
            if r.status in (Status.OK, Status.SKIPPED, Status.RESCUED):
                finished.add(key)
            if r.status is Status.OK or r.attempts > 0:  # it ran again: its outcome is known
                unknown.pop(key, None)
        for key in record.unknown_outcomes():
            unknown[key] = record.run_id
        registered += record.registrations()
    return Story(
        root=root,
        runs=tuple(r.run_id for r in records),
        done=frozenset(done),
        finished=frozenset(finished),
        rescued=frozenset(rescued),
        done_items=frozenset(items),
        unknown=tuple((step, host, rid) for (step, host), rid in unknown.items()),
        registered=tuple(registered),
    )
