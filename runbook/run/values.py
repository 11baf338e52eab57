"""Values known only at run time — secrets and registered results — and rendering the
commands that read them, just before they run.

``executable`` renders a command for real (in memory only: it goes to the execution
context and nowhere else); ``shown`` renders it the way it may be shown or journaled
(secrets as stand-ins, registered output masked). A registered value holds the real
output (a later command may need a token a host printed); wherever it is shown or stored
it is masked, or tokenized for the journal so ``--resume`` can restore it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from runbook.errors import InputError, TemplateError
from runbook.load.secrets import SecretSources, detokenize, fill_values, lookups_for, tokenize
from runbook.load.secrets import each_string as _strings  # a registered value's lists too
from runbook.load.vault import ID_PREFIX as VAULT_ID
from runbook.model.command import Command, CommandResult, Status, Templates
from runbook.model.controller import LoopItem
from runbook.model.plan import Plan, PlannedGroup, PlannedStep
from runbook.templating.env import evaluate
from runbook.templating.lookups import planning
from runbook.templating.native import native
from runbook.templating.render import Rendered, render_parts, withheld
from runbook.text import STAND_IN

Value = dict[str, Any]


class _HostView(dict[str, Any]):
    """``hostvars[H]``: a name H has no value for (yet) is undefined, not an error, so
    ``hostvars[H].NAME is defined`` is false for a host of a later batch (SPEC §11)."""

    def __init__(self, host: str, values: dict[str, Any], known: bool) -> None:
        super().__init__(values)
        self.host, self.known = host, known

    def missing_message(self, name: str) -> str:
        why = "" if self.known else " (it is not in this run: excluded by --limit?)"
        return f"host {self.host!r} has no value {name!r}{why}"


class HostVars(dict[str, Any]):
    """``hostvars[H]``: H's vars plus its registered values (SPEC §8)."""

    def __init__(self, base: dict[str, dict[str, Any]], registers: dict[str, Value], run: set[str]):
        super().__init__()
        self._base, self._registers, self._run = base, registers, run

    def __missing__(self, host: str) -> _HostView:
        if host not in self._base and host not in self._run:
            raise KeyError(host)  # undefined: ``missing_message`` says why when it is read
        return _HostView(
            host, {**self._base.get(host, {}), **self._registers.get(host, {})}, host in self._run
        )

    def missing_message(self, host: str) -> str:
        return f"hostvars: no host {host!r} in the inventory"


NOT_RUN = (Status.SKIPPED, Status.CANCELLED)


def output_value(stdout: str, stderr: str) -> Value:
    """A command's output as every reader sees it — registered values, ``until``,
    ``when`` and templates alike (SPEC §11): trailing newlines removed (``{{ r.stdout }}``
    is the text, not the text and a newline, as Ansible's), ``stdout_lines`` and
    ``stderr_lines`` split it. ``until: stdout == first.stdout`` never held while
    ``until`` saw the newline and the register did not."""
    stdout, stderr = stdout.rstrip("\r\n"), stderr.rstrip("\r\n")
    return {
        "stdout": stdout,
        "stderr": stderr,
        "stdout_lines": stdout.splitlines(),
        "stderr_lines": stderr.splitlines(),
    }


class NotRun(dict[str, Any]):
    """The registered value of a host on which the step did not run (skipped, cancelled):
    ``status`` and ``skip_reason`` (a copy's or fetch's ``changed``: false, ``dest`` and
    ``sha256`` too). Reading its ``stdout``, ``stderr`` or ``rc`` is
    an error that names the host and the step — ``lsn={{ lsn.stdout }}`` rendered
    ``lsn=`` silently — while ``is defined`` and ``default()`` work as in Ansible."""

    def __init__(self, value: Value, host: str, step: str) -> None:
        super().__init__(value)
        self.host, self.step = host, step

    def missing_message(self, name: str) -> str:
        why = f" ({self['skip_reason']})" if self.get("skip_reason") else ""
        return (
            f"host {self.host!r} has no {name!r}: step {self.step!r} was {self['status']} "
            f"there{why}; read .status, or give a default (| default(...))"
        )


def register_value(result: CommandResult) -> Value:
    """What ``register`` stores for a host: status, rc, stdout, stderr (raw, unmasked),
    ``stdout_lines``/``stderr_lines`` (``output_value``); a copy's or fetch's also
    changed, dest and sha256 (SPEC §8). A host that did not run the step gets a
    ``NotRun`` value."""
    if result.status in NOT_RUN:  # a copy or fetch that did not run changed nothing
        reason: Value = {"status": result.status.value, "skip_reason": result.error or ""}
        if result.changed is not None:
            reason.update(result.transfer_fields())
        return NotRun(reason, result.host, result.step)
    value: Value = {"status": result.status.value, "rc": result.rc}
    value.update(output_value(result.stdout, result.stderr))
    if result.changed is not None:
        value.update(result.transfer_fields())
    return value


