"""Runbook × Inventory → Plan: every command on every host, rendered before anything runs.

Nothing runs here but what the runbook asks of the controller (``lookup``s,
``templating.lookups``), and the only other files read are the ones a copy sends (to show
their size and digest), so ``plan`` and ``apply`` cannot disagree, and a template error in
step 9 stops the run before step 1. Two kinds of command cannot be rendered
here, and are kept as their templates plus the values they read (``Templates``): one that
reads a registered value (known only after an earlier step ran: *deferred*) and one that
reads a secret (rendered with the real value only in memory at apply time; everything
shown or stored renders it with a stand-in) — a vaulted value is one (``plan.vaulted``),
and so is a lookup of a secret's source. Every name they read is still checked now.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import replace
from typing import Any

from runbook.errors import InputError, InventoryError, TemplateError
from runbook.inventory.build import Inventory
from runbook.inventory.hosts import resolve_host
from runbook.load.vault import Keyring
from runbook.model.command import Command, Templates
from runbook.model.controller import Loop
from runbook.model.plan import (
    Plan,
    PlannedBatch,
    PlannedGroup,
    PlannedStep,
    Section,
    Selection,
)
from runbook.model.runbook import Host, Runbook, Step
from runbook.model.spec import ExecSpec
from runbook.plan.controller import ControllerPlanner, check_controller_syntax
from runbook.plan.discover import check_discover_steps
from runbook.plan.flow import FLOW_NAMES, RESCUE_NAMES, Flow, batch_facts, controller
from runbook.plan.loops import LoopPlanner
from runbook.plan.select import Selected, limited, select
from runbook.plan.settings import SettingsPlanner
from runbook.plan.transfers import TransferPlanner
from runbook.plan.vaulted import NONE as NO_VAULT
from runbook.plan.vaulted import VaultReads, split_vaulted, vaulted_names
from runbook.templating.env import (
    check_syntax,
    evaluate,
    expression_names,
    may_call_lookup,
    template_names,
)
from runbook.templating.env import render as render_template
from runbook.templating.lazy import first_template, has_templates, resolve_templates, template_reads
from runbook.templating.lookups import recording
from runbook.templating.native import strings, value_names
from runbook.templating.partial import partial
from runbook.templating.render import names_read, render_env, render_parts, undefined
from runbook.text import STAND_IN

Context = MutableMapping[str, Any]
RESULT_NAMES = frozenset({"rc", "stdout", "stderr", "stdout_lines", "stderr_lines"})
RESERVED = (
    frozenset({"host", "groups", "env", "step", "runbook", "hostvars"}) | RESULT_NAMES | FLOW_NAMES
)


def make_plan(
    runbook: Runbook,
    inventory: Inventory,
    extra_vars: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    selection: Selection | None = None,
    vault: Keyring | None = None,
) -> Plan:
    """Render every step for every host. Raises ``InputError`` for any problem.
    ``vault`` opens the vaulted values commands read; it keeps what it revealed."""
    check_discover_steps(runbook)
    keyring = vault if vault is not None else Keyring()
    planner = _Planner(
        runbook, inventory, extra_vars or {}, tuple(secrets or {}), selection, keyring
    )
    items = [planner.item(c) for c in select(runbook.steps, planner.selection, _inner)]
    items += [  # the runbook's always steps: not moved by --start-at or --tags
        replace(planner.item(Selected(s, _names(s.steps))), section=Section.ALWAYS)
        for s in runbook.always
        if not _skipped(s, planner.selection)
    ]
    return Plan(
        name=runbook.name,
        source=runbook.path,
        digest=runbook.digest,
        steps=tuple(items),
        secret_names=(*(secrets or {}), *sorted(keyring.revealed)),
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
        keyring: Keyring,
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
        self._env_decided: dict[tuple[Any, frozenset[str]], bool] = {}
        self._lookups: dict[int, tuple[Templates, bool]] = {}
        self._hosts: dict[str, Host] = {}
        self._parts: dict[str, tuple[Templates, frozenset[str]]] = {}
        self._groups = {g: list(m) for g, m in inventory.groups.items()}
        self._batch: dict[str, Any] | None = None  # what templates see as ``batch``, if any
        # ``set`` values computed at plan time: host → name → value (SPEC §11).
        self.set_values: dict[str, dict[str, Any]] = {}
        self._check_names()
        self.keyring = keyring  # opens vaulted values as commands read them
        self.files = TransferPlanner(self)
        self.flow = Flow(self)
        self.controller = ControllerPlanner(self)
        self.loops = LoopPlanner(self)
        self.settings = SettingsPlanner(self)

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
            for name in step.set_values.names if step.set_values is not None else ():
                if name in taken_here:
                    raise InputError(
                        f"set {name!r} has the same name as a variable; choose another name",
                        step.field_positions.get(f"set.{name}", step.position),
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
        if self._batch is not None:
            ctx["batch"] = self._batch
        ctx.update(self.set_values.get(host.name, ()))
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

    def step_context(self, step: Step) -> dict[str, Any]:
        """What a step's own settings (``serial``, ``max_failures``) are rendered with:
        what every host shares — the runbook's vars, -e, groups, runbook and step."""
        rb = self.runbook
        ctx = {**rb.vars, **step.vars, **self.extra, **self._step_facts(step)}
        ctx.update(groups=self._groups, runbook={"name": rb.name, "path": rb.path})
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
            reads = template_reads(value, ctx)
            where = first_template(value)
            for bad in sorted(reads & later | vaulted_names(ctx, reads)):
                raise InventoryError(
                    f"inventory value {name!r} reads {bad!r}, which is known only at apply "
                    "time; read it in the step instead",
                    where.position if where is not None else None,
                )
            with recording() as touched:
                ctx[name] = cache[name] = resolve_templates(value, ctx, render_template)
            for bad in sorted(touched):  # a lookup of a source listed under secrets
                raise InventoryError(
                    f"inventory value {name!r} reads secret {bad!r} through a lookup; "
                    "read the secret in the step instead",
                    where.position if where is not None else None,
                )

    def runbook_env(
        self, step: Step, host: Host, ctx: Context, parts: Templates, per_command: frozenset[str]
    ) -> dict[str, str] | None:
        """The runbook's env rendered once per host, unless it reads the step, its batch or
        delegate, include vars, a loop's item or a lookup (then per command: a lookup may
        read a secret)."""
        if step.vars or self._env_per_command(parts, per_command):
            return None
        env = self._runbook_env.get(host.name)
        if env is None:
            env = self._runbook_env[host.name] = render_env(parts.env, ctx, parts.positions)
        return env

    def _env_per_command(self, parts: Templates, per_command: frozenset[str]) -> bool:
        """Whether the runbook's env must be rendered per command (see ``runbook_env``):
        decided once per step and set of per-command names, not per host."""
        key = (parts.env, per_command)
        found = self._env_decided.get(key)
        if found is None:
            names = per_command | _STEP_NAMES
            found = self._env_decided[key] = any(
                names & template_names(v) or may_call_lookup(v) for _, v in parts.env
            )
        return found

    def _may_call_lookup(self, parts: Templates) -> bool:
        """``_may_call_lookup``, once per step's templates."""
        found = self._lookups.get(id(parts))
        if found is None or found[0] is not parts:
            found = self._lookups[id(parts)] = (parts, _may_call_lookup(parts))
        return found[1]

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
        step = self.with_step_settings(step)
        hosts = self.hosts(step, None)
        planned = self.step(step, hosts, step.serial)
        return planned

    def with_step_settings(self, step: Step) -> Step:
        """The step with its templated ``serial``/``max_failures`` rendered."""
        rendered = self.settings.for_step(step)
        if "serial" in rendered:
            step = replace(step, serial=rendered["serial"])
        if "max_failures" in rendered:
            step = replace(step, spec=replace(step.spec, max_failures=rendered["max_failures"]))
        return step

    def group(self, chosen: Selected[Step]) -> PlannedGroup:
        group = self.with_step_settings(chosen.item)
        hosts = self.hosts(group, None)
        inner = [s for s in group.steps if s.name in chosen.inner]
        rescue = [s for s in group.rescue if not _skipped(s, self.selection)]
        always = [s for s in group.always if not _skipped(s, self.selection)]
        for step in (*inner, *rescue, *always):
            self.check_syntax(step)
        confirm, confirm_templates = self.settings.confirm(group, hosts[0] if hosts else None)
        sizes = batch_sizes(len(hosts), group.serial)
        batches = []
        start = 0
        registered = set(self.registered)
        inner_registers = _registers(inner)
        after = set(registered)  # what the inner steps register or set, over every batch
        for number, size in enumerate(sizes, 1):
            members = hosts[start : start + size]
            start += size
            self._batch = batch_facts([h.name for h in members], number, len(sizes))
            self.registered = set(registered)  # each batch sees the same names
            names = chosen.batch_steps(first=number == 1)
            todo = [s for s in inner if s.name in names]
            parts = [(s, Section.MAIN) for s in todo]
            parts += [(s, Section.RESCUE) for s in rescue] + [(s, Section.ALWAYS) for s in always]
            steps = []
            for s, section in parts:
                if section is Section.RESCUE:  # what failed, known when the rescue runs
                    self.registered |= inner_registers | RESCUE_NAMES
                elif section is Section.ALWAYS:
                    self.registered = (self.registered - RESCUE_NAMES) | inner_registers
                    self.registered |= _registers(rescue)
                planned = self.step(s, self.hosts(s, members), None, members)
                steps.append(replace(planned, group=group.name, batch=number, section=section))
            batches.append(PlannedBatch(number, tuple(h.name for h in members), tuple(steps)))
            after |= self.registered
        self._batch = None
        self.registered = (after - RESCUE_NAMES) | inner_registers
        self.registered |= _registers(rescue) | _registers(always)
        return PlannedGroup(
            name=group.name,
            position=group.position,
            batches=tuple(batches),
            # Templated settings as the first host has them (what its inner steps inherit).
            spec=self.settings.for_host(group, hosts[0]).spec if hosts else group.spec,
            hosts=group.hosts or "all",
            max_failures=count(group.spec.max_failures, len(hosts)),
            confirm=confirm,
            confirm_templates=confirm_templates,
            tags=group.tags,
            serial=group.serial,
            inner=chosen.inner,
            rescue=tuple(s.name for s in rescue),
            always=tuple(s.name for s in always),
        )

    def hosts(self, step: Step, within: list[Host] | None) -> list[Host]:
        """The hosts a step targets: its pattern, within its group's batch if inside one,
        narrowed by ``--limit`` (``run_once`` is applied when commands are made)."""
        if step.local:
            # Always the controller, even if the inventory reaches a "localhost" over SSH.
            return [controller(self.inventory)]
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

    def step(
        self, step: Step, hosts: list[Host], serial: Any, within: list[Host] | None = None
    ) -> PlannedStep:
        """``within``: the batch of the group the step is in. A step run once (``local``,
        ``run_once``) runs for the batch: its register goes to it and, if it fails, each of
        its hosts fails (SPEC section 10)."""
        targeted = hosts
        if step.local and within is not None:
            targeted = within
        elif step.run_once:
            hosts = hosts[:1]
        # Asked before the step runs: it cannot read what the step registers.
        confirm, confirm_templates = self.settings.confirm(step, hosts[0] if hosts else None)
        commands = self.batched_commands(step, hosts, serial)
        once = step.local or step.run_once
        if step.register is not None:
            self.registered.add(step.register)
        gets_values = step.register is not None or step.set_values is not None
        if step.set_values is not None:
            self.controller.after(step, commands, [h.name for h in targeted])
        return PlannedStep(
            name=step.name,
            position=step.position,
            batches=batches(commands, serial),
            spec=_rendered_spec(step, commands),
            hosts=(step.hosts or "all") if not step.local else "localhost",
            max_failures=count(step.spec.max_failures, len({c.host.name for c in commands})),
            confirm=confirm,
            confirm_templates=confirm_templates,
            tags=step.tags,
            run_once=step.run_once,
            local=step.local,
            serial=serial,
            register=step.register,
            register_hosts=tuple(h.name for h in targeted) if gets_values else (),
            once_for=tuple(h.name for h in targeted) if once and within is not None else (),
            discover=step.discover,
        )

    def batched_commands(self, step: Step, hosts: list[Host], serial: Any) -> list[Command]:
        """The step's commands; with ``serial``, each host sees its rolling ``batch``."""
        if serial is None:
            return [c for host in hosts for c in self.commands(step, host)]
        sizes = batch_sizes(len(hosts), serial)
        out: list[Command] = []
        done = 0
        for number, size in enumerate(sizes, 1):
            members = hosts[done : done + size]
            done += size
            self._batch = batch_facts([h.name for h in members], number, len(sizes))
            out += [c for host in members for c in self.commands(step, host)]
        self._batch = None
        return out

    def check_syntax(self, step: Step) -> None:
        pos = step.field_positions
        checks = [("run", step.run, False), ("until", step.spec.until, True)]
        checks += [("loop", s, False) for s in strings(step.loop)]
        checks.append(("when", step.when, True))
        checks.append(("delegate_to", step.delegate_to, False))
        if step.wait is not None:
            kind = step.wait.kind.value
            checks += [(f"{kind}.{k}", v, False) for k, v in step.wait.templates().items()]
        if step.transfer is not None:
            kind = step.transfer.kind
            checks += [(f"{kind}.src", step.transfer.src, False)]
            checks += [(f"{kind}.dest", step.transfer.dest, False)]
        try:
            for name, source, expression in checks:
                if source is not None:
                    check_syntax(source, pos.get(name), expression)
            check_controller_syntax(step)
        except TemplateError as exc:
            exc.step = step.name
            raise

    # -- commands ------------------------------------------------------------------------

    def commands(self, step: Step, host: Host) -> list[Command]:
        """One step's commands for one host: its command, a loop's items, or the
        controller's ``set``/``assert``, with its templated settings rendered."""
        try:
            step = self.settings.for_host(step, host)
            if step.set_values is not None or step.assertion is not None:
                return [self.controller.command(step, host)]
            if step.loop is not None:
                return self.loops.commands(step, host)
        except InputError as exc:
            exc.step, exc.host = exc.step or step.name, exc.host or host.name
            raise
        return [self.command(step, host)]

    def command(
        self,
        step: Step,
        host: Host,
        extra: Mapping[str, Any] | None = None,
        loop: Loop | None = None,
    ) -> Command:
        """Render one step for one host; every error names the step and the host.
        ``extra``: a loop's item; ``loop``: a loop whose items are known at run time
        only (the command is kept as templates, its item unbound)."""
        parts, reads = self.parts(step)
        try:
            if step.wait is not None:
                return self.flow.wait_command(step, host)
            if step.transfer is not None:
                return self.files.command(step, host)
            until = step.spec.until
            # ``until`` is judged at run time, but the secrets and registered values it
            # reads are bound when the command is rendered: it must be rendered then.
            reads_all = reads | (expression_names(until) if until else frozenset())
            ctx = self.context(step, host, reads_all)
            if extra:
                ctx.update(extra)
            vault = split_vaulted(ctx, reads_all, self.keyring)  # stand-ins in ctx
            host = self.host(host)
            delegate = self.flow.delegate(step, ctx)
            if delegate is not None:  # its connection and settings; `host` is the target
                ctx["delegate"] = delegate.facts()
            step = _with_host_become(step, delegate or host)
            secrets = tuple(sorted(reads_all & self.secrets | vault.secrets))
            registers = reads_all & (self.registered | {"hostvars"})
            if loop is not None:
                registers |= value_names(loop.source) & (self.registered | {"hostvars"})
            until_vars = self.until_vars(step, ctx, loop)
            command: Command | None = None
            if not secrets and not registers and loop is None:
                per_command = frozenset(extra or ())
                env = None if delegate else self.runbook_env(step, host, ctx, parts, per_command)
                if self._may_call_lookup(parts):
                    with recording() as touched:  # secrets read through lookups
                        done = render_parts(parts, ctx, env)
                else:  # no template here can call a lookup: nothing to record
                    touched = set()
                    done = render_parts(parts, ctx, env)
                if not touched:
                    command = _command(step, host, done.cmd, done.env, until_vars, done.skip_reason)
                secrets = tuple(sorted(touched))
            if command is None:
                command = self.later(
                    step,
                    host,
                    parts,
                    ctx,
                    until_vars,
                    secrets,
                    tuple(sorted(registers)),
                    reads,
                    vault,
                    loop,
                )
                if loop is not None:
                    command = replace(command, loop=loop)
            return command if delegate is None else replace(command, delegate=delegate)
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
        vault: VaultReads = NO_VAULT,
        loop: Loop | None = None,
    ) -> Command:
        """A command rendered at apply time: checked now, kept as templates with the values
        they read (``reads``: every name they read; a vaulted value as a token of its
        secret: ``plan.vaulted``). A loop's item is unbound while its list is known only at
        run time."""
        self.reads_hostvars |= "hostvars" in registers
        item = {loop.var} if loop is not None else set()
        known = set(ctx) | self.registered | {"hostvars", "env"} | item
        _check_defined(parts, known)
        tainted = set(secrets) | set(registers) | vault.names | item
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
        values.update(vault.tokenized)
        templates = replace(
            parts,
            when=when,
            values=values,
            secrets=secrets,
            registers=registers,
            positions={k: p for k, p in parts.positions.items() if _template_field(k)},
        )
        cmd, env = _shown(parts, ctx, set(registers) | item)
        return replace(_command(step, host, cmd, env, until_vars, None), templates=templates)

    def until_vars(self, step: Step, ctx: Context, loop: Loop | None = None) -> dict[str, Any]:
        """Bind the vars ``until`` reads now; an unknown name is an error now, not after
        the command ran. Secrets, registered values and an item known only at run time
        are bound at run time."""
        until = step.spec.until
        if until is None:
            return {}
        names = expression_names(until) - RESULT_NAMES
        later = self.secrets | self.registered | {"hostvars"} | ({loop.var} if loop else set())
        for name in undefined(frozenset(names - later), ctx):
            raise TemplateError(
                f"'{name}' is undefined in until (it sees vars, registered values, rc, stdout, "
                "stderr, stdout_lines, stderr_lines)",
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
        until_at=step.field_positions.get("until") if step.spec.until is not None else None,
    )


