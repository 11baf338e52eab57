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
from runbook.load.secrets import detokenize, tokenize
from runbook.model.command import Command, CommandResult, Templates
from runbook.model.plan import Plan, PlannedStep
from runbook.templating.render import STAND_IN, render_parts, withheld

Value = dict[str, Any]


class NotRegistered(Exception):
    """Raised through Jinja (it is not a ``LookupError``, which Jinja would turn into a
    generic undefined) so the message names the host and the value."""


class _HostView(dict[str, Any]):
    def __init__(self, host: str, values: dict[str, Any], known: bool) -> None:
        super().__init__(values)
        self.host, self.known = host, known

    def __missing__(self, key: str) -> Any:
        why = "" if self.known else " (it is not in this run: excluded by --limit?)"
        raise NotRegistered(f"host {self.host!r} has no value {key!r}{why}")


class HostVars(dict[str, Any]):
    """``hostvars[H]``: H's vars plus its registered values (SPEC §8)."""

    def __init__(self, base: dict[str, dict[str, Any]], registers: dict[str, Value], run: set[str]):
        super().__init__()
        self._base, self._registers, self._run = base, registers, run

    def __missing__(self, host: str) -> _HostView:
        if host not in self._base and host not in self._run:
            raise NotRegistered(f"hostvars: no host {host!r} in the inventory")
        return _HostView(
            host, {**self._base.get(host, {}), **self._registers.get(host, {})}, host in self._run
        )


def register_value(result: CommandResult) -> Value:
    """What ``register`` stores for a host: status, rc, stdout, stderr (raw, unmasked);
    a copy's or fetch's also changed, dest and sha256 (SPEC §8).

    As Ansible's: trailing newlines are stripped from stdout/stderr (``{{ r.stdout }}``
    is the text, not the text and a newline), and ``stdout_lines``/``stderr_lines`` split
    them."""
    stdout, stderr = result.stdout.rstrip("\r\n"), result.stderr.rstrip("\r\n")
    value: Value = {
        "status": result.status.value,
        "rc": result.rc,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_lines": stdout.splitlines(),
        "stderr_lines": stderr.splitlines(),
    }
    if result.changed is not None:
        value.update(result.transfer_fields())
    return value


class RunValues:
    """Secrets and registered values of one run; renders commands that read them."""

    def __init__(self, plan: Plan, secrets: dict[str, str], mask: Callable[[str], str]) -> None:
        self.secrets = secrets
        self.mask = mask
        self.hostvars_base = plan.hostvars
        self.run_hosts = set(plan.host_names)
        self.registers: dict[str, Value] = {}  # host → name → value
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

    def set(self, name: str, hosts: list[str], value: Value) -> None:
        with self._lock:
            for host in hosts:
                self.registers.setdefault(host, {})[name] = value

    def journaled(self, value: Value) -> Value:
        """A value as the journal keeps it: secrets as ``((secret:NAME))`` tokens."""
        return {k: _strings(v, lambda text: tokenize(text, self.secrets)) for k, v in value.items()}

    def restored(self, value: Value) -> Value:
        return {
            k: _strings(v, lambda text: detokenize(text, self.secrets)) for k, v in value.items()
        }

    # -- rendering -----------------------------------------------------------------------

    def executable(self, command: Command) -> Command:
        """The command as it runs. Raises ``TemplateError`` (at its FILE:LINE) when it
        cannot be rendered; an error of a render with real secrets is withheld."""
        t = command.templates
        if t is None:
            return command
        ctx = self._context(command, t, real=True)
        if command.transfer is not None:
            return self._bound(command, ctx)
        try:
            done = render_parts(t, ctx)
        except TemplateError as exc:
            raise (withheld(exc, t.secrets) if t.secrets else exc) from None
        except NotRegistered as exc:
            raise TemplateError(str(exc), t.positions.get("run")) from None
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

        try:
            return bind(command, ctx)
        except NotRegistered as exc:
            assert command.templates is not None
            raise TemplateError(str(exc), command.templates.positions.get("when")) from None

    def shown(self, command: Command) -> str:
        """The command as the journal records it: stand-ins and masked output only."""
        t = command.templates
        if t is None or command.transfer is not None:
            return command.cmd
        try:
            return render_parts(t, self._context(command, t, real=False)).cmd
        except (InputError, NotRegistered):
            return t.run

    def _context(self, command: Command, t: Templates, real: bool) -> dict[str, Any]:
        host = command.host.name
        with self._lock:
            mine = dict(self.registers.get(host, {}))
            registers = {h: dict(v) for h, v in self.registers.items()}
        if not real:
            mine = {k: self._masked(v) for k, v in mine.items()}
            registers = {
                h: {k: self._masked(v) for k, v in r.items()} for h, r in registers.items()
            }
        secrets = {n: (self.secrets[n] if real else STAND_IN) for n in t.secrets}
        ctx = {**t.values, **secrets, **{k: mine[k] for k in t.registers if k in mine}}
        if "hostvars" in t.registers:
            ctx["hostvars"] = HostVars(self.hostvars_base, registers, self.run_hosts)
        return ctx

    def _masked(self, value: Value) -> Value:
        return {k: _strings(v, self.mask) for k, v in value.items()}

    def check_secret_commands(self, plan: Plan) -> None:
        """Render every command that reads only secrets now, before anything runs: a
        filter that fails on a secret's real value is exit 2, not a failure mid-run."""
        for step in plan.leaf_steps():
            for command in step.commands:
                t = command.templates
                if t is not None and t.secrets and not t.registers:
                    try:
                        self.executable(command)
                    except TemplateError as exc:
                        exc.step, exc.host = step.name, command.host.name
                        raise


def _strings(value: Any, change: Callable[[str], str]) -> Any:
    """``change`` applied to every string of a registered value, in its lists
    (``stdout_lines``) too: the top-level strings alone left the lines' secrets in the
    journal and on the console."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_strings(v, change) for v in value]
    if isinstance(value, dict):
        return {k: _strings(v, change) for k, v in value.items()}
    return value
