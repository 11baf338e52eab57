"""Which steps ``--tags``, ``--skip-tags`` and ``--start-at`` keep (SPEC §4, §8).

Inner steps inherit their group's tags (the loader applied them); a group is kept when
any of its inner steps is. ``--start-at`` may name an inner step: the run then starts
inside the group's first batch only, and later batches run whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from runbook.errors import UsageError
from runbook.model.plan import Selection
from runbook.model.runbook import Step


@dataclass(frozen=True)
class Selected:
    step: Step
    inner: tuple[Step, ...] = ()  # a group's kept inner steps
    start_inner: str | None = None  # --start-at an inner step: where batch 1 starts


def select(steps: tuple[Step, ...], sel: Selection) -> list[Selected]:
    """Raises ``UsageError`` when ``--start-at`` names no step or a ``--tags`` value
    matches none (a selection that silently selects nothing runs nothing)."""
    chosen, start_inner = _from_start(steps, sel.start_at)
    _check_tags(steps, chosen, sel)
    out = []
    for step in chosen:
        if not step.is_group:
            if _kept(step, sel):
                out.append(Selected(step))
            continue
        inner = tuple(s for s in step.steps if _kept(s, sel))
        if inner:
            first = start_inner if start_inner in {s.name for s in inner} else None
            out.append(Selected(step, inner, first if step is chosen[0] else None))
    return out


def _from_start(steps: tuple[Step, ...], start_at: str | None) -> tuple[list[Step], str | None]:
    if not start_at:
        return list(steps), None
    for i, step in enumerate(steps):
        if step.name == start_at:
            return list(steps[i:]), None
        if any(s.name == start_at for s in step.steps):
            return list(steps[i:]), start_at
    raise UsageError(f"--start-at: no step named {start_at!r}")


def _kept(step: Step, sel: Selection) -> bool:
    return kept(step.tags, sel)


def kept(step_tags: tuple[str, ...], sel: Selection) -> bool:
    """A step with these tags is run: ``--tags`` (or ``always``), and no ``--skip-tags``."""
    tags = set(step_tags)
    if sel.tags and not (tags & set(sel.tags) or "always" in tags):
        return False
    return not (sel.skip_tags and tags & set(sel.skip_tags))


def _check_tags(steps: tuple[Step, ...], chosen: list[Step], sel: Selection) -> None:
    known = {t for step in steps for s in step.walk() for t in s.tags}
    reached = {t for step in chosen for s in step.walk() for t in s.tags}
    check_tags(sel, known, reached, f" (tags: {', '.join(sorted(known)) or 'none'})")


def check_tags(sel: Selection, known: set[str], reached: set[str], nowhere: str) -> None:
    """Each ``--tags`` value must select a step: one found nowhere (``nowhere`` ends that
    message), or only before ``--start-at``, selects nothing and is refused."""
    for tag in sel.tags:
        if tag in reached:
            continue
        if tag in known:
            raise UsageError(f"--tags {tag!r} matches no step from --start-at {sel.start_at!r} on")
        raise UsageError(f"--tags {tag!r} matches no step{nowhere}")
