"""What a procedure change will run differently: two plans compared (SPEC §9).

A reviewer needs not the YAML diff but the plan's: which commands change on which hosts,
which steps appear, go or move, which timeouts or batch sizes change. Plans are
deterministic, so comparing two of them is comparing what will run. Pure: no I/O
(``diff.sources`` makes the two plans, ``diff.views`` renders the result).

Steps are matched by name (unique across a runbook and its includes), then commands by
host. Settings are compared field by field over ``ExecSpec`` and the planned step or group
(``dataclasses.fields``), so a new step option is compared without a change here. A
command rendered at apply time (deferred or secret) compares as its templates plus the
values bound to them; a secret is only ever its stand-in, so a secret whose value
changed is no difference, and its value is nowhere in a ``PlanDiff``.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from runbook.load.steps import INNER_FORBIDDEN
from runbook.model.command import Command
from runbook.model.controller import controlled_to_dict
from runbook.model.plan import Plan, PlannedGroup, PlannedStep
from runbook.model.spec import ExecSpec
from runbook.plan.flow import shown_delegate
from runbook.plan.text import when_shown

ADDED, REMOVED, CHANGED, MOVED, UNCHANGED = "added", "removed", "changed", "moved", "unchanged"
FORMAT = "runbook-plan-diff"
VERSION = 1

# Planned-step fields that are not settings: identity, where it is written, the commands,
# and values derived from others (max_failures is compared resolved, as the runner uses it).
_NOT_SETTINGS = frozenset(
    {"name", "position", "batches", "spec", "register_hosts", "group", "batch", "inner"}
    | {"once_for", "rescue", "always", "confirm_templates"}  # confirm shows the text
)
# Host fields that say where a command runs; groups and become show in commands already.
_HOST_SKIP = frozenset({"groups", "become", "become_user"})
_ALWAYS_SHOWN = frozenset({"hosts", "timeout"})  # for a step added or removed whole


def plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples → lists): a runbook planned now and a
    saved plan read back from JSON compare equal when they say the same thing."""
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class Change:
    """One named value that differs: a setting, an env var, a bound value. ``kind`` says
    whether it exists on one side only (then the other side's value means "absent")."""

    name: str
    old: Any = None
    new: Any = None
    kind: str = CHANGED

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "change": self.kind}
        if self.kind != ADDED:
            d["old"] = self.old
        if self.kind != REMOVED:
            d["new"] = self.new
        return d


@dataclass(frozen=True)
class CommandView:
    """One host's command as compared and shown: the text a reviewer sees (a secret as its
    stand-in, a deferred command as its template), what it reads at apply time, and its
    settings where they differ from its step's."""

    cmd: str
    env: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None
    deferred: tuple[str, ...] = ()  # registered names it reads
    secret: tuple[str, ...] = ()  # secret names it reads (never their values)
    template: dict[str, Any] | None = None  # run, env, step_env, when, values
    until_vars: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    transfer: bool = False  # a copy or fetch: ``cmd`` is its summary, no shell runs it
    wait: bool = False  # a wait_for or reboot: ``cmd`` is its summary (limits included)
    delegate: str | None = None  # delegate_to: where it runs (``controller``, a host)
    # A set or an assert (``cmd`` is its summary) as planned; a loop's item or its source.
    controlled: dict[str, Any] | None = None
    loop: dict[str, Any] | None = None
    # A when decided at apply, as the plan shows it for this host (what is known at plan
    # time filled in); compared as the template's ``when``.
    when: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"cmd": self.cmd, "env": self.env}
        if self.transfer:
            d["transfer"] = True
        if self.wait:
            d["wait"] = True
        if self.delegate is not None:
            d["delegate"] = self.delegate
        if self.controlled is not None:
            d.update(self.controlled)
        if self.loop is not None:
            d["loop"] = self.loop
        if self.skipped is not None:
            d["skipped"] = self.skipped
        if self.deferred:
            d["deferred"] = list(self.deferred)
        if self.secret:
            d["secret"] = list(self.secret)
        if self.template is not None:
            d["template"] = self.template
        if self.until_vars:
            d["until_vars"] = self.until_vars
        if self.settings:
            d["settings"] = self.settings
        return d