def with_item(value: Value, item: Any) -> Value:
    """A loop item's registered value, as ``register.results`` lists it: with its item
    (as Ansible's)."""
    if isinstance(value, NotRun):
        return NotRun({**value, "item": item}, value.host, value.step)
    return {**value, "item": item}


def not_run(value: Value, host: str, step: str) -> Value:
    """``value`` (as registered or journaled) as a ``NotRun`` when its host did not run
    the step; as it is otherwise."""
    if value.get("status") in {s.value for s in NOT_RUN} and "rc" not in value:
        return NotRun(value, host, step)
    return value


class RunValues:
    """Secrets and registered values of one run; renders commands that read them."""

    def __init__(
        self,
        plan: Plan,
        secrets: dict[str, str],
        mask: Callable[[str], str],
        sources: SecretSources | None = None,
    ) -> None:
        self.secrets = secrets
        self.mask = mask
        # A lookup of a secret's source renders as that secret (stand-in when shown).
        self.lookups = lookups_for(sources or {})
        self.hostvars_base = plan.hostvars
        self.run_hosts = set(plan.host_names)
        self.registers: dict[str, Value] = {}  # host → name → value
        # What a value computed from a secret shows as (its stand-ins' rendering),
        # wherever a masked rendering would show the real one: host → name → value.
        self._shown: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- registering ---------------------------------------------------------------------

    def record(self, step: PlannedStep, result: CommandResult) -> tuple[list[str], Value] | None:
        """Store a result under the step's ``register`` for every host it is for; returns
        (hosts, value) to journal, or None when the step registers nothing."""
        if step.register is None:
            return None
        # A run_once or local step ran one command for all its hosts.
        hosts = list(step.register_hosts) if step.run_once or step.local else [result.host]
        value = register_value(result)
        self.set(step.register, hosts, value)
        return hosts, value

    def set(self, name: str, hosts: list[str], value: Any, shown: Any = None) -> None:
        """Give ``hosts`` the value ``name``; ``shown``: how it may be shown, when it was
        computed from a secret."""
        with self._lock:
            for host in hosts:
                self.registers.setdefault(host, {})[name] = value
                if shown is not None:
                    self._shown.setdefault(host, {})[name] = shown

    def journaled(self, value: Any) -> Any:
        """A value as the journal keeps it: secrets as ``((secret:NAME))`` tokens."""
        return _strings(value, lambda text: tokenize(text, self.secrets))

    def restored(self, value: Any, host: str, step: str, is_set: bool = False) -> Any:
        """A journaled value back, its secrets put back; a registered result of a host
        that did not run the step is a ``NotRun`` again, a loop's items too (a ``set``'s
        value is data, as it is)."""
        value = _strings(value, lambda text: detokenize(text, self.secrets))
        if isinstance(value, dict) and not is_set:
            value = not_run(value, host, step)
            if isinstance(value.get("results"), list):
                value["results"] = [
                    not_run(r, host, step) if isinstance(r, dict) else r for r in value["results"]
                ]
        return value

    # -- rendering -----------------------------------------------------------------------

    def executable(self, command: Command) -> Command:
        """The command as it runs. Raises ``TemplateError`` (at its FILE:LINE) when it
        cannot be rendered; an error of a render with real secrets is withheld."""
        t = command.templates
        if t is None:
            return command
        ctx = self._context(command, t, real=True)
        if command.wait is not None:  # only its ``when`` is decided now
            return self._waits(command, t, ctx)
        if command.transfer is not None:
            return self._bound(command, ctx)
        try:
            with planning(self.lookups):
                done = render_parts(t, ctx)
        except TemplateError as exc:
            raise (withheld(exc, t.secrets) if t.secrets else exc) from None
        until = {**command.until_vars, **{k: v for k, v in ctx.items() if k not in t.values}}
        return replace(
            command,
            cmd=done.cmd,
            env=done.env,
            skip_reason=done.skip_reason,
            until_vars=until,
            templates=None,
        )

    def _bound(self, command: Command, ctx: dict[str, Any]) -> Command:
        """A copy or fetch: its ``when`` decided, its template rendered in memory."""
        from runbook.run.transfer.content import bind

        return bind(command, ctx)

    @staticmethod
    def _waits(command: Command, t: Templates, ctx: dict[str, Any]) -> Command:
        if t.when is None:
            return replace(command, templates=None)
        run = evaluate(t.when, ctx, t.positions.get("when"))
        skip = None if run else f"when: {t.when}"
        return replace(command, skip_reason=skip, templates=None)

    def shown(self, command: Command) -> str:
        """The command as the journal records it: stand-ins and masked output only."""
        t = command.templates
        if t is None or not command.is_shell:
            return command.cmd
        try:
            # Masked as well: a loop's item, bound at run time, may hold a secret.
            with planning(self.lookups):
                shown = render_parts(t, self._context(command, t, real=False)).cmd
            return self.mask(shown)
        except InputError:
            return t.run

    def context(self, command: Command, real: bool) -> dict[str, Any]:
        """What a command kept as templates is rendered or evaluated with: the values
        bound at plan time, its secrets (``real``: their values, else stand-ins) and the
        values registered so far (``real``: raw, else masked)."""
        assert command.templates is not None
        return self._context(command, command.templates, real)

    def value_of(self, host: str, name: str) -> Any:
        """The value ``host`` has for ``name`` (None when it has none)."""
        with self._lock:
            return self.registers.get(host, {}).get(name)

    def expanded(self, command: Command) -> list[Command]:
        """A loop whose list reads a run-time value: its items, now. Raises
        ``TemplateError`` (at the loop's FILE:LINE) when the list cannot be computed or
        is not a list."""
        loop, t = command.loop, command.templates
        assert loop is not None and t is not None
        where = t.positions.get("loop")
        try:
            items = native(loop.source, self._context(command, t, real=True), where)
        except TemplateError as exc:
            raise (withheld(exc, t.secrets) if t.secrets else exc) from None
        if not isinstance(items, list):
            raise TemplateError(f"loop: expected a list, got {type(items).__name__}", where)
        return [
            replace(
                command,
                loop=None,
                item=LoopItem(i, value, loop.var),
                templates=replace(t, values={**t.values, loop.var: value}),
                until_vars={**command.until_vars, loop.var: value},
            )
            for i, value in enumerate(items)
        ]

    def confirm_text(self, item: PlannedStep | PlannedGroup, host: str | None) -> str | None:
        """A step's or group's confirm text, rendered now when it reads a registered
        value (``host``'s: the step's or the batch's first), as it may be shown."""
        t = item.confirm_templates
        target = next((c.host for c in item.commands if c.host.name == host), None)
        if t is None or target is None:
            return item.confirm
        return self.shown(Command(item.name, target, t.run, templates=t))

    def preview(self, command: Command) -> Rendered:
        """The command as it may be shown, its ``when`` decided, from the values known
        now (``plan --check``: the discovered ones). Raises ``TemplateError`` when it reads
        a value not known yet."""
        t = command.templates
        assert t is not None
        return render_parts(t, self._context(command, t, real=False))

    def _context(self, command: Command, t: Templates, real: bool) -> dict[str, Any]:
        host = command.host.name
        with self._lock:
            mine = dict(self.registers.get(host, {}))
            registers = {h: dict(v) for h, v in self.registers.items()}
        if not real:
            with self._lock:
                shown = {h: dict(v) for h, v in self._shown.items()}

            def masked(h: str, values: dict[str, Any]) -> dict[str, Any]:
                own = shown.get(h, {})
                return {k: own[k] if k in own else self._masked(v) for k, v in values.items()}

            mine = masked(host, mine)
            registers = {h: masked(h, r) for h, r in registers.items()}
        secrets = {n: (self.secrets[n] if real else STAND_IN) for n in t.secrets}
        values = t.values
        if any(n.startswith(VAULT_ID) for n in t.secrets):  # vaulted values are tokens
            values = fill_values(values, secrets)
        ctx = {**values, **secrets, **{k: mine[k] for k in t.registers if k in mine}}
        if "hostvars" in t.registers:
            ctx["hostvars"] = HostVars(self.hostvars_base, registers, self.run_hosts)
        return ctx

    def _masked(self, value: Any) -> Any:
        """A value as it may be shown: every string masked (a register's, or a rescue's
        ``failed_step``)."""
        return _strings(value, self.mask)

    def check_secret_commands(self, plan: Plan) -> None:
        """Render every command that reads only secrets now, before anything runs: a
        filter that fails on a secret's real value is exit 2, not a failure mid-run."""
        for step in plan.leaf_steps():
            for command in step.commands:
                t = command.templates
                if t is None or not t.secrets or t.registers or command.controlled is not None:
                    continue
                try:
                    for each in self.expanded(command) if command.loop else [command]:
                        self.executable(each)
                except TemplateError as exc:
                    exc.step, exc.host = step.name, command.host.name
                    raise
