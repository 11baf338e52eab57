"""Runbook × Inventory → Plan: every command on every host, rendered before anything runs.

Pure: no I/O and no execution, so ``plan`` and ``apply`` cannot disagree, and a template
error in step 9 stops the run before step 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from runbook.command import Command
from runbook.errors import InputError, TemplateError, UsageError
from runbook.inventory import Inventory
from runbook.model import Host, Runbook, Step
from runbook.plan import Plan, PlannedStep, Selection
from runbook.templating import check_syntax, evaluate, expression_names, render

Context = dict[str, Any]


def make_plan(
    runbook: Runbook,
    inventory: Inventory,
    extra_vars: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    selection: Selection | None = None,
) -> Plan:
    """Render every step for every host. Raises ``InputError`` for any problem."""
    selection = selection or Selection()
    extra_vars = extra_vars or {}
    secrets = secrets or {}
    for name in secrets:
        if name in runbook.vars or name in extra_vars:
            spec = next(s for s in runbook.secrets if s.name == name)
            raise InputError(f"secret {name!r} has the same name as a variable", spec.position)
    limited = _limit(inventory, selection.limit, runbook.path)
    steps = _select_steps(runbook, selection)
    groups = {g: list(m) for g, m in inventory.groups.items()}
    rb_facts = {"name": runbook.name, "path": runbook.path}
    base_cache: dict[str, dict[str, Any]] = {}

    def base(host: Host) -> dict[str, Any]:
        ctx = base_cache.get(host.name)
        if ctx is None:
            ctx = {**runbook.vars, **host.vars, **extra_vars, **secrets}
            ctx.update(host=host.facts(), groups=groups, runbook=rb_facts)
            base_cache[host.name] = ctx
        return ctx

    planned = []
    for step in steps:
        for field_name, source in (("run", step.run), ("until", step.spec.until)):
            if source is None:
                continue
            try:
                check_syntax(source, step.field_positions.get(field_name), field_name == "until")
            except TemplateError as exc:
                exc.step = step.name
                raise
        planned.append(_plan_step(step, runbook, inventory, limited, base))
    return Plan(
        name=runbook.name,
        source=runbook.path,
        digest=runbook.digest,
        steps=tuple(planned),
        secret_names=tuple(secrets),
    )


def _limit(inventory: Inventory, limit: str | None, path: str) -> set[str] | None:
    if not limit:
        return None
    try:
        hosts = inventory.resolve(limit)
    except InputError as exc:
        raise UsageError(f"--limit {limit!r}: {exc.message}") from None
    if not hosts:
        raise InputError(f"--limit {limit!r} matches no host")
    return {h.name for h in hosts}


def _select_steps(runbook: Runbook, sel: Selection) -> list[Step]:
    steps = list(runbook.steps)
    if sel.start_at:
        names = [s.name for s in steps]
        if sel.start_at not in names:
            raise InputError(f"--start-at: no step named {sel.start_at!r}")
        steps = steps[names.index(sel.start_at) :]
    if sel.tags:
        steps = [s for s in steps if set(s.tags) & set(sel.tags) or "always" in s.tags]
    if sel.skip_tags:
        steps = [s for s in steps if not set(s.tags) & set(sel.skip_tags)]
    return steps


def _plan_step(
    step: Step,
    runbook: Runbook,
    inventory: Inventory,
    limited: set[str] | None,
    base: Callable[[Host], Context],
) -> PlannedStep:
    hosts = _step_hosts(step, inventory, limited)
    step_facts = {"name": step.name, "tags": list(step.tags)}
    commands = [_command(step, runbook, host, {**base(host), "step": step_facts}) for host in hosts]
    return PlannedStep(
        name=step.name,
        position=step.position,
        batches=batches(commands, step.serial),
        spec=step.spec,
        hosts=step.hosts if not step.local else "localhost",
        max_failures=_count(step.spec.max_failures, len(commands)),
        confirm=step.confirm,
        tags=step.tags,
        run_once=step.run_once,
        local=step.local,
        serial=step.serial,
    )


def _step_hosts(step: Step, inventory: Inventory, limited: set[str] | None) -> list[Host]:
    if step.local:
        # Always the controller, even if the inventory reaches a "localhost" over SSH.
        known = inventory.hosts.get("localhost")
        return [replace(known, connection="local") if known else inventory.controller]
    where = step.field_positions.get("hosts", step.position)
    hosts = inventory.resolve(step.hosts, where, step.name)
    if not hosts and not inventory.hosts:
        raise InputError(
            "no hosts to run on: the runbook defines none (add `hosts:` or `inventory:`, "
            "or name `localhost`)",
            where,
            step=step.name,
        )
    if limited is not None:
        hosts = [h for h in hosts if h.name in limited]
    return hosts[:1] if step.run_once else hosts


def _command(step: Step, runbook: Runbook, host: Host, ctx: Context) -> Command:
    """Render one step for one host; every error names the step and the host."""
    pos = step.field_positions
    try:
        env = _env(step, runbook, ctx)
        skip = None
        if step.when is not None and not evaluate(step.when, ctx, pos.get("when")):
            skip = f"when: {step.when}"
        cmd = render(step.run, ctx, pos.get("run")) if skip is None else step.run
        until_vars = _until_vars(step, ctx)
        _check_nul(step, runbook, cmd, env)
    except InputError as exc:
        exc.step, exc.host = step.name, host.name
        raise
    return Command(
        step=step.name,
        host=host,
        cmd=cmd,
        env=env,
        spec=step.spec,
        until_vars=until_vars,
        skip_reason=skip,
    )


def _env(step: Step, runbook: Runbook, ctx: Context) -> dict[str, str]:
    """Runbook env, then the step's (which may read the runbook's as ``env``)."""
    pos = step.field_positions
    env = {k: render(v, ctx, runbook.position("env", k)) for k, v in runbook.env.items()}
    ctx["env"] = env
    env.update(
        {k: render(v, ctx, pos.get(f"env.{k}", pos.get("env"))) for k, v in step.env.items()}
    )
    ctx["env"] = env
    return env


def _check_nul(step: Step, runbook: Runbook, cmd: str, env: dict[str, str]) -> None:
    pos = step.field_positions
    if "\0" in cmd:
        raise InputError(
            "the rendered command contains a NUL byte (from a variable?)", pos.get("run")
        )
    for k, v in env.items():
        if "\0" in v:
            where = (
                pos.get(f"env.{k}", pos.get("env")) if k in step.env else runbook.position("env", k)
            )
            raise InputError(f"env {k}: value contains a NUL byte", where)


RESULT_NAMES = frozenset({"rc", "stdout", "stderr"})


def _until_vars(step: Step, ctx: dict[str, Any]) -> dict[str, Any]:
    """Bind the vars ``until`` reads now; an unknown name is an error now, not after the
    command ran."""
    until = step.spec.until
    if until is None:
        return {}
    names = expression_names(until) - RESULT_NAMES
    for name in sorted(names):
        if name not in ctx:
            raise TemplateError(
                f"'{name}' is undefined in until (it sees vars, rc, stdout, stderr)",
                step.field_positions.get("until"),
            )
    return {n: ctx[n] for n in sorted(names)}


def _count(spec: int | str, total: int) -> int:
    """``3`` → 3; ``"25%"`` → floor of 25% of ``total`` (as Ansible's max_fail_percentage)."""
    if isinstance(spec, str):
        return math.floor(float(spec.rstrip("%")) * total / 100)
    return spec


def batches(commands: list[Command], serial: Any) -> tuple[tuple[Command, ...], ...]:
    """Split into rolling batches. A list of sizes is used in turn, the last one repeating."""
    if not commands:
        return ()
    if serial is None:
        return (tuple(commands),)
    sizes = serial if isinstance(serial, list) else [serial]
    out, i, k = [], 0, 0
    while i < len(commands):
        spec = sizes[min(k, len(sizes) - 1)]
        n = max(1, _count(spec, len(commands)))
        out.append(tuple(commands[i : i + n]))
        i, k = i + n, k + 1
    return tuple(out)