@dataclass(frozen=True)
class CommandDiff:
    """The same change on several hosts (``hosts``: labels, ``host_names``: the hosts)."""

    hosts: tuple[str, ...]
    change: str  # added | removed | changed
    old: CommandView | None = None
    new: CommandView | None = None
    details: tuple[Change, ...] = ()  # for a changed command: what differs
    host_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        from runbook.plan.text import compact

        d: dict[str, Any] = {"hosts": list(self.hosts), "label": compact(self.hosts)}
        d["change"] = self.change
        if self.old is not None:
            d["old"] = self.old.to_dict()
        if self.new is not None:
            d["new"] = self.new.to_dict()
        if self.change == CHANGED:
            d["details"] = [c.to_dict() for c in self.details]
        return d


@dataclass(frozen=True)
class StepDiff:
    """A step or group that differs. A group whose own settings are unchanged but whose
    inner steps differ is listed ``unchanged``, holding them in ``steps``."""

    name: str
    kind: str  # step | group
    status: str  # added | removed | changed | moved | unchanged
    old_index: str | None = None  # as the text plan numbers it: "3", "2.1"
    new_index: str | None = None
    moved: bool = False
    group: str | None = None
    settings: tuple[Change, ...] = ()
    commands: tuple[CommandDiff, ...] = ()
    steps: tuple[StepDiff, ...] = ()
    hosts: tuple[str, ...] = ()  # every host it runs on, either side

    @property
    def hosts_added(self) -> list[str]:
        return [h for c in self.commands if c.change == ADDED for h in c.hosts]

    @property
    def hosts_removed(self) -> list[str]:
        return [h for c in self.commands if c.change == REMOVED for h in c.hosts]

    def affected(self) -> list[str]:
        """Hosts that run differently: all of them when a setting or the order changed."""
        if self.status in (ADDED, REMOVED) or self.settings or self.moved:
            return list(self.hosts)
        return [h for c in self.commands for h in c.host_names]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "index": {"old": self.old_index, "new": self.new_index},
            "moved": self.moved,
            "group": self.group,
            "settings": [c.to_dict() for c in self.settings],
            "hosts_added": self.hosts_added,
            "hosts_removed": self.hosts_removed,
            "commands": [c.to_dict() for c in self.commands],
        }
        if self.kind == "group":
            d["steps"] = [s.to_dict() for s in self.steps]
        return d


@dataclass(frozen=True)
class HostDiff:
    """Hosts whose connection settings (address, port, user ...) changed the same way."""

    hosts: tuple[str, ...]
    changes: tuple[Change, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"hosts": list(self.hosts), "changes": [c.to_dict() for c in self.changes]}


@dataclass(frozen=True)
class PlanDiff:
    old: str  # what each side is, for the reader: a path, or REV:path
    new: str
    plan: tuple[Change, ...] = ()  # the runbook's name, its secrets' names
    hosts: tuple[HostDiff, ...] = ()
    steps: tuple[StepDiff, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.plan or self.hosts or self.steps)

    def all_steps(self) -> Iterator[StepDiff]:
        """Every listed step, a group's inner steps after it."""
        for s in self.steps:
            yield s
            yield from s.steps

    def counts(self) -> dict[str, int]:
        """Steps per status (``moved`` counts every moved step, changed or not)."""
        steps = list(self.all_steps())
        out = {k: sum(s.status == k for s in steps) for k in (CHANGED, ADDED, REMOVED)}
        out[MOVED] = sum(s.moved for s in steps)
        return out

    def affected_hosts(self) -> list[str]:
        names = [h for s in self.all_steps() for h in s.affected()]
        names += [h for d in self.hosts for h in d.hosts]
        return list(dict.fromkeys(names))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "old": self.old,
            "new": self.new,
            "changed": self.changed,
            "summary": {**self.counts(), "hosts_affected": self.affected_hosts()},
            "plan": [c.to_dict() for c in self.plan],
            "hosts": [h.to_dict() for h in self.hosts],
            "steps": [s.to_dict() for s in self.steps],
        }


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    """What ``new`` runs differently from ``old``; unchanged steps and hosts left out."""
    a, b = _views(old), _views(new)
    moved = _moved(list(a), list(b))
    diffs: dict[str, StepDiff] = {}
    for name in [*b, *(n for n in a if n not in b)]:
        d = _step_diff(a.get(name), b.get(name), name in moved)
        if d is not None:
            diffs[name] = d
    plan: list[Change] = []
    if old.name != new.name:
        plan.append(Change("name", old.name, new.name))
    if sorted(old.secret_names) != sorted(new.secret_names):
        plan.append(Change("secrets", sorted(old.secret_names), sorted(new.secret_names)))
    return PlanDiff(
        old=old.source,
        new=new.source,
        plan=tuple(plan),
        hosts=_host_diffs(old, new),
        steps=_arrange(a, b, diffs),
    )


