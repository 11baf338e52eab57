"""Runbook × Inventory → Plan: every command on every host, rendered before anything runs.

Nothing runs here, and the only files read are the ones a copy sends (to show their size
and digest), so ``plan`` and ``apply`` cannot disagree, and a template error in step 9
stops the run before step 1. Two kinds of command cannot be rendered
here, and are kept as their templates plus the values they read (``Templates``): one that
reads a registered value (known only after an earlier step ran: *deferred*) and one that
reads a secret (rendered with the real value only in memory at apply time; everything
shown or stored renders it with a stand-in). Every name they read is still checked now.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from dataclasses import replace
from typing import Any

from runbook.errors import InputError, InventoryError, TemplateError
from runbook.inventory.build import Inventory
from runbook.inventory.hosts import resolve_host
from runbook.model.command import Command, Templates
from runbook.model.plan import Plan, PlannedBatch, PlannedGroup, PlannedStep, Selection
from runbook.model.runbook import Connection, Host, Runbook, Step
from runbook.plan.select import Selected, limited, select
from runbook.plan.transfers import TransferPlanner
from runbook.templating.env import check_syntax, evaluate, expression_names, template_names
from runbook.templating.env import render as render_template
from runbook.templating.lazy import first_template, has_templates, resolve_templates, template_reads
from runbook.templating.render import STAND_IN, names_read, render_env, render_parts, undefined

Context = MutableMapping[str, Any]
RESULT_NAMES = frozenset({"rc", "stdout", "stderr"})
RESERVED = frozenset({"host", "groups", "env", "step", "runbook", "hostvars"}) | RESULT_NAMES


def make_plan(
    runbook: Runbook,
    inventory: Inventory,
    extra_vars: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    selection: Selection | None = None,
) -> Plan:
    """Render every step for every host. Raises ``InputError`` for any problem."""
    planner = _Planner(runbook, inventory, extra_vars or {}, tuple(secrets or {}), selection)
    chosen = select(runbook.steps, planner.selection, _inner)
    items = [planner.item(c) for c in chosen]
    return Plan(
        name=runbook.name,
        source=runbook.path,
        digest=runbook.digest,
        steps=tuple(items),
        secret_names=tuple(secrets or {}),
        hostvars=planner.hostvars(),
        files=runbook.files,
    )


class _Planner:
    """The state of one planning pass: contexts per host, registers seen so far."""

    def __init__(
        self,
        runbook: Runbook,
        inventory: Inventory,
        extra_vars: dict[str, Any],
        secrets: tuple[str, ...],
        selection: Selection | None,
    ) -> None:
        self.runbook = runbook
        self.inventory = inventory
        self.extra = extra_vars
        self.secrets = frozenset(secrets)
        self.selection = selection or Selection()
        self.registered: set[str] = set()
        self.reads_hostvars = False
        self.limited = limited(inventory, self.selection.limit)
        self._base: dict[str, dict[str, Any]] = {}
        self._facts: dict[str, dict[str, Any]] = {}
        self._templated: dict[str, frozenset[str]] = {}
        self._resolved: dict[str, dict[str, Any]] = {}
        self._runbook_env: dict[str, dict[str, str]] = {}
        self._hosts: dict[str, Host] = {}
        self._parts: dict[str, tuple[Templates, frozenset[str]]] = {}
        self._groups = {g: list(m) for g, m in inventory.groups.items()}
        self._check_names()
        self.files = TransferPlanner(self)

    # -- contexts ------------------------------------------------------------------------

    def _check_names(self) -> None:
        rb = self.runbook
        for spec in rb.secrets:
            if spec.name in rb.vars or spec.name in self.extra:
                raise InputError(
                    f"secret {spec.name!r} has the same name as a variable", spec.position
                )
        taken = set(rb.vars) | set(self.extra) | self.secrets | RESERVED
        taken |= {k for h in self.inventory.hosts.values() for k in h.vars}
        for step in rb.all_steps():
            taken_here = taken | set(step.vars)
            if step.register is not None and step.register in taken_here:
                raise InputError(
                    f"register {step.register!r} has the same name as a variable; "
                    "choose another name",
                    step.field_positions.get("register", step.position),
                    step=step.name,
                )

    def base(self, host: Host) -> dict[str, Any]:
        ctx = self._base.get(host.name)
        if ctx is None:
            rb = self.runbook
            ctx = {**rb.vars, **host.vars, **self.extra}
            ctx.update(dict.fromkeys(self.secrets, STAND_IN))
            ctx.update(
                host=host.facts(), groups=self._groups, runbook={"name": rb.name, "path": rb.path}
            )
            self._base[host.name] = ctx
        return ctx

    def context(self, step: Step, host: Host, reads: frozenset[str]) -> Context:
        """A command's template context: the host's (copied: a flat dict of references is
        cheaper to build than any layering is to read), the step's facts, include vars."""
        ctx = {**self.base(host), **self._step_facts(step)}
        if step.vars:  # include vars: over host vars, under -e and secrets
            ctx.update(step.vars)
            ctx.update(self.extra)
            ctx.update(dict.fromkeys(self.secrets, STAND_IN))
        templated = self._templated_names(host)
        if step.vars:
            templated |= {k for k, v in step.vars.items() if has_templates(v)}
        if reads & templated:
            self._resolve_inventory_templates(ctx, reads & templated, host, bool(step.vars))
        return ctx

    def _step_facts(self, step: Step) -> dict[str, Any]:
        facts = self._facts.get(step.name)
        if facts is None:
            facts = self._facts[step.name] = {"step": {"name": step.name, "tags": list(step.tags)}}
        return facts

    def _templated_names(self, host: Host) -> frozenset[str]:
        """Vars of this host that hold inventory templates (an -e value of the same name
        wins over them, and is never a template)."""
        found = self._templated.get(host.name)
        if found is None:
            found = frozenset(
                k for k, v in host.vars.items() if k not in self.extra and has_templates(v)
            )
            self._templated[host.name] = found
        return found

    def _resolve_inventory_templates(
        self, ctx: Context, names: frozenset[str], host: Host, layered: bool
    ) -> None:
        """``{{ }}`` in inventory (and include) values is rendered when a template reads
        the value (lazily, as Ansible does), once per host. Such a template may not read a
        secret or a registered value: it would be rendered here, with neither known."""
        later = self.secrets | self.registered | {"hostvars"}
        cache = self._resolved.setdefault(host.name, {}) if not layered else {}
        for name in sorted(names):
            if name in cache:
                ctx[name] = cache[name]
                continue
            value = ctx[name]
            for bad in sorted(template_reads(value, ctx) & later):
                where = first_template(value)
                raise InventoryError(
                    f"inventory value {name!r} reads {bad!r}, which is known only at apply "
                    "time; read it in the step instead",
                    where.position if where is not None else None,
                )
            ctx[name] = cache[name] = resolve_templates(value, ctx, render_template)

    def runbook_env(
        self, step: Step, host: Host, ctx: Context, parts: Templates
    ) -> dict[str, str] | None:
        """The runbook's env rendered once per host, unless it reads the step or include
        vars (then per command)."""
        if step.vars or any("step" in template_names(v) for _, v in parts.env):
            return None
        env = self._runbook_env.get(host.name)
        if env is None:
            env = self._runbook_env[host.name] = render_env(parts.env, ctx, parts.positions)
        return env

    def host(self, host: Host) -> Host:
        """The host with the fields templated ``ansible_*`` vars set, and its become."""
        done = self._hosts.get(host.name)
        if done is None:
            done = self._hosts[host.name] = resolve_host(host, self.base(host), render_template)
        return done

    def with_become(self, step: Step, host: Host) -> Step:
        """The step with ``host``'s inventory become settings applied."""
        return _with_host_become(step, host)

    def hostvars(self) -> dict[str, dict[str, Any]]:
        if not self.reads_hostvars:
            return {}
        rb = self.runbook
        return {h.name: {**rb.vars, **h.vars, **self.extra} for h in self.inventory.hosts.values()}

    # -- steps and groups ----------------------------------------------------------------

    def item(self, chosen: Selected[Step]) -> PlannedStep | PlannedGroup:
        step = chosen.item
        if step.is_group:
            return self.group(chosen)
        self.check_syntax(step)
        hosts = self.hosts(step, None)
        planned = self.step(step, hosts, step.serial)
        return planned

    def group(self, chosen: Selected[Step]) -> PlannedGroup:
        group = chosen.item
        hosts = self.hosts(group, None)
        inner = [s for s in group.steps if s.name in chosen.inner]
        for step in inner:
            self.check_syntax(step)
        sizes = batch_sizes(len(hosts), group.serial)
        batches = []
        start = 0
        registered = set(self.registered)
        for number, size in enumerate(sizes, 1):
            members = hosts[start : start + size]
            start += size
            self.registered = set(registered)  # each batch sees the same names
            names = chosen.batch_steps(first=number == 1)
            todo = [s for s in inner if s.name in names]
            steps = tuple(
                replace(
                    self.step(s, self.hosts(s, members), None),
                    group=group.name,
                    batch=number,
                )
                for s in todo
            )
            batches.append(PlannedBatch(number, tuple(h.name for h in members), steps))
        self.registered = registered | {s.register for s in inner if s.register}
        return PlannedGroup(
            name=group.name,
            position=group.position,
            batches=tuple(batches),
            spec=group.spec,
            hosts=group.hosts or "all",
            max_failures=count(group.spec.max_failures, len(hosts)),
            confirm=group.confirm,
            tags=group.tags,
            serial=group.serial,
            inner=chosen.inner,
        )

    def hosts(self, step: Step, within: list[Host] | None) -> list[Host]:
        """The hosts a step targets: its pattern, within its group's batch if inside one,
        narrowed by ``--limit`` (``run_once`` is applied when commands are made)."""
        if step.local:
            # Always the controller, even if the inventory reaches a "localhost" over SSH.
            known = self.inventory.hosts.get("localhost")
            return [
                replace(known, connection=Connection.LOCAL) if known else self.inventory.controller
            ]
        where = step.field_positions.get("hosts", step.position)
        if within is not None and step.hosts is None:
            return list(within)
        hosts = self.inventory.resolve(step.hosts or "all", where, step.name)
        if not hosts and not self.inventory.hosts:
            raise InputError(
                "no hosts to run on: the runbook defines none (add `hosts:` or `inventory:`, "
                "or name `localhost`)",
                where,
                step=step.name,
            )
        if within is not None:
            names = {h.name for h in within}
            return [h for h in hosts if h.name in names]
        if self.limited is not None:
            hosts = [h for h in hosts if h.name in self.limited]
        return hosts

    def step(self, step: Step, hosts: list[Host], serial: Any) -> PlannedStep:
        targeted = hosts
        if step.local and step.hosts is not None:
            # A local step runs once, on the controller; its register goes to `hosts`.
            targeted = self.hosts(replace(step, local=False), None)
        elif step.run_once:
            hosts = hosts[:1]
        commands = [self.command(step, host) for host in hosts]
        if step.register is not None:
            self.registered.add(step.register)
        return PlannedStep(
            name=step.name,
            position=step.position,
            batches=batches(commands, serial),
            spec=step.spec,
            hosts=(step.hosts or "all") if not step.local else "localhost",
            max_failures=count(step.spec.max_failures, len(commands)),
            confirm=step.confirm,
            tags=step.tags,
            run_once=step.run_once,
            local=step.local,
            serial=serial,
            register=step.register,
            register_hosts=tuple(h.name for h in targeted) if step.register else (),
        )

    def check_syntax(self, step: Step) -> None:
        pos = step.field_positions
        checks = [("run", step.run, False), ("until", step.spec.until, True)]
        checks.append(("when", step.when, True))
        if step.transfer is not None:
            kind = step.transfer.kind
            checks += [(f"{kind}.src", step.transfer.src, False)]
            checks += [(f"{kind}.dest", step.transfer.dest, False)]
        try:
            for name, source, expression in checks:
                if source is not None:
                    check_syntax(source, pos.get(name), expression)
        except TemplateError as exc:
            exc.step = step.name
            raise

    # -- commands ------------------------------------------------------------------------

    def command(self, step: Step, host: Host) -> Command:
        """Render one step for one host; every error names the step and the host."""
        parts, reads = self.parts(step)
        try:
            if step.transfer is not None:
                return self.files.command(step, host)
            until = step.spec.until
            # ``until`` is judged at run time, but the secrets and registered values it
            # reads are bound when the command is rendered: it must be rendered then.
            reads_all = reads | (expression_names(until) if until else frozenset())
            ctx = self.context(step, host, reads_all)
            host = self.host(host)
            step = _with_host_become(step, host)
            secrets = tuple(sorted(reads_all & self.secrets))
            registers = tuple(sorted(reads_all & (self.registered | {"hostvars"})))
            until_vars = self.until_vars(step, ctx)
            if not secrets and not registers:
                done = render_parts(parts, ctx, self.runbook_env(step, host, ctx, parts))
                return _command(step, host, done.cmd, done.env, until_vars, done.skip_reason)
            return self.later(step, host, parts, ctx, until_vars, secrets, registers, reads)
        except InputError as exc:
            exc.step, exc.host = step.name, host.name
            raise

    def parts(self, step: Step) -> tuple[Templates, frozenset[str]]:
        """The step's templates and every name they read (the same for every host: made
        once)."""
        found = self._parts.get(step.name)
        if found is not None:
            return found
        positions = dict(step.field_positions)
        for k in self.runbook.env:
            positions[f"runbook.env.{k}"] = self.runbook.position("env", k)
        parts = Templates(
            run=step.run or "",
            env=tuple(self.runbook.env.items()),
            step_env=tuple(step.env.items()),
            when=step.when,
            positions=positions,
        )
        found = self._parts[step.name] = (parts, names_read(parts))
        return found

    def later(
        self,
        step: Step,
        host: Host,
        parts: Templates,
        ctx: Context,
        until_vars: dict[str, Any],
        secrets: tuple[str, ...],
        registers: tuple[str, ...],
        reads: frozenset[str],
    ) -> Command:
        """A command rendered at apply time: checked now, kept as templates with the
        values they read (``reads``: every name they read)."""
        self.reads_hostvars |= "hostvars" in registers
        known = set(ctx) | self.registered | {"hostvars", "env"}
        _check_defined(parts, known)
        tainted = set(secrets) | set(registers)
        when = parts.when
        if when is not None and not expression_names(when) & tainted:
            if not evaluate(when, ctx, parts.positions.get("when")):
                return _command(step, host, parts.run, {}, until_vars, f"when: {when}")
            when = None  # decided now: true
        values = {
            n: ctx[n]
            for n in sorted(reads)
            if n in ctx and n not in tainted and n != "env" and n not in self.secrets
        }
        templates = replace(
            parts,
            when=when,
            values=values,
            secrets=secrets,
            registers=registers,
            positions={k: p for k, p in parts.positions.items() if _template_field(k)},
        )
        cmd, env = _shown(parts, ctx, set(registers))
        return replace(_command(step, host, cmd, env, until_vars, None), templates=templates)

    def until_vars(self, step: Step, ctx: Context) -> dict[str, Any]:
        """Bind the vars ``until`` reads now; an unknown name is an error now, not after
        the command ran. Secrets and registered values are bound at run time."""
        until = step.spec.until
        if until is None:
            return {}
        names = expression_names(until) - RESULT_NAMES
        later = self.secrets | self.registered | {"hostvars"}
        for name in undefined(frozenset(names - later), ctx):
            raise TemplateError(
                f"'{name}' is undefined in until (it sees vars, registered values, rc, stdout, "
                "stderr)",
                step.field_positions.get("until"),
            )
        return {n: ctx[n] for n in sorted(names) if n in ctx and n not in later}


