"""The plan as text: what a reviewer reads. Deterministic: same input, same bytes.

A command identical on several hosts — its text, env and settings (timeout, retries,
``until`` and the values it reads, shell, who it runs as: an inventory's ``become`` and
``become_user`` included) — is shown once with the hosts listed compactly
(``web[01:40]``); whatever differs between hosts is shown on each host's line, so two
hosts share a line only if everything shown for them is the same (SPEC §6, §7).
``expand`` shows one line per host. A command rendered at apply time is marked:
``deferred`` (it reads a registered value: shown as its template) or ``secret`` (shown
rendered with stand-ins).

Commands are shown as rendered, never masked: secrets are rendered as stand-ins, and
masking would hide literal runbook text that equals a secret's value while it runs
(SPEC §6). Every line goes through ``runbook.text.printable``: a carriage return, an
escape sequence or a bidi control in a command cannot make it look like another.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from runbook.model.command import Command
from runbook.model.plan import Plan, PlannedGroup, PlannedStep
from runbook.model.spec import DEFAULT_SHELL, ExecSpec
from runbook.templating.render import STAND_IN
from runbook.text import printable


def counted(n: int, noun: str) -> str:
    """``1 host``, ``2 hosts``, ``3 batches``."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun}" + ("es" if noun.endswith(("ch", "sh", "s", "x")) else "s")


def plan_text(plan: Plan, expand: bool = False) -> str:
    """The reviewable plan: a header, then every step and group in order."""
    lines = [
        f"Plan: {plan.name}",
        f"source: {plan.source} ({plan.digest[:19]})" if plan.digest else f"source: {plan.source}",
        f"{counted(len(plan.step_names), 'step')}, {counted(len(plan.host_names), 'host')}, "
        f"{counted(len(plan.commands), 'command')}",
    ]
    for i, item in enumerate(plan.steps, 1):
        lines.append("")
        if isinstance(item, PlannedGroup):
            lines += _group(f"[{i}]", item, expand)
        else:
            lines += _step(f"[{i}]", item, expand, "")
    templates = [c.templates for c in plan.commands if c.templates is not None]
    legend = [
        LEGEND["deferred"] if any(t.deferred for t in templates) else "",
        LEGEND["secret"] if any(t.secret for t in templates) else "",
    ]
    if any(legend):
        lines += ["", *filter(None, legend)]
    # Each element is one line: a newline inside one (a step name, an env value) is shown
    # as an escape, so it cannot start a line that looks like a command.
    return "\n".join(printable(line, multiline=False) for line in lines) + "\n"


LEGEND = {
    "deferred": "deferred: reads a value registered by an earlier step; rendered just before "
    "it runs",
    "secret": "secret: reads a secret; shown with stand-ins, rendered with the real value at apply",
}


def _group(label: str, group: PlannedGroup, expand: bool) -> list[str]:
    policy = f"on_failure: {group.on_failure}"
    if group.max_failures:
        policy += f", max_failures: {group.max_failures}"
    hosts = group.host_names
    lines = [
        f"{label} {group.name}    group, hosts: {_hosts_label(group.hosts)} ({len(hosts)})"
        f"    {policy}",
    ]
    extras = [f"timeout: {group.spec.timeout:g}s"] if hosts else []
    if group.serial is not None:
        extras.append(f"serial: {group.serial} → {counted(len(group.batches), 'batch')}")
    if group.tags:
        extras.append("tags: " + ", ".join(group.tags))
    lines += ["    " + "    ".join(extras)] if extras else []
    if group.confirm:
        lines.append(f"    confirm before each batch: {group.confirm}")
    shared = _common_env(group.commands)
    if shared:
        lines.append(f"    env: {_env(shared)}")
    if not hosts:
        lines.append("    (no hosts)")
    for batch in group.batches:
        lines.append(f"    batch {batch.number}/{len(group.batches)}: {compact(batch.hosts)}")
        for step in batch.steps:
            inner = f"  [{label[1:-1]}.{_inner_index(group, step.name)}]"
            lines += _step(inner, step, expand, "    ", _Inherited(group.spec.timeout, shared))
    return lines


def _inner_index(group: PlannedGroup, name: str) -> int:
    return group.inner.index(name) + 1 if name in group.inner else 0


