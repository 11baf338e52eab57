"""Which steps and hosts ``--limit``, ``--tags``, ``--skip-tags`` and ``--start-at`` keep
(SPEC §4, §6, §8): one rule for a runbook being planned and for a plan that is not
rendered again (a saved plan, a resumed run: ``narrow``).

Inner steps inherit their group's tags (the loader applied them); a group is kept when
any of its inner steps is. ``--start-at`` may name an inner step: the run then starts
inside the group's first batch only, and later batches run whole. Nothing before the
``--start-at`` step runs, even when tags leave that step itself out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from runbook.errors import InputError, UsageError
from runbook.inventory.build import Inventory
from runbook.model.plan import Selection


class Selectable(Protocol):
    """A step as selection sees it: a runbook's ``Step`` or a plan's step or group."""

    @property
    def name(self) -> str: ...

    @property
    def tags(self) -> tuple[str, ...]: ...


T = TypeVar("T", bound=Selectable)
# A group's inner steps, in order; ``None`` for a step that is not a group.
InnerOf = Callable[[T], Sequence[Selectable] | None]


@dataclass(frozen=True)
class Selected(Generic[T]):
    item: T
    inner: tuple[str, ...] = ()  # a group's kept inner steps, by name
    # --start-at an inner step: what the first batch runs instead (None: ``inner``).
    first_batch: tuple[str, ...] | None = None

    def batch_steps(self, first: bool) -> tuple[str, ...]:
        """The inner step names a batch of this group runs."""
        return self.first_batch if first and self.first_batch is not None else self.inner


def select(
    items: Sequence[T], sel: Selection, inner_of: InnerOf[T], of: str = ""
) -> list[Selected[T]]:
    """The items ``sel`` keeps, in order; ``of`` ends the error messages (" of the plan").

    Raises ``UsageError`` when ``--start-at`` names no step or a ``--tags`` value matches
    none (a selection that silently selects nothing runs nothing)."""
    chosen, start_inner = _from_start(items, sel.start_at, inner_of, of)
    _check_tags(items, chosen, sel, inner_of, of)
    out: list[Selected[T]] = []
    for item in chosen:
        inner = inner_of(item)
        if inner is None:
            if kept(item.tags, sel):
                out.append(Selected(item))
            continue
        names = tuple(s.name for s in inner if kept(s.tags, sel))
        first = None
        if start_inner is not None and item is chosen[0]:
            at = [s.name for s in inner].index(start_inner)
            later = {s.name for s in inner[at:]}
            first = tuple(n for n in names if n in later)
        if names:
            out.append(Selected(item, names, first))
    return out


def limited(inventory: Inventory, limit: str | None, of: str = "") -> set[str] | None:
    """The host names ``--limit`` keeps (``None``: no limit). Raises ``UsageError`` for a
    bad pattern or one that matches no host: a limit that selects nothing runs nothing."""
    if limit is None:
        return None
    try:
        hosts = inventory.resolve(limit)
    except InputError as exc:
        raise UsageError(f"--limit {limit!r}: {exc.message}") from None
    if not hosts:
        raise UsageError(f"--limit {limit!r} matches no host{of}")
    return {h.name for h in hosts}


def kept(step_tags: tuple[str, ...], sel: Selection) -> bool:
    """A step with these tags is run: ``--tags`` (or ``always``), and no ``--skip-tags``."""
    tags = set(step_tags)
    if sel.tags and not (tags & set(sel.tags) or "always" in tags):
        return False
    return not (sel.skip_tags and tags & set(sel.skip_tags))


def _from_start(
    items: Sequence[T], start_at: str | None, inner_of: InnerOf[T], of: str
) -> tuple[list[T], str | None]:
    """The items from ``--start-at`` on, and the inner step it names (if it names one)."""
    if start_at is None:
        return list(items), None
    for i, item in enumerate(items):
        if item.name == start_at:
            return list(items[i:]), None
        if any(s.name == start_at for s in inner_of(item) or ()):
            return list(items[i:]), start_at
    raise UsageError(f"--start-at: no step named {start_at!r}{of}")


def _check_tags(
    items: Sequence[T], chosen: list[T], sel: Selection, inner_of: InnerOf[T], of: str
) -> None:
    """Each ``--tags`` value must select a step: one found nowhere, or only before
    ``--start-at``, selects nothing and is refused."""

    def tags(among: Sequence[T]) -> set[str]:
        inner = {t for i in among for s in inner_of(i) or () for t in s.tags}
        return inner | {t for i in among for t in i.tags}

    known, reached = tags(items), tags(chosen)
    for tag in sel.tags:
        if tag in reached:
            continue
        if tag in known:
            raise UsageError(f"--tags {tag!r} matches no step from --start-at {sel.start_at!r} on")
        raise UsageError(
            f"--tags {tag!r} matches no step{of} (tags: {', '.join(sorted(known)) or 'none'})"
        )
