"""A loop's items at run time (SPEC §11): in order on each host, hosts in parallel.

The runner starts every host's first command at once; ``Chains`` holds each host's
later items back until the one before it ended: ok (or skipped by its own ``when``), and
the next starts; failed, and the host's remaining items are ``skipped``; cancelled (a
halt), and they are cancelled. Each item has its own result (journaled, resumable one
by one); when a host's items are over, the step's ``register`` gets ``results`` (each
item's registered value, with its ``item``) and the overall ``status``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runbook.model.command import Command, CommandResult, Status
from runbook.run.values import register_value

Value = dict[str, Any]


@dataclass
class _Chain:
    """One host's items: those not started yet, and each ended one's registered value."""

    todo: deque[Command] = field(default_factory=deque)
    results: dict[int, Value] = field(default_factory=dict)
    items: dict[int, Any] = field(default_factory=dict)
    ran: bool = False  # an item ran in this run (not every one decided by --resume)


class Chains:
    """The commands of one step (or batch), as the runner starts them."""

    def __init__(self, commands: Iterable[Command]) -> None:
        self.first: list[Command] = []
        self._chains: dict[str, _Chain] = {}
        for c in commands:
            chain = self._chains.get(c.host.name) if c.item is not None else None
            if chain is not None:
                chain.todo.append(c)
                chain.items[c.item.index] = c.item.value  # type: ignore[union-attr]
                continue
            if c.item is not None:
                self._chains[c.host.name] = _Chain(items={c.item.index: c.item.value})
            self.first.append(c)

    def expanded(self, items: list[Command]) -> Command:
        """A loop known only at run time, expanded: its first item starts now."""
        host = items[0].host.name
        self._chains[host] = _Chain(
            todo=deque(items[1:]), items={c.item.index: c.item.value for c in items if c.item}
        )
        return items[0]

    def after(
        self, result: CommandResult, value: Value, fresh: bool
    ) -> tuple[Command | None, list[CommandResult]]:
        """An item ended (``value``: what it registers; ``fresh``: it ran in this run):
        the host's next item to start, or the results of those it will not run."""
        chain = self._chains[result.host]
        assert result.item is not None
        chain.results[result.item] = value
        chain.ran |= fresh
        if result.status is Status.CANCELLED or result.failed:
            status = Status.CANCELLED if result.status is Status.CANCELLED else Status.SKIPPED
            why = (
                result.error
                if status is Status.CANCELLED
                else f"item {result.item + 1} {result.status.value}"
            )
            rest = [CommandResult.decided(c, status, why) for c in chain.todo]
            chain.todo.clear()
            return None, rest
        return (chain.todo.popleft() if chain.todo else None), []

    def record(self, result: CommandResult, value: Value) -> None:
        """An item the host will not run (``after`` decided it), for ``results``."""
        assert result.item is not None
        self._chains[result.host].results[result.item] = value

    def done(self, host: str) -> bool:
        chain = self._chains.get(host)
        return chain is not None and not chain.todo

    def registered(self, host: str, value: Callable[[Value, Any], Value]) -> Value | None:
        """The loop's registered value for ``host`` once its items are over, or None
        when every item was decided by ``--resume`` (its restored value stands)."""
        chain = self._chains[host]
        if not chain.ran:
            return None
        results = [value(chain.results[i], chain.items.get(i)) for i in sorted(chain.results)]
        return {"status": loop_status([r.get("status", "") for r in results]), "results": results}


def item_value(
    result: CommandResult,
    register: str | None,
    value_of: Callable[[str, str], Any],
    fresh: bool,
) -> Value:
    """What an item registers; for one ok in the earlier run (``fresh`` False), what it
    registered then (restored), as far as the journal has it."""
    if not fresh and register is not None and result.item is not None:
        restored = value_of(result.host, register)
        results = restored.get("results") if isinstance(restored, dict) else None
        if isinstance(results, list) and result.item < len(results):
            earlier = results[result.item]
            if isinstance(earlier, dict):
                return {k: v for k, v in earlier.items() if k != "item"}
    return register_value(result)


def loop_status(statuses: list[str]) -> str:
    """A loop's overall status: its failing item's; else ok when an item ran ok;
    skipped when every item was skipped (cancelled when they were)."""
    failed = next((s for s in statuses if Status(s).is_failure), None)
    if failed is not None:
        return failed
    if Status.OK.value in statuses:
        return Status.OK.value
    if statuses and all(s == Status.CANCELLED.value for s in statuses):
        return Status.CANCELLED.value
    return Status.SKIPPED.value