def _command(
    step: Step,
    host: Host,
    cmd: str,
    env: dict[str, str],
    until_vars: dict[str, Any],
    skip: str | None,
) -> Command:
    return Command(
        step=step.name,
        host=host,
        cmd=cmd if skip is None else (step.run or ""),
        env=env,
        spec=step.spec,
        until_vars=until_vars,
        skip_reason=skip,
    )


def _with_host_become(step: Step, host: Host) -> Step:
    """``ansible_become``/``ansible_become_user`` on a host win over the step's ``become``,
    as Ansible's connection variables win over its keywords."""
    if host.become is None and host.become_user is None:
        return step
    spec = step.spec
    become = spec.become if host.become is None else host.become
    user = host.become_user if host.become_user is not None else spec.become_user
    return replace(step, spec=replace(spec, become=become, become_user=user))


def _template_field(key: str) -> bool:
    return key in ("run", "when", "env") or key.startswith(("env.", "runbook.env."))


def _check_defined(parts: Templates, known: set[str]) -> None:
    """A misspelt name, or one registered only by a later step, is an error now."""
    checks: list[tuple[str, frozenset[str]]] = [("run", template_names(parts.run))]
    checks += [(f"env.{k}", template_names(v)) for k, v in parts.step_env]
    checks += [(f"runbook.env.{k}", template_names(v)) for k, v in parts.env]
    if parts.when is not None:
        checks.append(("when", expression_names(parts.when)))
    for where, names in checks:
        missing = undefined(names, frozenset(known))
        if missing:
            raise TemplateError(
                f"'{missing[0]}' is undefined (not a variable, nor registered by an earlier step)",
                parts.positions.get(where) or parts.positions.get("env"),
            )


