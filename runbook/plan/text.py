"""The plan as text: what a reviewer reads. Deterministic: same input, same bytes.

A command and env identical on several hosts is shown once with the hosts listed
compactly (``web[01:40]``); ``expand`` shows one line per host (SPEC §7). A command
rendered at apply time is marked: ``deferred`` (it reads a registered value: shown
rendered but for the parts that read one) or ``secret`` (shown rendered with stand-ins);
a ``when`` decided at apply is shown per host, as the condition under which it runs. A
delegated command shows where it runs (``web03 → controller  $ lbctl drain web03``); a
group's rescue and always steps, and the runbook's always steps, come under headers that
say when they run. A loop's commands are shown item by item; a ``set`` or an ``assert`` as
what it computes or checks (SPEC §11).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from runbook.load.secrets import token
from runbook.load.vault import ID_PREFIX as VAULT_ID
from runbook.model.command import Command, Templates
from runbook.model.controller import Assertion
from runbook.model.plan import Plan, PlannedGroup, PlannedStep, Section
from runbook.plan.flow import RESCUE_NAMES
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
        f"{counted(plan.step_count, 'step')}, {counted(len(plan.host_names), 'host')}, "
        f"{counted(len(plan.commands), 'command')}",
    ]
    for i, item in enumerate(plan.steps, 1):
        lines.append("")
        if item.section is Section.ALWAYS and (i == 1 or plan.steps[i - 2].section != item.section):
            lines += [RUNBOOK_ALWAYS, ""]
        if isinstance(item, PlannedGroup):
            lines += _group(f"[{i}]", item, mask, expand, notes)
        else:
            lines += _step(f"[{i}]", item, mask, expand, "", notes=notes)
    templates = [c.templates for c in plan.commands if c.templates is not None]
    legend = [
        LEGEND["deferred"] if any(t.deferred for t in templates) else "",
        LEGEND["secret"] if any(t.secret for t in templates) else "",
        LEGEND["rescue"] if any(set(t.registers) & RESCUE_NAMES for t in templates) else "",
        LEGEND["discovered"] if any(n.mark == "discovered" for n in notes.values()) else "",
    ]
    if any(legend):
        lines += ["", *filter(None, legend)]
    return "\n".join(lines) + "\n"


RUNBOOK_ALWAYS = "always: after the steps, or after a halt or Ctrl-C; before the recap"
SECTION_HEADS = {
    Section.RESCUE: "rescue: on each host that failed a step above; rescued if all succeed",
    Section.ALWAYS: "always: on every host of the batch, whatever happened",
}

LEGEND = {
    "deferred": "deferred: reads a value registered by an earlier step: those parts are "
    "rendered just before it runs",
    "secret": "secret: reads a secret; shown with stand-ins, rendered with the real value at apply",
    "rescue": "failed_step, failed_result: what failed on the host, known when its rescue runs",
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
        section = Section.MAIN
        for step in batch.steps:
            if step.section is not section:
                section = step.section
                lines.append(f"      {SECTION_HEADS[section]}")
            inner = f"  [{label[1:-1]}.{_inner_index(group, step.name)}]"
            lines += _step(
                inner, step, mask, expand, "    ", _Inherited(group.spec.timeout, shared), notes
            )
    return lines


def _inner_index(group: PlannedGroup, name: str) -> int:
    """An inner step's number in its group: inner, then rescue, then always steps."""
    names = [*group.inner, *group.rescue, *group.always]
    return names.index(name) + 1 if name in names else 0


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
        head += f"    hosts: {where} ({len({c.host.name for c in cmds})})    {policy}"
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
        lines += _items(batch, _Shared(common, shared), mask, expand, inner, notes)
    return lines