# -- one side: steps and groups as compared -------------------------------------------------


@dataclass(frozen=True)
class _View:
    """A step or group of one plan, flattened for comparison (an inner step's copies, one
    per batch, merged)."""

    name: str
    kind: str
    group: str | None
    index: str
    settings: dict[str, Any]
    batches: list[list[str]]  # compared when either side has more than one
    commands: dict[str, tuple[str, CommandView]]  # label → (host, command)
    hosts: tuple[str, ...]


def _views(plan: Plan) -> dict[str, _View]:
    """Every step and group by name, in execution order (a group, then its inner steps).
    One that runs on no host is left out, as a saved plan narrowed by ``--limit`` leaves
    it out: it runs nothing, so it compares as absent."""
    views: dict[str, _View] = {}
    for i, item in enumerate(plan.steps, 1):
        if not item.commands and not (isinstance(item, PlannedGroup) and item.batches):
            continue
        if isinstance(item, PlannedStep):
            views[item.name] = _step_view([item], str(i), None)
            continue
        batches = [list(b.hosts) for b in item.batches]
        hosts = tuple(h for b in batches for h in b)
        views[item.name] = _View(
            item.name, "group", None, str(i), _group_settings(item), batches, {}, hosts
        )
        copies: dict[str, list[PlannedStep]] = {}
        for batch in item.batches:
            for step in batch.steps:
                copies.setdefault(step.name, []).append(step)
        for name, steps in copies.items():
            if not any(s.commands for s in steps):
                continue
            names = [*item.inner, *item.rescue, *item.always]  # numbered as the plan text
            number = names.index(name) + 1 if name in names else 0
            views[name] = _step_view(steps, f"{i}.{number}", item.name)
    return views


def _step_view(copies: list[PlannedStep], index: str, group: str | None) -> _View:
    first = copies[0]
    commands = [c for s in copies for c in s.commands]
    settings = _step_settings(first, commands, inner=group is not None)
    shown: dict[str, tuple[str, CommandView]] = {}
    for step in copies:
        for c in step.commands:
            label = c.host.name if c.item is None else f"{c.host.name} item {c.item.index + 1}"
            # A local inner step runs on the controller once per batch.
            if label in shown or (group is not None and step.local):
                label = f"{label} (batch {step.batch})"
            shown[label] = (c.host.name, _command_view(c, settings))
    batches = [[c.host.name for c in b] for b in first.batches] if group is None else []
    hosts = tuple(dict.fromkeys(c.host.name for c in commands))
    return _View(first.name, "step", group, index, settings, batches, shown, hosts)


def _command_fields(spec: ExecSpec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in fields(spec) if not f.metadata.get("policy")}