def _shown(parts: Templates, ctx: Context, registers: set[str]) -> tuple[str, dict[str, str]]:
    """What a reviewer sees of a command rendered at apply time: a template that reads a
    registered value stays as written; one that reads only secrets is rendered with their
    stand-ins (whatever a filter does to a stand-in, it cannot show the secret)."""
    ctx = dict(ctx)
    pos = parts.positions

    def show(source: str, where: str) -> str:
        if template_names(source) & registers:
            return source
        return render_template(source, ctx, pos.get(where))

    env: dict[str, str] = {}
    try:
        env = {k: show(v, f"runbook.env.{k}") for k, v in parts.env}
        ctx["env"] = env
        env = {**env, **{k: show(v, f"env.{k}") for k, v in parts.step_env}}
        ctx["env"] = env
        return show(parts.run, "run"), env
    except InputError:  # fails only with the stand-ins: shown as written, checked at apply
        return parts.run, dict((*parts.env, *parts.step_env))


def _inner(step: Step) -> tuple[Step, ...] | None:
    return step.steps if step.is_group else None


def count(spec: int | str, total: int) -> int:
    """``3`` → 3; ``"25%"`` → floor of 25% of ``total`` (as Ansible's max_fail_percentage)."""
    if isinstance(spec, str):
        return math.floor(float(spec.rstrip("%")) * total / 100)
    return spec


def batch_sizes(total: int, serial: Any) -> list[int]:
    """Rolling batch sizes over ``total`` hosts. A list of sizes is used in turn, the last
    one repeating; a percentage is of ``total``; every batch has at least one host."""
    if total == 0:
        return []
    if serial is None:
        return [total]
    sizes = serial if isinstance(serial, list) else [serial]
    out: list[int] = []
    k = 0
    while sum(out) < total:
        n = max(1, count(sizes[min(k, len(sizes) - 1)], total))
        out.append(min(n, total - sum(out)))
        k += 1
    return out


def batches(commands: list[Command], serial: Any) -> tuple[tuple[Command, ...], ...]:
    """Split a step's commands into rolling batches (``batch_sizes``)."""
    out, i = [], 0
    for n in batch_sizes(len(commands), serial):
        out.append(tuple(commands[i : i + n]))
        i += n
    return tuple(out)
