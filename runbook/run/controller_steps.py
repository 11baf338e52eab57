"""``set`` and ``assert`` at run time (SPEC §11): evaluated on the controller, in the
runner's thread, in a fraction of a millisecond — no command, no worker, no host.

A step decided at plan time takes its planned outcome; one that reads a run-time value
is evaluated now from the values registered so far. A ``set`` gives the host its values
(every targeted host's, once with ``run_once``); an ``assert`` that does not hold fails
the host with its message. A render error fails the host, as a deferred command's
does, never exit 2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from runbook.errors import TemplateError
from runbook.model.command import Command, CommandResult, Status
from runbook.model.controller import Assertion, SetValues
from runbook.run.values import RunValues
from runbook.templating.controlled import checked, computed
from runbook.templating.env import evaluate
from runbook.templating.render import withheld


@dataclass(frozen=True)
class Evaluated:
    """What a ``set`` or ``assert`` gave one host: its result; a ``set``'s values (real,
    to render with) and how they may be shown and journaled (stand-ins for anything
    computed from a secret)."""

    result: CommandResult
    values: dict[str, Any] | None = None
    shown: dict[str, Any] | None = None


def evaluate_on_controller(command: Command, values: RunValues) -> Evaluated:
    started = time.time()
    try:
        controlled, shown, skip = _decide(command, values)
    except TemplateError as exc:
        return Evaluated(_result(command, Status.FAILED, started, error=str(exc)))
    if skip is not None:
        return Evaluated(_result(command, Status.SKIPPED, started, error=skip))
    if isinstance(controlled, Assertion):
        if controlled.held:
            return Evaluated(_result(command, Status.OK, started))
        return Evaluated(_result(command, Status.FAILED, started, error=controlled.failure))
    assert isinstance(controlled, SetValues) and isinstance(shown, SetValues)
    result = _result(command, Status.OK, started, stdout=shown.summary() + "\n")
    return Evaluated(result, controlled.values, shown.values)


def recomputed(cmd: Command) -> bool:
    """A ``set`` that reads a secret: journaled as its stand-ins made it, so ``--resume``
    evaluates it again rather than restore it (it runs nothing on a host)."""
    t = cmd.templates
    return isinstance(cmd.controlled, SetValues) and t is not None and bool(t.secrets)


def derived_strings(values: dict[str, Any], shortest: int = 4) -> list[str]:
    """The texts inside values a ``set`` computed from a secret, to be masked as the
    secret is (shorter ones would blank ordinary output)."""
    out: list[str] = []
    todo: list[Any] = list(values.values())
    while todo:
        v = todo.pop()
        if isinstance(v, str) and len(v) >= shortest:
            out.append(v)
        elif isinstance(v, dict):
            todo += v.values()
        elif isinstance(v, list):
            todo += v
    return out


def _decide(
    command: Command, values: RunValues
) -> tuple[SetValues | Assertion, SetValues | Assertion, str | None]:
    """(the outcome, the outcome as it may be shown, why it was skipped)."""
    controlled = command.controlled
    assert controlled is not None
    t = command.templates
    if t is None:  # decided at plan time
        return controlled, controlled, None
    ctx = values.context(command, real=True)
    try:
        if t.when is not None and not evaluate(t.when, ctx, t.positions.get("when")):
            return controlled, controlled, f"when: {t.when}"
        done = _evaluated(controlled, ctx, t.positions)
    except TemplateError as exc:
        raise (withheld(exc, t.secrets) if t.secrets else exc) from None
    if not t.secrets:
        return done, done, None
    # What a secret made is shown as the stand-ins make it (a filter may have
    # transformed the secret beyond what masking finds).
    return done, _evaluated(controlled, values.context(command, real=False), t.positions), None


def _evaluated(
    controlled: SetValues | Assertion, ctx: dict[str, Any], positions: Any
) -> SetValues | Assertion:
    if isinstance(controlled, SetValues):
        return computed(controlled, ctx, positions)
    return checked(controlled, ctx, positions)


def _result(
    command: Command,
    status: Status,
    started: float,
    *,
    error: str | None = None,
    stdout: str = "",
) -> CommandResult:
    return CommandResult(
        command.step,
        command.host.name,
        status,
        stdout=stdout,
        started=started,
        finished=time.time(),
        error=error,
        item=command.item_index,
    )
