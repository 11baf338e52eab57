"""The plan as text: what a reviewer reads. Deterministic: same input, same bytes.

A command identical on several hosts — its text, env and settings (timeout, retries,
``until`` and the values it reads, shell, who it runs as: an inventory's ``become`` and
``become_user`` included), where it runs and what ``plan --check`` found — is shown once
with the hosts listed compactly (``web[01:40]``); whatever differs between hosts is shown
on each host's line, so two hosts share a line only if everything shown for them is the
same (SPEC §6, §7). ``expand`` shows one line per host. A command rendered at apply time
is marked: ``deferred`` (it reads a registered value: shown
rendered but for the parts that read one) or ``secret`` (shown rendered with stand-ins);
a ``when`` decided at apply is shown per host, as the condition under which it runs. A
delegated command shows where it runs (``web03 → controller  $ lbctl drain web03``); a
group's rescue and always steps, and the runbook's always steps, come under headers that
say when they run. A loop's commands are shown item by item; a ``set`` or an ``assert`` as
what it computes or checks (SPEC §11).

Commands are shown as rendered, never masked: secrets are rendered as stand-ins, and
masking would hide literal runbook text that equals a secret's value while it runs
(SPEC §6); only what came from the hosts (``plan --check``'s findings) is masked. Every
line goes through ``runbook.text.printable``: a carriage return, an escape sequence or a
bidi control in a command cannot make it look like another.
"""

from __future__ import annotations

import functools
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
from runbook.model.spec import DEFAULT_SHELL, ExecSpec
from runbook.plan.flow import RESCUE_NAMES
from runbook.templating.partial import fold
from runbook.text import STAND_IN, printable

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
    plan: Plan, expand: bool = False, notes: Notes | None = None, mask: Mask = str
) -> str:
    """The reviewable plan: a header, then every step and group in order; ``notes``:
    what ``plan --check`` found per command (host output: ``mask`` hides secrets in it)."""
    notes = notes or {}
    shown = _Shown(notes, mask)
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
            lines += _group(f"[{i}]", item, expand, shown)
        else:
            lines += _step(f"[{i}]", item, expand, "", shown)
    templates = [c.templates for c in plan.commands if c.templates is not None]
    legend = [
        LEGEND["deferred"] if any(t.deferred for t in templates) else "",
        LEGEND["secret"] if any(t.secret for t in templates) else "",
        LEGEND["rescue"] if any(set(t.registers) & RESCUE_NAMES for t in templates) else "",
        LEGEND["discovered"] if any(n.mark == "discovered" for n in notes.values()) else "",
    ]
    if any(legend):
        lines += ["", *filter(None, legend)]
    # Each element is one line: a newline inside one (a step name, an env value) is shown
    # as an escape, so it cannot start a line that looks like a command.
    return "\n".join(printable(line, multiline=False) for line in lines) + "\n"


@dataclass(frozen=True)
class _Shown:
    """What the plan adds from ``plan --check`` and how its host output is masked."""

    notes: Notes
    mask: Mask

    def note(self, c: Command) -> Note:
        if not self.notes:  # the usual plan: no --check, nothing to look up
            return _NO_NOTE
        return self.notes.get(c.key, _NO_NOTE)


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


def _group(label: str, group: PlannedGroup, expand: bool, shown: _Shown) -> list[str]:
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
        section = Section.MAIN
        for step in batch.steps:
            if step.section is not section:
                section = step.section
                lines.append(f"      {SECTION_HEADS[section]}")
            inner = f"  [{label[1:-1]}.{_inner_index(group, step.name)}]"
            lines += _step(
                inner, step, expand, "    ", shown, _Inherited(group.spec.timeout, shared)
            )
    return lines


def _inner_index(group: PlannedGroup, name: str) -> int:
    """An inner step's number in its group: inner, then rescue, then always steps."""
    names = [*group.inner, *group.rescue, *group.always]
    return names.index(name) + 1 if name in names else 0


def _step(
    label: str,
    step: PlannedStep,
    expand: bool,
    indent: str,
    shown: _Shown,
    inherited: _Inherited | None = None,
) -> list[str]:
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
    marks = {_mark(c, shown.note(c)) for c in cmds if not c.skip_reason}
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
        at = _Shared(common, shared, settings, _varies(cmds))
        lines += _items(batch, at, expand, inner, shown)
    return lines


