"""Narrowing a plan that is not re-rendered: a saved plan or a resumed run (SPEC §6).

``--limit``, ``--tags``, ``--skip-tags`` and ``--start-at`` keep part of it; ``-e``,
``--vars-file`` and ``-i`` are refused, because they would change what commands render
to, and these commands are not rendered again.
"""

from __future__ import annotations

from dataclasses import replace

from runbook.errors import InputError, UsageError
from runbook.inventory.build import Inventory
from runbook.model.plan import (
    Plan,
    PlanItem,
    PlannedBatch,
    PlannedGroup,
    PlannedStep,
    Section,
    Selection,
)
from runbook.model.runbook import Host
from runbook.options import PlanOptions
from runbook.plan.select import check_tags, kept


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
    hosts = _limited(plan, sel.limit)
    items = _from_start(list(plan.steps), sel.start_at, hosts)
    known = {t for item in plan.steps for t in _tags_of(item)}
    check_tags(sel, known, {t for item in items for t in _tags_of(item)}, " of the plan")
    out = []
    for item in items:
        cut = _cut(item, sel, hosts)
        if cut is not None:
            out.append(cut)
    return replace(plan, steps=tuple(out))


def _limited(plan: Plan, limit: str | None) -> set[str] | None:
    if not limit:
        return None
    by_name: dict[str, Host] = {c.host.name: c.host for c in plan.commands}
    groups: dict[str, list[str]] = {"all": list(by_name)}
    for host in by_name.values():
        for g in host.groups:
            groups.setdefault(g, []).append(host.name)
    try:
        found = Inventory(hosts=by_name, groups=groups).resolve(limit)
    except InputError as exc:
        raise UsageError(f"--limit {limit!r}: {exc.message}") from None
    if not found:
        raise UsageError(f"--limit {limit!r} matches no host of the plan")
    return {h.name for h in found}


def _from_start(
    items: list[PlanItem], start_at: str | None, hosts: set[str] | None
) -> list[PlanItem]:
    if not start_at:
        return items
    for i, item in enumerate(items):
        if item.name == start_at:
            return items[i:]
        if isinstance(item, PlannedGroup) and start_at in item.inner:
            # The first batch that runs: the first one --limit keeps (from a runbook, the
            # batches are made of the limited hosts, so that is its first batch too).
            at = next(
                (k for k, b in enumerate(item.batches) if hosts is None or set(b.hosts) & hosts),
                0,
            )
            batches = list(item.batches)
            names = [s.name for s in batches[at].steps] if batches else []
            if start_at in names:
                steps = batches[at].steps[names.index(start_at) :]
                batches[at] = replace(batches[at], steps=steps)
            return [replace(item, batches=tuple(batches)), *items[i + 1 :]]
    raise UsageError(f"--start-at: no step named {start_at!r} in the plan")


def _kept(step: PlannedStep, sel: Selection) -> bool:
    """Rescue and always steps go with their group, and the runbook's always steps with
    every run, whatever ``--tags`` says; ``--skip-tags`` can skip them."""
    if step.section is Section.MAIN:
        return kept(step.tags, sel)
    return not (sel.skip_tags and set(step.tags) & set(sel.skip_tags))


def _tags_of(item: PlanItem) -> set[str]:
    if isinstance(item, PlannedGroup):
        return {t for b in item.batches for s in b.steps for t in s.tags} | set(item.tags)
    return set(item.tags)


def _cut(item: PlanItem, sel: Selection, hosts: set[str] | None) -> PlanItem | None:
    if item.section is not Section.MAIN:  # the runbook's always: only --skip-tags cuts it
        sel = replace(sel, tags=())
    if isinstance(item, PlannedStep):
        return _cut_step(item, sel, hosts)
    batches = []
    for b in item.batches:
        if hosts is not None and not set(b.hosts) & hosts:
            continue
        steps = tuple(s for s in (_cut_step(s, sel, hosts) for s in b.steps) if s is not None)
        if any(s.section is Section.MAIN for s in steps):  # rescue and always come with it
            kept_hosts = tuple(h for h in b.hosts if hosts is None or h in hosts)
            batches.append(PlannedBatch(b.number, kept_hosts, steps))
    return replace(item, batches=tuple(batches)) if batches else None


def _cut_step(step: PlannedStep, sel: Selection, hosts: set[str] | None) -> PlannedStep | None:
    if not _kept(step, sel):
        return None
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