def _step(
    label: str,
    step: PlannedStep,
    expand: bool,
    indent: str,
    inherited: _Inherited | None = None,
) -> list[str]:
    cmds = step.commands
    head = f"{indent}{label} {step.name}"
    if step.group is None:
        policy = f"on_failure: {step.on_failure}"
        if step.max_failures:
            policy += f", max_failures: {step.max_failures}"
        where = "controller (local)" if step.local else _hosts_label(step.hosts)
        head += f"    hosts: {where} ({len(cmds)})    {policy}"
    elif step.local:
        head += "    on the controller"
    lines = [head]
    settings = _common_settings(step)
    extras = _extras(step, settings, inherited)
    if extras:
        lines.append(f"{indent}    " + "    ".join(extras))
    if step.confirm:
        lines.append(f"{indent}    confirm: {step.confirm}")
    common = _common_env(cmds)
    above = inherited.env if inherited is not None else {}
    own_common = {k: v for k, v in common.items() if above.get(k) != v}
    if own_common:
        lines.append(f"{indent}    env: {_env(own_common)}")
    marks = {_mark(c) for c in cmds if not c.skip_reason}
    shared = marks.pop() if len(marks) == 1 else ""
    if shared:
        lines.append(f"{indent}    ({shared})")
    if not cmds:
        lines.append(f"{indent}    (no hosts)")
    for b, batch in enumerate(step.batches, 1):
        inner = indent + "    "
        if len(step.batches) > 1:
            lines.append(f"{inner}batch {b}/{len(step.batches)}")
            inner += "  "
        lines += _commands(batch, _Shared(common, shared, settings, _varies(cmds)), expand, inner)
    return lines


@dataclass(frozen=True)
class _Shared:
    """What a step's header already shows for all its commands; what differs between
    them is shown on their own lines."""

    env: dict[str, str]
    mark: str
    settings: dict[str, str]  # the settings (``_settings``) every command has alike
    until_vars: bool  # the values ``until`` reads differ between hosts


@dataclass(frozen=True)
class _Inherited:
    """What a group's header already shows for its inner steps."""

    timeout: float
    env: dict[str, str]


@functools.lru_cache(maxsize=256)  # a step's commands share one spec
def _settings(spec: ExecSpec) -> dict[str, str]:
    """A command's settings as the plan shows them, by name (absent: the default)."""
    shown = {"timeout": f"timeout: {spec.timeout:g}s"}
    if spec.retries:
        shown["retries"] = f"retries: {spec.retries} every {spec.delay:g}s"
    if spec.until:
        shown["until"] = f"until: {spec.until}"
    if spec.shell != DEFAULT_SHELL:
        shown["shell"] = f"shell: {spec.shell}"
    if spec.become:
        shown["become"] = f"become: {spec.user}"
    return shown


def _common_settings(step: PlannedStep) -> dict[str, str]:
    """The settings all of a step's commands that run share (an inventory's ``become``
    gives one host's commands settings of their own); the step's own with no command."""
    cmds = [c for c in step.commands if not c.skip_reason] or list(step.commands)
    if not cmds:
        return dict(_settings(step.spec))
    first, *rest = (_settings(c.spec) for c in cmds)
    return {k: v for k, v in first.items() if all(other.get(k) == v for other in rest)}


def _varies(cmds: list[Command]) -> bool:
    """Whether the values ``until`` reads (bound per host at plan time) differ."""
    if not any(c.until_vars for c in cmds):
        return False
    return len({_bound(c.until_vars) for c in cmds if not c.skip_reason}) > 1


def _bound(values: dict[str, object]) -> str:
    return ", ".join(
        f"{k}={json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)}"
        for k, v in sorted(values.items())
    )


def _extras(step: PlannedStep, settings: dict[str, str], inherited: _Inherited | None) -> list[str]:
    """The step's settings worth a reviewer's eye (those its commands share); an inner
    step's timeout only when it is not its group's."""
    timeout = settings.get("timeout")
    extras = [timeout] if step.commands and timeout else []
    if inherited is not None and timeout == f"timeout: {inherited.timeout:g}s":
        extras = []
    if step.serial is not None:
        extras.append(f"serial: {step.serial} → {len(step.batches)} batches")
    extras += [settings[k] for k in ("retries", "until", "shell") if k in settings]
    if step.run_once:
        extras.append("run_once")
    if "become" in settings:
        extras.append(settings["become"])
    if step.register:
        extras.append(f"register: {step.register}")
    if step.tags and step.group is None:
        extras.append("tags: " + ", ".join(step.tags))
    return extras