def _step_settings(step: PlannedStep, commands: list[Command], inner: bool) -> dict[str, Any]:
    """The step's fields, then its ``ExecSpec``'s: the command-level ones as most of its
    commands have them (a host's ``ansible_become`` may differ: that shows per host),
    the policy as the step has it, ``max_failures`` resolved to a count."""
    counts = Counter(c.spec for c in commands)
    common = max(counts, key=counts.__getitem__) if counts else step.spec
    out = {f.name: getattr(step, f.name) for f in fields(step) if f.name not in _NOT_SETTINGS}
    out.pop("max_failures")
    out.update(_command_fields(common))
    out.update(on_failure=step.spec.on_failure, max_failures=step.max_failures)
    if inner:  # the group's batches and policy are its inner steps'
        for name in INNER_FORBIDDEN:
            out.pop(name, None)
    settings: dict[str, Any] = plain(out)
    return settings


def _group_settings(group: PlannedGroup) -> dict[str, Any]:
    """A group's own settings; the step defaults it hands down show in its inner steps."""
    out = {f.name: getattr(group, f.name) for f in fields(group) if f.name not in _NOT_SETTINGS}
    out.pop("max_failures")
    out.update(on_failure=group.spec.on_failure, max_failures=group.max_failures)
    settings: dict[str, Any] = plain(out)
    return settings


def _command_view(c: Command, settings: Mapping[str, Any]) -> CommandView:
    t = c.templates
    template = None
    if t is not None:
        template = {
            "run": t.run,
            "env": dict(t.env),
            "step_env": dict(t.step_env),
            "when": t.when,
            "values": plain(t.values),
        }
    own = plain(_command_fields(c.spec))
    return CommandView(
        cmd=c.cmd,
        env=dict(c.env),
        skipped=c.skip_reason,
        deferred=t.registers if t is not None else (),
        secret=t.secrets if t is not None else (),
        template=template,
        until_vars=plain(c.until_vars),
        settings={k: v for k, v in own.items() if settings.get(k) != v},
        transfer=c.transfer is not None,
        wait=c.wait is not None,
        delegate=None if c.delegate is None else shown_delegate(c.delegate),
        controlled=plain(controlled_to_dict(c.controlled)) if c.controlled is not None else None,
        loop=_loop_view(c),
        when=when_shown(c),
    )


def _loop_view(c: Command) -> dict[str, Any] | None:
    """A loop's item as compared (its value, as the command shows it rendered), or the
    source of a loop expanded at run time."""
    view: dict[str, Any] | None = None
    if c.item is not None:
        view = plain({"item": c.item.value, "var": c.item.var})
    elif c.loop is not None:
        view = plain({"source": c.loop.source, "var": c.loop.var})
    return view


# -- comparing ----------------------------------------------------------------------------


def _moved(old: list[str], new: list[str]) -> set[str]:
    """Names in both whose relative order changed: those outside a longest common
    subsequence of the two orders (names are unique, so it is a longest increasing
    subsequence of old positions taken in new order)."""
    common = set(old) & set(new)
    where = {name: i for i, name in enumerate(n for n in old if n in common)}
    seq = [(where[n], n) for n in new if n in common]
    tails: list[int] = []  # smallest old position ending a run of each length
    ends: list[int] = []  # index into seq of that run's end
    back: list[int] = []
    for k, (pos, _) in enumerate(seq):
        i = bisect_left(tails, pos)
        back.append(ends[i - 1] if i else -1)
        if i == len(tails):
            tails.append(pos)
            ends.append(k)
        else:
            tails[i], ends[i] = pos, k
    kept: set[str] = set()
    k = ends[-1] if ends else -1
    while k >= 0:
        kept.add(seq[k][1])
        k = back[k]
    return common - kept


def _step_diff(a: _View | None, b: _View | None, moved: bool) -> StepDiff | None:
    if a is None or b is None:
        return _one_sided(b, ADDED) if a is None else _one_sided(a, REMOVED)
    settings = _dict_changes(a.settings, b.settings)
    if a.group != b.group:
        settings.insert(0, Change("group", a.group, b.group))
    if a.kind != b.kind:
        settings.insert(0, Change("kind", a.kind, b.kind))
    if max(len(a.batches), len(b.batches)) > 1 and a.batches != b.batches:
        settings.append(Change("batches", a.batches, b.batches))
    commands = _command_diffs(a.commands, b.commands)
    if not (settings or commands or moved):
        return None
    return StepDiff(
        name=b.name,
        kind=b.kind,
        status=CHANGED if settings or commands else MOVED,
        old_index=a.index,
        new_index=b.index,
        moved=moved,
        group=b.group,
        settings=tuple(settings),
        commands=commands,
        hosts=tuple(dict.fromkeys([*b.hosts, *a.hosts])),
    )


