"""The plan as text: what a reviewer reads. Deterministic: same input, same bytes.

A command and env identical on several hosts is shown once with the hosts listed
compactly (``web[01:40]``); ``expand`` shows one line per host (SPEC §7). A command
rendered at apply time is marked: ``deferred`` (it reads a registered value: shown
rendered but for the parts that read one) or ``secret`` (shown rendered with stand-ins);
a ``when`` decided at apply is shown per host, as the condition under which it runs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from runbook.model.command import Command
from runbook.model.plan import Plan, PlannedGroup, PlannedStep
from runbook.templating.partial import fold
from runbook.templating.render import STAND_IN

Mask = Callable[[str], str]


@dataclass(frozen=True)
class Note:
    """What ``plan --check`` adds to one host's command (SPEC §12): a mark
    (``discovered``) and lines shown under it (what a discover step found, a copy's
    diff). Keyed by ``Command.key``."""

    mark: str = ""
    lines: tuple[str, ...] = ()


Notes = Mapping[tuple[str, str], Note]
_NO_NOTE = Note()


def counted(n: int, noun: str) -> str:
    """``1 host``, ``2 hosts``, ``3 batches``."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun}" + ("es" if noun.endswith(("ch", "sh", "s", "x")) else "s")


def plan_text(
    plan: Plan, mask: Mask = str, expand: bool = False, notes: Notes | None = None
) -> str:
    """The reviewable plan: a header, then every step and group in order; ``notes``:
    what ``plan --check`` found per command."""
    notes = notes or {}
    lines = [
        f"Plan: {plan.name}",
        f"source: {plan.source} ({plan.digest[:19]})" if plan.digest else f"source: {plan.source}",
        f"{counted(len(plan.step_names), 'step')}, {counted(len(plan.host_names), 'host')}, "
        f"{counted(len(plan.commands), 'command')}",
    ]
    for i, item in enumerate(plan.steps, 1):
        lines.append("")
        if isinstance(item, PlannedGroup):
            lines += _group(f"[{i}]", item, mask, expand, notes)
        else:
            lines += _step(f"[{i}]", item, mask, expand, "", notes=notes)
    templates = [c.templates for c in plan.commands if c.templates is not None]
    legend = [
        LEGEND["deferred"] if any(t.deferred for t in templates) else "",
        LEGEND["secret"] if any(t.secret for t in templates) else "",
        LEGEND["discovered"] if any(n.mark == "discovered" for n in notes.values()) else "",
    ]
    if any(legend):
        lines += ["", *filter(None, legend)]
    return "\n".join(lines) + "\n"


LEGEND = {
    "deferred": "deferred: reads a value registered by an earlier step: those parts are "
    "rendered just before it runs",
    "secret": "secret: reads a secret; shown with stand-ins, rendered with the real value at apply",
    "discovered": "discovered: rendered with what the discover steps found on the hosts (plan "
    "--check); apply of the saved plan finds it again first and refuses if it changed",
}


def _group(label: str, group: PlannedGroup, mask: Mask, expand: bool, notes: Notes) -> list[str]:
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
        lines.append(f"    confirm before each batch: {mask(group.confirm)}")
    shared = _common_env(group.commands)
    if shared:
        lines.append(f"    env: {_env(shared, mask)}")
    if not hosts:
        lines.append("    (no hosts)")
    for batch in group.batches:
        lines.append(f"    batch {batch.number}/{len(group.batches)}: {compact(batch.hosts)}")
        for step in batch.steps:
            inner = f"  [{label[1:-1]}.{_inner_index(group, step.name)}]"
            lines += _step(
                inner, step, mask, expand, "    ", _Inherited(group.spec.timeout, shared), notes
            )
    return lines


def _inner_index(group: PlannedGroup, name: str) -> int:
    return group.inner.index(name) + 1 if name in group.inner else 0


def _step(
    label: str,
    step: PlannedStep,
    mask: Mask,
    expand: bool,
    indent: str,
    inherited: _Inherited | None = None,
    notes: Notes | None = None,
) -> list[str]:
    notes = notes or {}
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
    extras = _extras(step, inherited)
    if extras:
        lines.append(f"{indent}    " + "    ".join(extras))
    if step.confirm:
        lines.append(f"{indent}    confirm: {mask(step.confirm)}")
    common = _common_env(cmds)
    above = inherited.env if inherited is not None else {}
    own_common = {k: v for k, v in common.items() if above.get(k) != v}
    if own_common:
        lines.append(f"{indent}    env: {_env(own_common, mask)}")
    marks = {_mark(c, notes.get(c.key, _NO_NOTE)) for c in cmds if not c.skip_reason}
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
        lines += _commands(batch, _Shared(common, shared), mask, expand, inner, notes)
    return lines


@dataclass(frozen=True)
class _Shared:
    """What a step's header already shows for all its commands."""

    env: dict[str, str]
    mark: str


@dataclass(frozen=True)
class _Inherited:
    """What a group's header already shows for its inner steps."""

    timeout: float
    env: dict[str, str]


