"""``runbook plan --check``: the plan, checked against the hosts without changing them.

The discover steps run (a journaled discovery run, ``review.discovery``); every command
that depends only on what they found is shown rendered, marked ``discovered``
(``review.checked``); every copy that will run shows what it changes on its host
(``review.filediff``). With ``--out`` the discovered values are stored in the saved plan,
and ``apply`` of it finds them again first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runbook.load.secrets import Secrets
from runbook.model.plan import Plan
from runbook.options import RunSettings
from runbook.plan.discover import Discovered, discovery_plan
from runbook.plan.text import Note, plan_text
from runbook.review.checked import checked_view, discovered_values
from runbook.review.discovery import DiscoveryRun, discover
from runbook.review.filediff import copy_notes
from runbook.run.launch import PreparedRun, locked_journal

Notify = Callable[[str], None]


@dataclass
class Checked:
    """The checked plan: ``view`` is what is shown, ``plan`` what would be saved."""

    plan: Plan
    view: Plan
    notes: dict[tuple[str, str], Note] = field(default_factory=dict)
    discovery: DiscoveryRun | None = None
    copies: int = 0  # destinations read for copy diffs

    @property
    def failures(self) -> list[str]:
        return self.discovery.failures if self.discovery is not None else []

    @property
    def found(self) -> list[Discovered]:
        return self.discovery.found if self.discovery is not None else []

    def text(self, mask: Callable[[str], str], expand: bool = False) -> str:
        head = "checked: no discover steps"
        if self.discovery is not None:
            ran = len(self.discovery.result.results)
            head = (
                f"checked: discovery run {self.discovery.run_id} ({ran} read-only "
                f"command{'' if ran == 1 else 's'})"
            )
            if self.failures:
                head += f"; {len(self.failures)} failed: " + "; ".join(self.failures)
        if self.copies:
            head += f"; {self.copies} copy destination{'' if self.copies == 1 else 's'} read"
        lines = plan_text(self.view, expand, self.notes, mask).split("\n")
        return "\n".join([*lines[:3], mask(head), *lines[3:]])

    def stored(self) -> dict[str, Any]:
        """The saved plan's ``discovery``: what apply compares with what it finds."""
        run_id = self.discovery.run_id if self.discovery is not None else None
        return {"run_id": run_id, "values": [d.to_dict() for d in self.found]}

    def to_dict(self) -> dict[str, Any]:
        """``plan --check --format json``'s ``check``: per command what was found,
        rendered or diffed."""
        shown = {c.key: c for c in self.view.commands}
        commands = []
        for key, note in self.notes.items():
            c = shown[key]
            entry: dict[str, Any] = {"step": key[0], "host": key[1]}
            if note.mark:
                entry[note.mark] = True
                entry["cmd"] = c.cmd
                if c.env:
                    entry["env"] = dict(c.env)
                if c.skip_reason:
                    entry["skipped"] = c.skip_reason
            if note.lines:
                entry["lines"] = list(note.lines)
            commands.append(entry)
        run = self.discovery
        return {
            "run_id": run.run_id if run is not None else None,
            "failures": self.failures,
            "commands": commands,
        }


def check(
    plan: Plan, secrets: Secrets, settings: RunSettings, notify: Notify, warn: Notify
) -> Checked:
    """Run the discover steps (under the runbook's run lock), then show the rest."""
    prepared = PreparedRun(plan, secrets)
    run = None
    if discovery_plan(plan) is not None:
        with locked_journal(settings, prepared) as slot:
            run = discover(prepared, settings, slot, "plan --check", notify)
    found = run.found if run is not None else []
    values = discovered_values(plan, secrets, found)
    view, notes = checked_view(plan, values, found, run.result.results if run else ())
    planned = {c.key: c for c in plan.commands}
    diffs = copy_notes(view, planned, values, settings, warn)
    for key, note in diffs.items():
        seen = notes.get(key, Note())
        notes[key] = Note(seen.mark, seen.lines + note.lines)
    return Checked(plan, view, notes, run, len(diffs))