def _defaults() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in (PlannedStep, PlannedGroup, ExecSpec):
        for f in fields(cls):
            if f.default is not MISSING:
                out.setdefault(f.name, plain(f.default))
    return out


_DEFAULTS = _defaults()


def _one_sided(view: _View | None, status: str) -> StepDiff:
    """A step only one plan has: its settings that are not the defaults, every command."""
    assert view is not None
    always = _ALWAYS_SHOWN if view.group is None else _ALWAYS_SHOWN - {"hosts"}  # the batch
    side = {k: v for k, v in view.settings.items() if k in always or _DEFAULTS.get(k) != v}
    if len(view.batches) > 1:
        side["batches"] = view.batches
    added = status == ADDED
    settings = tuple(
        Change(k, None, v, ADDED) if added else Change(k, v, None, REMOVED) for k, v in side.items()
    )
    empty: dict[str, tuple[str, CommandView]] = {}
    commands = _command_diffs(empty, view.commands) if added else _command_diffs(view.commands, {})
    return StepDiff(
        name=view.name,
        kind=view.kind,
        status=status,
        old_index=None if added else view.index,
        new_index=view.index if added else None,
        group=view.group,
        settings=settings,
        commands=commands,
        hosts=view.hosts,
    )


def _command_diffs(
    a: Mapping[str, tuple[str, CommandView]], b: Mapping[str, tuple[str, CommandView]]
) -> tuple[CommandDiff, ...]:
    """Per host, then hosts with the very same change grouped (in plan order: changed and
    added hosts as the new plan has them, then removed ones)."""
    grouped: dict[str, tuple[str, CommandView | None, CommandView | None, list[str], list[str]]]
    grouped = {}

    def add(kind: str, label: str, host: str, o: CommandView | None, n: CommandView | None) -> None:
        key = json.dumps([kind, o and o.to_dict(), n and n.to_dict()], sort_keys=True)
        entry = grouped.setdefault(key, (kind, o, n, [], []))
        entry[3].append(label)
        entry[4].append(host)

    for label, (host, view) in b.items():
        if label not in a:
            add(ADDED, label, host, None, view)
        elif a[label][1] != view:
            add(CHANGED, label, host, a[label][1], view)
    for label, (host, view) in a.items():
        if label not in b:
            add(REMOVED, label, host, view, None)
    return tuple(
        CommandDiff(
            hosts=tuple(labels),
            change=kind,
            old=o,
            new=n,
            details=_details(o, n) if o is not None and n is not None else (),
            host_names=tuple(dict.fromkeys(hosts)),
        )
        for kind, o, n, labels, hosts in grouped.values()
    )