def _items(
    batch: Iterable[Command], shared: _Shared, expand: bool, indent: str, shown: _Shown
) -> list[str]:
    """A loop's commands item by item (``item 2``, then each host's command for it, as
    batches are shown); any other step's commands as they are."""
    cmds = list(batch)
    indices = sorted({c.item.index for c in cmds if c.item is not None})
    if not indices:
        return _commands(cmds, shared, expand, indent, shown)
    lines = _commands([c for c in cmds if c.item is None], shared, expand, indent, shown)
    for i in indices:
        lines.append(f"{indent}item {i + 1}")
        these = [c for c in cmds if c.item is not None and c.item.index == i]
        lines += _commands(these, shared, expand, indent + "  ", shown)
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
    gives one host's commands settings of their own); the step's own with no command. A
    set or an assert runs no command: no timeout to show."""
    cmds = [c for c in step.commands if not c.skip_reason] or list(step.commands)
    if not cmds:
        return dict(_settings(step.spec))
    first, *rest = (_own_settings(c) for c in cmds)
    return {k: v for k, v in first.items() if all(other.get(k) == v for other in rest)}


def _own_settings(c: Command) -> dict[str, str]:
    if c.controlled is not None:
        return {}
    spec = c.spec
    known = _SETTINGS_OF.get(id(spec))
    if known is None or known[0] is not spec:  # an id is reused once its spec is gone
        known = _SETTINGS_OF[id(spec)] = (spec, _settings(spec))
        if len(_SETTINGS_OF) > 4096:
            _SETTINGS_OF.clear()
    return known[1]


# A spec's settings by the spec's identity: hashing a spec (every field, per command)
# for the cache of ``_settings`` cost more than the text it finds (20,000 commands).
_SETTINGS_OF: dict[int, tuple[ExecSpec, dict[str, str]]] = {}


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
    items = [c.item for c in step.commands if c.item is not None]
    if items:
        most = max(i.index for i in items) + 1
        extras.append(f"loop: {counted(most, 'item')} as {items[0].var}")
    if step.serial is not None:
        extras.append(f"serial: {step.serial} → {len(step.batches)} batches")
    extras += [settings[k] for k in ("retries", "until", "shell") if k in settings]
    if step.run_once:
        extras.append("run_once")
    if "become" in settings:
        extras.append(settings["become"])
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
    common = dict(cmds[0].env)
    for c in cmds:
        if not common:
            break
        env = c.env
        if env is not cmds[0].env:
            common = {k: v for k, v in common.items() if k in env and env[k] == v}
    return common


def _commands(
    batch: Iterable[Command], shared: _Shared, expand: bool, indent: str, shown: _Shown
) -> list[str]:
    """One line (and its continuation) per distinct command; its hosts listed compactly.
    Hosts share a line exactly when everything shown for them is the same."""
    lines_of: dict[tuple[object, ...], list[Command]] = {}
    owns: dict[tuple[object, ...], list[str]] = {}  # each line's own parts, made once
    for c in batch:
        own = _own(c, shared, shown)
        key: tuple[object, ...] = (c.host.name,) if expand else (c.cmd, _delegate(c), *own)
        found = lines_of.get(key)
        if found is None:
            lines_of[key], owns[key] = [c], own
        else:
            found.append(c)
    labels = {
        key: compact([c.host.name for c in cs]) + _delegate(cs[0]) for key, cs in lines_of.items()
    }
    width = max(map(len, labels.values()), default=0)
    lines: list[str] = []
    for key, cs in lines_of.items():
        lines += _command_lines(cs[0], labels[key].ljust(width), indent, owns[key])
    return lines


def _own(c: Command, shared: _Shared, shown: _Shown) -> list[str]:
    """What a command's lines show beyond its text: what the step's header does not say
    for all of its commands (env, settings, the values ``until`` reads, the condition it
    runs under, marks) and what ``plan --check`` found for it."""
    note = shown.note(c)
    below = [shown.mask(line) for line in note.lines]
    mark = _mark(c, note)
    if c.skip_reason:
        tail = f"; {mark}" if mark and mark != shared.mark else ""
        return [f"(skipped: {c.skip_reason}{tail})", *below]
    own_env = {k: v for k, v in c.env.items() if k not in shared.env}
    settings = [v for k, v in _own_settings(c).items() if shared.settings.get(k) != v]
    settings += [] if not shared.until_vars else [f"until reads: {_bound(c.until_vars)}"]
    when = when_shown(c)
    return [
        f"env: {_env(own_env)}" if own_env else "",
        "    ".join(settings),
        f"when: {shown.mask(when)} (decided at apply)" if when else "",
        f"({mark})" if mark and mark != shared.mark else "",
        *below,
    ]


def _command_lines(c: Command, label: str, indent: str, own: list[str]) -> list[str]:
    """``own``: what ``_own`` gives for ``c``."""
    # Continuation lines line up with the command's first line (a set's or an assert's
    # lines are its own; a transfer's notes sit where a command's would).
    pad = indent + " " * len(label) + ("  " if c.controlled is not None else "    ")
    if c.skip_reason:
        return [f"{indent}{label}  {own[0]}", *(f"{pad}{line}" for line in own[1:])]
    prompt = "$ " if c.is_shell else ""  # a copy, fetch, wait, reboot, set or assert is not
    cmd_lines = c.cmd.rstrip("\n").split("\n")
    lines = [f"{indent}{label}  {prompt}{cmd_lines[0]}"]
    lines += [f"{pad}{ln}" for ln in cmd_lines[1:]]
    return lines + [f"{pad}{line}" for line in own if line]


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


def _env(env: dict[str, str]) -> str:
    return " ".join(f"{k}={v if v == STAND_IN else shlex.quote(v)}" for k, v in env.items())


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
    if isinstance(names, list) and len(names) == 1:
        return str(names[0])  # one host is its own name, however it is numbered
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
