"""Discover steps (SPEC §12): the read-only part of a plan, what they found, and whether
the world still looks the same.

A step marked ``discover: true`` is declared free of side effects by its author:
``plan --check`` runs only those steps, renders what depends on their registered values
concretely, and ``plan --check --out`` stores those values in the saved plan. ``apply``
of that plan runs the discover steps again first and refuses (exit 2, before any other
command) when a value differs: the reviewed plan was made for another world. Pure: the
running happens in ``runbook.review.discovery``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from runbook.errors import InputError
from runbook.model.plan import Plan, PlannedStep
from runbook.model.runbook import Runbook, Step
from runbook.plan.text import compact
from runbook.templating.env import expression_names, template_names
from runbook.templating.partial import attributes

# What a stored value holds and what is compared: what a template can read of it.
COMPARED = ("status", "rc", "stdout", "stderr")


def check_discover_steps(runbook: Runbook) -> None:
    """A discover step may read only what other discover steps registered: it runs in
    ``plan --check``, where nothing else has run. Raises ``InputError`` (exit 2) at the
    template that reads another step's register."""
    others: dict[str, str] = {}  # register → the non-discover step that sets it
    for step in runbook.all_steps():
        if step.discover:
            for field, source in _templates(step):
                read = _reads(source, field in ("when", "until"), frozenset(others))
                if read:
                    name = sorted(read)[0]
                    raise InputError(
                        f"a discover step reads {name!r}, registered by {others[name]!r}, "
                        "which is not a discover step: plan --check could not run it "
                        "(mark that step discover: true, if it changes nothing)",
                        step.field_positions.get(field) or step.position,
                        step=step.name,
                    )
        if step.register is not None and not step.discover:
            others.setdefault(step.register, step.name)


def _templates(step: Step) -> Iterable[tuple[str, str]]:
    if step.run is not None:
        yield "run", step.run
    for key, value in step.env.items():
        yield f"env.{key}", value
    if step.when is not None:
        yield "when", step.when
    if step.spec.until is not None:
        yield "until", step.spec.until


def _reads(source: str, expression: bool, registers: frozenset[str]) -> frozenset[str]:
    """The registered names a template reads: by name, or through ``hostvars``."""
    names = expression_names(source) if expression else template_names(source)
    read = names & registers
    if "hostvars" in names:
        read |= attributes(source, expression) & registers
    return read


def discovery_plan(plan: Plan) -> Plan | None:
    """The plan's discover steps alone, in order (a group's, one step of all its
    batches), or None when it has none."""
    steps: dict[str, PlannedStep] = {}
    for step in plan.leaf_steps():
        if not step.discover:
            continue
        seen = steps.get(step.name)
        if seen is None:
            steps[step.name] = replace(step, group=None, batch=None)
        else:  # the next batch of a group's discover step
            steps[step.name] = replace(seen, batches=seen.batches + step.batches)
    if not steps:
        return None
    return replace(plan, steps=tuple(steps.values()))


def discover_registers(plan: Plan) -> frozenset[str]:
    """The names the plan's discover steps register."""
    return frozenset(s.register for s in plan.leaf_steps() if s.discover and s.register)


def later_registers(plan: Plan) -> frozenset[str]:
    """The names registered by steps that are not discover steps."""
    return frozenset(s.register for s in plan.leaf_steps() if not s.discover and s.register)


@dataclass(frozen=True)
class Discovered:
    """What one discover step registered, per host: ``status``, ``rc``, ``stdout`` and
    ``stderr`` as the journal keeps them (secrets as ``((secret:NAME))`` tokens)."""

    step: str
    register: str
    values: Mapping[str, Mapping[str, Any]]  # host → value

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "register": self.register,
            "hosts": {h: dict(v) for h, v in self.values.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Discovered:
        return cls(str(d["step"]), str(d["register"]), dict(d["hosts"]))

    @classmethod
    def of(
        cls, step: str, register: str, hosts: Iterable[str], value: Mapping[str, Any]
    ) -> Discovered:
        """From a registered value: the compared fields only."""
        kept = {k: value.get(k) for k in COMPARED}
        return cls(step, register, dict.fromkeys(hosts, kept))


def stored_discovery(saved: Mapping[str, Any]) -> tuple[Discovered, ...]:
    """What a saved plan's discover steps found when ``plan --check --out`` made it."""
    return tuple(Discovered.from_dict(d) for d in saved.get("discovery", {}).get("values", ()))


def merged(found: Iterable[Discovered]) -> list[Discovered]:
    """One entry per step, in the order they came, its hosts together in name order
    (``pg2`` before ``pg10``): a saved plan's bytes do not depend on which host answered
    first."""
    out: dict[str, Discovered] = {}
    for d in found:
        seen = out.get(d.step)
        out[d.step] = d if seen is None else replace(seen, values={**seen.values, **d.values})
    return [
        replace(d, values={h: d.values[h] for h in sorted(d.values, key=_natural)})
        for d in out.values()
    ]


def _natural(name: str) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def stale(planned: Iterable[Discovered], found: Iterable[Discovered]) -> list[str]:
    """Every difference between the values a saved plan was made with and the values the
    discover steps find now, one message each: ``pg1 'Find the primary' printed
    'replica', the plan has 'primary'``. Only hosts discovered now are compared (a
    ``--limit`` narrows both)."""
    now = {(d.step, h): v for d in found for h, v in d.values.items()}
    hosts_now = {h for d in found for h in d.values}
    differences: dict[tuple[str, str], list[str]] = {}  # (step, what) → hosts
    for d in planned:
        for host, old in d.values.items():
            if host not in hosts_now:
                continue
            new = now.get((d.step, host))
            changed = [k for k in COMPARED if new is None or old.get(k) != new.get(k)]
            if changed:  # the first says it: a failed status changes rc and stdout too
                what = _difference(changed[0], old, new)
                differences.setdefault((d.step, what), []).append(host)
    # Hosts with the same difference together (a run_once step's value is every host's).
    return [f"{compact(hosts)} {step!r} {what}" for (step, what), hosts in differences.items()]


def _difference(key: str, old: Mapping[str, Any], new: Mapping[str, Any] | None) -> str:
    if new is None:
        return "has no value now, the plan has one"
    was, now = old.get(key), new.get(key)
    return {
        "status": f"was {now}, the plan has {was}",
        "rc": f"exited {now}, the plan has {was}",
        "stdout": f"printed {now!r}, the plan has {was!r}",
        "stderr": f"printed {now!r} on stderr, the plan has {was!r}",
    }[key]