def _details(o: CommandView, n: CommandView) -> tuple[Change, ...]:
    """What differs in one host's command: the shown text first, then what it does not
    show as written (a template behind a secret's stand-in, a value a template reads)."""
    out: list[Change] = []
    if o.cmd != n.cmd:
        out.append(Change("cmd", o.cmd, n.cmd))
    if o.delegate != n.delegate:
        out.append(_absent("delegate", o.delegate, n.delegate))
    out += _dict_changes(o.env, n.env, "env.")
    if o.skipped != n.skipped:
        out.append(_absent("skipped", o.skipped, n.skipped))
    ot, nt = o.template or {}, n.template or {}
    if ot.get("when") != nt.get("when"):
        out.append(_absent("when", ot.get("when"), nt.get("when")))
    if ot.get("run") != nt.get("run") and (o.cmd, n.cmd) != (ot.get("run"), nt.get("run")):
        out.append(_absent("template.run", ot.get("run"), nt.get("run")))
    for part in ("env", "step_env"):
        for c in _dict_changes(ot.get(part, {}), nt.get(part, {}), f"template.{part}."):
            key = _last(c.name)
            if (o.env.get(key), n.env.get(key)) != (c.old, c.new):  # not shown as written
                out.append(c)
    out += _dict_changes(ot.get("values", {}), nt.get("values", {}), "values.", nested=True)
    out += _dict_changes(o.until_vars, n.until_vars, "until_vars.", nested=True)
    out += _dict_changes(o.settings, n.settings, "settings.")
    for name in ("deferred", "secret"):
        old, new = getattr(o, name), getattr(n, name)
        if old != new:
            out.append(Change(name, list(old), list(new)))
    for name in ("controlled", "loop"):
        old, new = getattr(o, name), getattr(n, name)
        if old != new and o.cmd == n.cmd:  # not shown by the command or summary
            out.append(_absent(name, old, new))
    if not out:  # cannot happen: every field is covered above; never hide a difference
        out.append(Change("command", o.to_dict(), n.to_dict()))
    return tuple(out)


def _last(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _absent(name: str, old: Any, new: Any) -> Change:
    """A change where ``None`` means "not set"."""
    kind = ADDED if old is None else REMOVED if new is None else CHANGED
    return Change(name, old, new, kind)


def _dict_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "", nested: bool = False
) -> list[Change]:
    """Keys added, removed or changed (``nested``: into mappings, as ``a.b``)."""
    out: list[Change] = []
    for k in [*old, *(k for k in new if k not in old)]:
        name = f"{prefix}{k}"
        if k not in new:
            out.append(Change(name, old[k], None, REMOVED))
        elif k not in old:
            out.append(Change(name, None, new[k], ADDED))
        elif old[k] != new[k]:
            if nested and isinstance(old[k], dict) and isinstance(new[k], dict):
                out += _dict_changes(old[k], new[k], f"{name}.", nested)
            else:
                out.append(Change(name, old[k], new[k]))
    return out


def _host_diffs(old: Plan, new: Plan) -> tuple[HostDiff, ...]:
    """Hosts in both plans whose connection changed; the same change grouped."""

    def connections(plan: Plan) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for c in plan.commands:
            if c.host.name not in out:
                d = c.host.to_dict()
                out[c.host.name] = plain({k: v for k, v in d.items() if k not in _HOST_SKIP})
        return out

    a, b = connections(old), connections(new)
    grouped: dict[str, tuple[list[Change], list[str]]] = {}
    for name, now in b.items():
        if name in a and a[name] != now:
            changes = _dict_changes(a[name], now)
            key = json.dumps([c.to_dict() for c in changes], sort_keys=True)
            grouped.setdefault(key, (changes, []))[1].append(name)
    return tuple(HostDiff(tuple(names), tuple(changes)) for changes, names in grouped.values())


# -- arranging ----------------------------------------------------------------------------


def _arrange(
    a: dict[str, _View], b: dict[str, _View], diffs: dict[str, StepDiff]
) -> tuple[StepDiff, ...]:
    """Steps in the new plan's order, a removed step after the one it followed; a group's
    inner steps inside it (a group unchanged itself listed when they changed)."""

    def merged(parent: str | None) -> list[str]:
        old = [n for n, v in a.items() if v.group == parent]
        out = [n for n, v in b.items() if v.group == parent]
        prev: str | None = None
        for name in old:
            if name not in b:
                out.insert(out.index(prev) + 1 if prev in out else 0, name)
            if name in out:
                prev = name
        return out

    arranged: list[StepDiff] = []
    for name in merged(None):
        d = diffs.get(name)
        view = b.get(name) or a[name]
        if view.kind == "group":
            inner = tuple(diffs[n] for n in merged(name) if n in diffs)
            if d is None and inner:
                d = StepDiff(name, "group", UNCHANGED, a[name].index, view.index)
            if d is not None:
                d = replace(d, steps=inner)
        if d is not None:
            arranged.append(d)
    return tuple(arranged)