def _common_env(cmds: list[Command]) -> dict[str, str]:
    """Env shared by every host is shown once; each host line shows only what differs."""
    if not cmds:
        return {}
    common = set.intersection(*(set(c.env.items()) for c in cmds))
    return {k: v for k, v in cmds[0].env.items() if (k, v) in common}


def _commands(batch: Iterable[Command], shared: _Shared, expand: bool, indent: str) -> list[str]:
    """One line (and its continuation) per distinct command; its hosts listed compactly.
    Hosts share a line exactly when everything shown for them is the same."""
    shown: dict[tuple[object, ...], list[Command]] = {}
    for c in batch:
        key: tuple[object, ...] = (c.host.name,) if expand else (c.cmd, *_own(c, shared))
        shown.setdefault(key, []).append(c)
    labels = {key: compact([c.host.name for c in cs]) for key, cs in shown.items()}
    width = max(map(len, labels.values()), default=0)
    lines: list[str] = []
    for key, cs in shown.items():
        lines += _command_lines(cs[0], labels[key].ljust(width), shared, indent)
    return lines


def _own(c: Command, shared: _Shared) -> list[str]:
    """What a command's lines show beyond its text: what the step's header does not say
    for all of its commands (env, settings, the values ``until`` reads, marks)."""
    if c.skip_reason:
        return [f"(skipped: {c.skip_reason})"]
    own_env = {k: v for k, v in c.env.items() if k not in shared.env}
    settings = [v for k, v in _settings(c.spec).items() if shared.settings.get(k) != v]
    settings += [] if not shared.until_vars else [f"until reads: {_bound(c.until_vars)}"]
    mark = _mark(c)
    return [
        f"env: {_env(own_env)}" if own_env else "",
        "    ".join(settings),
        f"({mark})" if mark and mark != shared.mark else "",
    ]


def _command_lines(c: Command, label: str, shared: _Shared, indent: str) -> list[str]:
    pad = indent + " " * len(label) + "    "
    if c.skip_reason:
        return [f"{indent}{label}  (skipped: {c.skip_reason})"]
    cmd_lines = c.cmd.rstrip("\n").split("\n")
    prompt = "" if c.transfer is not None else "$ "  # a copy/fetch is no shell command
    lines = [f"{indent}{label}  {prompt}{cmd_lines[0]}"]
    lines += [f"{pad}{ln}" for ln in cmd_lines[1:]]
    return lines + [f"{pad}{shown}" for shown in _own(c, shared) if shown]


def _mark(c: Command) -> str:
    t = c.templates
    if t is None:
        return ""
    marks = []
    if t.deferred:
        marks.append(f"deferred: reads {', '.join(t.registers)}")
    if t.secret:
        marks.append(f"secret: {', '.join(t.secrets)}")
    if t.when is not None:
        marks.append(f"when decided at apply: {t.when}")
    return "; ".join(marks)


def _hosts_label(hosts: str | list[str]) -> str:
    return ", ".join(hosts) if isinstance(hosts, list) else str(hosts)


def _env(env: dict[str, str]) -> str:
    return " ".join(f"{k}={v if v == STAND_IN else shlex.quote(v)}" for k, v in env.items())


_NUMBERED = re.compile(r"^(.*?)(\d+)([^\d]*)$")


@dataclass
class _Run:
    """Hosts ``prefix + number + suffix`` with consecutive numbers of one width."""

    prefix: str
    width: int
    suffix: str
    first: int
    last: int

    def __str__(self) -> str:
        def num(n: int) -> str:
            return f"{n:0{self.width}d}"

        if self.first == self.last:
            return f"{self.prefix}{num(self.first)}{self.suffix}"
        return f"{self.prefix}[{num(self.first)}:{num(self.last)}]{self.suffix}"


def compact(names: Iterable[str]) -> str:
    """``web01 web02 web03 db1`` → ``web[01:03], db1``: runs of consecutive numbers with
    one prefix, suffix and width become a range (Ansible's pattern syntax); order kept."""
    out: list[_Run | str] = []
    for name in names:
        m = _NUMBERED.match(name)
        if m is None:
            out.append(name)
            continue
        prefix, digits, suffix = m.groups()
        n = int(digits)
        last = out[-1] if out else None
        if (
            isinstance(last, _Run)
            and (last.prefix, last.width, last.suffix) == (prefix, len(digits), suffix)
            and last.last == n - 1
        ):
            last.last = n
        else:
            out.append(_Run(prefix, len(digits), suffix, n, n))
    return ", ".join(map(str, out))