def _items(
    batch: Iterable[Command],
    shared: _Shared,
    mask: Mask,
    expand: bool,
    indent: str,
    notes: Notes,
) -> list[str]:
    """A loop's commands item by item (``item 2``, then each host's command for it, as
    batches are shown); any other step's commands as they are."""
    cmds = list(batch)
    indices = sorted({c.item.index for c in cmds if c.item is not None})
    if not indices:
        return _commands(cmds, shared, mask, expand, indent, notes)
    lines = _commands([c for c in cmds if c.item is None], shared, mask, expand, indent, notes)
    for i in indices:
        lines.append(f"{indent}item {i + 1}")
        these = [c for c in cmds if c.item is not None and c.item.index == i]
        lines += _commands(these, shared, mask, expand, indent + "  ", notes)
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
    on_controller = any(c.controlled is not None for c in step.commands)
    extras = [f"timeout: {spec.timeout:g}s"] if step.commands and not on_controller else []
    if inherited is not None and inherited.timeout == spec.timeout:
        extras = []
    items = [c.item for c in step.commands if c.item is not None]
    if items:
        most = max(i.index for i in items) + 1
        extras.append(f"loop: {counted(most, 'item')} as {items[0].var}")
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
            else (c.cmd, own, c.skip_reason, _mark(c, note), whens[c.key], note, _delegate(c))
        )
        shown.setdefault(key, []).append(c)
    labels = {
        key: compact([c.host.name for c in cs]) + _delegate(cs[0]) for key, cs in shown.items()
    }
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
    prompt = "$ " if c.is_shell else ""  # a copy, fetch, wait, reboot, set or assert is not
    # Continuation lines line up with the command's first line (a set's or an assert's
    # lines are its own; a transfer's notes sit where a command's would).
    pad = indent + " " * len(label) + ("  " if c.controlled is not None else "    ")
    below = [f"{pad}{mask(line)}" for line in note.lines]
    if c.skip_reason:
        mark = _mark(c, note)
        tail = f"; {mark}" if mark and mark != shared.mark else ""
        return [f"{indent}{label}  (skipped: {c.skip_reason}{tail})", *below]
    cmd_lines = mask(c.cmd).rstrip("\n").split("\n")
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


def _delegate(c: Command) -> str:
    """`` → controller`` after a delegated command's hosts: where it runs."""
    if c.delegate is None:
        return ""
    return " → " + ("controller" if c.delegate.is_local else c.delegate.name)


def _mark(c: Command, note: Note = _NO_NOTE) -> str:
    t = c.templates
    if isinstance(c.controlled, Assertion) and c.controlled.held is False:
        return f"does not hold: {c.controlled.failure}"
    marks = []
    if t is not None and t.deferred:
        marks.append(f"deferred: reads {', '.join(t.registers)}")
    if t is not None and t.secret:
        marks.append(f"secret: {', '.join(_secret_names(t))}")
    if c.loop is not None:
        marks.append(f"loop decided at apply: {c.loop.source} as {c.loop.var}")
    if note.mark:
        marks.append(note.mark)
    return "; ".join(marks)


VAULT_TOKEN = token(VAULT_ID)[:-2]  # ((secret:_vault_ — how a vaulted value is stored


def _secret_names(t: Templates) -> list[str]:
    """The secrets a command reads, by the names its templates use: a vaulted value by
    the var that holds it (its secret's own name means nothing to a reader)."""
    names = [n for n in t.secrets if not n.startswith(VAULT_ID)]
    vaulted = [k for k, v in t.values.items() if VAULT_TOKEN in json.dumps(v)]
    return sorted(names + [f"{k} (vaulted)" for k in vaulted])


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
    """Hosts ``prefix + number + suffix`` with consecutive numbers, written either
    unpadded (``host9``, ``host10``: any width) or zero-padded to one width (``web01``)."""

    prefix: str
    width: int  # 0: unpadded
    suffix: str
    first: int
    last: int

    def num(self, n: int) -> str:
        return f"{n:0{self.width}d}" if self.width else str(n)

    def takes(self, prefix: str, digits: str, suffix: str) -> bool:
        """Whether ``prefix + digits + suffix`` is the next host of this run."""
        n = int(digits)
        fits = self.num(n) == digits and (not self.width or len(digits) == self.width)
        return fits and (prefix, suffix) == (self.prefix, self.suffix) and n == self.last + 1

    def __str__(self) -> str:
        if self.first == self.last:
            return f"{self.prefix}{self.num(self.first)}{self.suffix}"
        return f"{self.prefix}[{self.num(self.first)}:{self.num(self.last)}]{self.suffix}"


def compact(names: Iterable[str]) -> str:
    """``web01 web02 web03 db1`` → ``web[01:03], db1``; ``host1`` … ``host50`` →
    ``host[1:50]``: runs of consecutive numbers with one prefix and suffix become a range
    in Ansible's pattern syntax, where ``[01:50]`` pads both ends to one width and
    ``[1:50]`` does not pad at all; order kept. The one folding of host names: plan text,
    console, recap and diff all use it."""
    out: list[_Run | str] = []
    for name in names:
        m = _NUMBERED.match(name)
        if m is None:
            out.append(name)
            continue
        prefix, digits, suffix = m.groups()
        last = out[-1] if out else None
        if isinstance(last, _Run) and last.takes(prefix, digits, suffix):
            last.last = int(digits)
        else:
            width = len(digits) if digits.startswith("0") and len(digits) > 1 else 0
            out.append(_Run(prefix, width, suffix, int(digits), int(digits)))
    return ", ".join(map(str, out))
