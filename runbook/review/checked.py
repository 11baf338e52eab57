"""The plan as ``plan --check`` shows it: every command that depends only on discovered
values rendered concretely (its ``when`` decided), marked ``discovered``; what each
discover step found, under its host. Pure given the discovered values, so ``runbook show
PLAN.json`` draws a saved checked plan the same way without contacting anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from runbook.errors import InputError
from runbook.load.secrets import Secrets
from runbook.model.command import Command, CommandResult, Status
from runbook.model.plan import Plan, PlannedGroup, PlannedStep
from runbook.plan.discover import Discovered, discover_registers, later_registers
from runbook.plan.text import Note
from runbook.run.values import RunValues, register_value
from runbook.templating.partial import attributes

DISCOVERED = "discovered"
SHOWN_CHARS = 120  # of a discover step's output on its host's line


def discovered_values(plan: Plan, secrets: Secrets, found: Iterable[Discovered]) -> RunValues:
    """The run's values as they are after the discover steps: ``found`` registered."""
    values = RunValues(plan, secrets.values, secrets.masker)
    for d in found:
        for host, value in d.values.items():
            values.set(
                d.register, [host], values.restored(_full(d.step, host, value), host, d.step)
            )
    return values


def checked_view(
    plan: Plan,
    values: RunValues,
    found: Iterable[Discovered],
    results: Iterable[CommandResult] = (),
) -> tuple[Plan, dict[tuple[str, str], Note]]:
    """``plan`` with what depends only on ``found`` (registered in ``values``)
    rendered, and the notes that say so. ``results``: the discovery run's (masked)
    results, for what each step found."""
    stored = {
        (d.step, host): values.restored(_full(d.step, host, value), host, d.step)
        for d in found
        for host, value in d.values.items()
    }
    known = discover_registers(plan) - later_registers(plan)
    unknown = later_registers(plan)
    outcome = {(r.step, r.host): r for r in results}
    notes: dict[tuple[str, str], Note] = {}

    def shown(step: PlannedStep, c: Command) -> Command:
        if step.discover:
            seen = _found(outcome.get(c.key) or stored.get(c.key), values.mask)
            if seen:
                notes[c.key] = Note(lines=(seen,))
        t = c.templates
        if t is None or not t.registers or not _reads_only(c, known, unknown):
            return c
        try:
            r = values.preview(c)
        except InputError:  # reads what is not there: stays deferred
            return c
        notes[c.key] = Note(DISCOVERED, notes.get(c.key, Note()).lines)
        if c.transfer is not None:
            return replace(c, skip_reason=r.skip_reason, templates=None)
        return replace(c, cmd=r.cmd, env=r.env, skip_reason=r.skip_reason, templates=None)

    return mapped(plan, shown), notes


def mapped(plan: Plan, change: Callable[[PlannedStep, Command], Command]) -> Plan:
    """``plan`` with every command replaced by ``change(step, command)``."""

    def step_of(s: PlannedStep) -> PlannedStep:
        return replace(s, batches=tuple(tuple(change(s, c) for c in b) for b in s.batches))

    items: list[PlannedStep | PlannedGroup] = []
    for item in plan.steps:
        if isinstance(item, PlannedGroup):
            batches = tuple(
                replace(b, steps=tuple(step_of(s) for s in b.steps)) for b in item.batches
            )
            items.append(replace(item, batches=batches))
        else:
            items.append(step_of(item))
    return replace(plan, steps=tuple(items))


def _reads_only(c: Command, known: frozenset[str], unknown: frozenset[str]) -> bool:
    """Whether every registered value the command reads is a discovered one; through
    ``hostvars`` too (any attribute named like a later register counts as reading it)."""
    t = c.templates
    assert t is not None
    names = set(t.registers) - {"hostvars"}
    if not names <= known:
        return False
    if "hostvars" not in t.registers:
        return True
    sources = [t.run, *(v for _, v in (*t.env, *t.step_env))]
    read = set().union(*(attributes(s) for s in sources))
    if t.when is not None:
        read |= attributes(t.when, expression=True)
    return not read & unknown


def _full(step: str, host: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """A stored value (status, rc, stdout, stderr) as ``register`` makes it."""
    result = CommandResult(
        step,
        host,
        Status(value.get("status", "ok")),
        rc=value.get("rc"),
        stdout=value.get("stdout") or "",
        stderr=value.get("stderr") or "",
    )
    return register_value(result)


def _found(seen: CommandResult | Mapping[str, Any] | None, mask: Callable[[str], str]) -> str:
    """One line: what a discover command found on its host (from the discovery run's
    result, or the value a saved plan stored)."""
    if seen is None:
        return ""
    if isinstance(seen, CommandResult):
        status, stdout, error = seen.status.value, seen.stdout.rstrip("\n"), seen.error
    else:
        status, stdout, error = str(seen.get("status")), str(seen.get("stdout") or ""), None
    if status != Status.OK.value:
        return f"found: {status}" + (f" ({mask(error)})" if error else "")
    lines = mask(stdout).split("\n")
    first = lines[0][:SHOWN_CHARS] + ("…" if len(lines[0]) > SHOWN_CHARS else "")
    more = f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else ""
    return f"found: {first!r}{more}" if stdout else "found: nothing (empty output)"
