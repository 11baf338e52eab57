"""Narrowing a plan that is not re-rendered: a saved plan or a resumed run (SPEC §6).

``--limit``, ``--tags``, ``--skip-tags`` and ``--start-at`` keep part of it, by the same
rules that select from a runbook (``select``) — a group's rescue and always steps go with
it, and the runbook's always steps with every run, whatever ``--tags`` or ``--start-at``
say (``--skip-tags`` can skip them); ``-e``, ``--vars-file`` and ``-i`` are
refused, because they would change what commands render to, and these commands are not
rendered again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from runbook.errors import UsageError
from runbook.inventory.build import Inventory
from runbook.model.plan import Plan, PlanItem, PlannedBatch, PlannedStep, Section, Selection
from runbook.model.runbook import Host
from runbook.options import PlanOptions
from runbook.plan.select import Selectable, Selected, limited, select

OF_THE_PLAN = " of the plan"


def narrow(plan: Plan, opts: PlanOptions, what: str) -> Plan:
    """``plan`` cut down to what ``opts`` selects; ``what`` names the plan for errors."""
    if opts.rerenders:
        raise UsageError(
            f"-e, --vars-file and -i cannot change {what}: its commands are not rendered "
            "again; make a new plan from the runbook instead"
        )
    sel = opts.selection
    if sel == Selection():
        return plan
    hosts = limited(_inventory(plan), sel.limit, OF_THE_PLAN)
    main = [item for item in plan.steps if item.section is Section.MAIN]
    out = []
    for chosen in select(main, sel, _inner, OF_THE_PLAN):
        cut = _cut(chosen, sel, hosts)
        if cut is not None:
            out.append(cut)
    finals = (  # the runbook's always steps
        i
        for i in plan.steps
        if i.section is not Section.MAIN and not (isinstance(i, PlannedStep) and _skipped(i, sel))
    )
    out += [c for c in (_cut(Selected(i, _names(i)), sel, hosts) for i in finals) if c]
    return replace(plan, steps=tuple(out))


def _inventory(plan: Plan) -> Inventory:
    """The plan's hosts and their groups, for ``--limit`` patterns to resolve against."""
    by_name: dict[str, Host] = {c.host.name: c.host for c in plan.commands}
    groups: dict[str, list[str]] = {"all": list(by_name)}
    for host in by_name.values():
        for g in host.groups:
            groups.setdefault(g, []).append(host.name)
    return Inventory(hosts=by_name, groups=groups)


class _Inner(NamedTuple):
    name: str
    tags: tuple[str, ...]


def _inner(item: PlanItem) -> tuple[Selectable, ...] | None:
    """A group's inner steps, one per name (each batch holds its own copy; a group with
    no hosts holds none, and its inner steps have the group's tags)."""
    if isinstance(item, PlannedStep):
        return None
    tags = {s.name: s.tags for b in item.batches for s in b.steps}
    return tuple(_Inner(name, tags.get(name, item.tags)) for name in item.inner)


def _cut(chosen: Selected[PlanItem], sel: Selection, hosts: set[str] | None) -> PlanItem | None:
    item = chosen.item
    if isinstance(item, PlannedStep):
        return _cut_step(item, sel, hosts)
    batches = []
    first = True  # the first batch that runs: the first one --limit keeps (from a runbook,
    # the batches are made of the limited hosts, so that is its first batch too)
    for b in item.batches:
        if hosts is not None and not set(b.hosts) & hosts:
            continue
        names = chosen.batch_steps(first)
        first = False
        cut = (
            _cut_step(s, sel, hosts)
            for s in b.steps
            if s.name in names or (s.section is not Section.MAIN and not _skipped(s, sel))
        )
        steps = tuple(s for s in cut if s is not None)
        if any(s.section is Section.MAIN for s in steps):  # rescue and always come with it
            kept_hosts = tuple(h for h in b.hosts if hosts is None or h in hosts)
            batches.append(PlannedBatch(b.number, kept_hosts, steps))
    return replace(item, batches=tuple(batches)) if batches else None


def _names(item: PlanItem) -> tuple[str, ...]:
    return () if isinstance(item, PlannedStep) else item.inner


def _skipped(step: PlannedStep, sel: Selection) -> bool:
    """``--skip-tags`` is the one narrowing that skips a rescue or always step."""
    return bool(sel.skip_tags and set(step.tags) & set(sel.skip_tags))


def _cut_step(step: PlannedStep, sel: Selection, hosts: set[str] | None) -> PlannedStep | None:
    if hosts is None or step.local:  # a local step runs on the controller: not limited
        return step
    if step.run_once and step.commands and not {c.host.name for c in step.commands} & hosts:
        # From the runbook it would run once on a limited host; here it cannot be moved.
        once = ", ".join(sorted({c.host.name for c in step.commands}))
        raise UsageError(
            f"step {step.name!r} runs once, on {once}, which --limit {sel.limit!r} leaves "
            "out; its command is not rendered again: make a new plan with this --limit"
        )
    batches = tuple(
        b for b in (tuple(c for c in batch if c.host.name in hosts) for batch in step.batches) if b
    )
    return replace(step, batches=batches) if batches else None