def _extras(step: PlannedStep, inherited: _Inherited | None) -> list[str]:
    """The step's settings worth a reviewer's eye; an inner step's timeout only when it
    is not its group's."""
    spec = step.spec
    extras = [f"timeout: {spec.timeout:g}s"] if step.commands else []
    if inherited is not None and inherited.timeout == spec.timeout:
        extras = []
    if step.serial is not None:
        extras.append(f"serial: {step.serial} → {len(step.batches)} batches")
    if spec.retries:
        extras.append(f"retries: {spec.retries} every {spec.delay:g}s")
    if spec.until:
        extras.append(f"until: {spec.until}")
    if step.run_once:
        extras.append("run_once")
    if spec.become:
        extras.append(f"become: {spec.user}")
    if step.register:
        extras.append(f"register: {step.register}")
    if step.discover:
        extras.append("discover")
    if step.tags and step.group is None:
        extras.append("tags: " + ", ".join(step.tags))
    return extras


def _common_env(cmds: list[Command]) -> dict[str, str]:
    """Env shared by every host is shown once; each host line shows only what differs."""
    if not cmds:
        return {}
    common = set.intersection(*(set(c.env.items()) for c in cmds))
    return {k: v for k, v in cmds[0].env.items() if (k, v) in common}


def _commands(
    batch: Iterable[Command],
    shared: _Shared,
    mask: Mask,
    expand: bool,
    indent: str,
    notes: Notes,
) -> list[str]:
    """One line (and its continuation) per distinct command; its hosts listed compactly."""
    shown: dict[tuple[object, ...], list[Command]] = {}
    whens: dict[tuple[str, str], str] = {}
    for c in batch:
        # A skipped command's env is never exported: hosts that skip alike are one line.
        own = (
            () if c.skip_reason else tuple((k, v) for k, v in c.env.items() if k not in shared.env)
        )
        note = notes.get(c.key, _NO_NOTE)
        whens[c.key] = when_shown(c)
        key: tuple[object, ...] = (
            (c.host.name,)
            if expand
            else (c.cmd, own, c.skip_reason, _mark(c, note), whens[c.key], note)
        )
        shown.setdefault(key, []).append(c)
    labels = {key: compact([c.host.name for c in cs]) for key, cs in shown.items()}
    width = max(map(len, labels.values()), default=0)
    lines: list[str] = []
    for key, cs in shown.items():
        c = cs[0]
        note = notes.get(c.key, _NO_NOTE)
        label = labels[key].ljust(width)
        lines += _command_lines(c, label, shared, mask, indent, note, whens[c.key])
    return lines


def _command_lines(
    c: Command,
    label: str,
    shared: _Shared,
    mask: Mask,
    indent: str,
    note: Note = _NO_NOTE,
    when: str = "",
) -> list[str]:
    pad = indent + " " * len(label) + "    "
    below = [f"{pad}{mask(line)}" for line in note.lines]
    if c.skip_reason:
        mark = _mark(c, note)
        tail = f"; {mark}" if mark and mark != shared.mark else ""
        return [f"{indent}{label}  (skipped: {c.skip_reason}{tail})", *below]
    cmd_lines = mask(c.cmd).rstrip("\n").split("\n")
    prompt = "" if c.transfer is not None else "$ "  # a copy/fetch is no shell command
    lines = [f"{indent}{label}  {prompt}{cmd_lines[0]}"]
    lines += [f"{pad}{ln}" for ln in cmd_lines[1:]]
    own = {k: v for k, v in c.env.items() if k not in shared.env}
    if own:
        lines.append(f"{pad}env: {_env(own, mask)}")
    if when:
        lines.append(f"{pad}when: {mask(when)} (decided at apply)")
    mark = _mark(c, note)
    if mark and mark != shared.mark:
        lines.append(f"{pad}({mark})")
    return lines + below


def _mark(c: Command, note: Note = _NO_NOTE) -> str:
    t = c.templates
    marks = []
    if t is not None and t.deferred:
        marks.append(f"deferred: reads {', '.join(t.registers)}")
    if t is not None and t.secret:
        marks.append(f"secret: {', '.join(t.secrets)}")
    if note.mark:
        marks.append(note.mark)
    return "; ".join(marks)


def when_shown(c: Command) -> str:
    """A ``when`` decided at apply, as the condition under which this host runs: every
    part known at plan time replaced by its value (``host.name != winner.stdout`` reads
    ``'pg1' != winner.stdout`` on pg1); "" when the plan decided it."""
    t = c.templates
    if t is None or t.when is None or c.skip_reason:
        return ""
    return fold(t.when, t.values, frozenset((*t.registers, *t.secrets)))


def _hosts_label(hosts: str | list[str]) -> str:
    return ", ".join(hosts) if isinstance(hosts, list) else str(hosts)


def _env(env: dict[str, str], mask: Mask) -> str:
    return " ".join(f"{k}={v if v == STAND_IN else mask(shlex.quote(v))}" for k, v in env.items())


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