def _rendered_spec(step: Step, commands: list[Command]) -> ExecSpec:
    """The step's spec as its commands have it where a setting is a template (rendered
    per host: the first host's stands for the step, as a saved plan reads it back)."""
    keys = [k for k in step.templated if k in ("timeout", "retries", "delay")]
    if not keys or not commands:
        return step.spec
    first = commands[0].spec
    return replace(step.spec, **{k: getattr(first, k) for k in keys})


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
    return key in ("run", "when", "env", "loop") or key.startswith(("env.", "runbook.env."))


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
    registered value is rendered partially (the parts that read one stay as written); one
    that reads only secrets is rendered with their stand-ins (whatever a filter does to a
    stand-in, it cannot show the secret)."""
    ctx = dict(ctx)
    pos = parts.positions
    later = frozenset(registers)

    def show(source: str, where: str) -> str:
        if template_names(source) & later:
            return partial(source, ctx, later)
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


_STEP_NAMES = frozenset({"step", "batch", "delegate"})  # a runbook env reading these is per step


def _may_call_lookup(parts: Templates) -> bool:
    """Whether rendering ``parts`` may read a secret through a lookup (then recorded)."""
    sources = [parts.run, *(v for _, v in (*parts.env, *parts.step_env))]
    return any(map(may_call_lookup, sources)) or (
        parts.when is not None and may_call_lookup(parts.when, expression=True)
    )


def _skipped(step: Step, sel: Selection) -> bool:
    """Rescue and always steps come with their group, and the runbook's always steps
    with every run, whatever ``--tags`` or ``--start-at`` say; ``--skip-tags`` can skip
    them."""
    return bool(sel.skip_tags and set(step.tags) & set(sel.skip_tags))


def _registers(steps: list[Step]) -> set[str]:
    return {s.register for s in steps if s.register}


def _inner(step: Step) -> tuple[Step, ...] | None:
    return step.steps if step.is_group else None


def _names(steps: tuple[Step, ...]) -> tuple[str, ...]:
    return tuple(s.name for s in steps)


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
    """Split a step's commands into rolling batches of hosts (``batch_sizes``): a host's
    commands (a loop's items) stay in one batch, in order."""
    per_host: dict[str, list[Command]] = {}
    for c in commands:
        per_host.setdefault(c.host.name, []).append(c)
    hosts = list(per_host.values())
    out, i = [], 0
    for n in batch_sizes(len(hosts), serial):
        out.append(tuple(c for cs in hosts[i : i + n] for c in cs))
        i += n
    return tuple(out)
