"""Step lists → ``Step`` models: includes expanded, groups built, inheritance applied.

What the schema cannot say is checked here, each with the position of the offending key
in its own file: a step has exactly one action; groups do not nest; inner steps take no
``serial`` or failure policy (the group's batches and policy are theirs); names are unique
across the runbook and everything it includes; an include cycle is an error; ``rescue``
and ``always`` belong to groups; ``local`` takes no ``hosts`` (that is ``delegate_to``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runbook.errors import DocPath, LoadError, Position, Positions, SchemaError, position_of
from runbook.load.controller import check_loop, controller_parts
from runbook.load.settings import split_templated
from runbook.model.files import KINDS, FileAction
from runbook.model.runbook import Step
from runbook.model.spec import ExecSpec
from runbook.model.waits import WaitAction, WaitKind
from runbook.templating.lazy import mark_all

ACTIONS = ("run", "copy", "fetch", "steps", "include", "wait_for", "reboot", "set", "assert")
# A copy or fetch runs no shell command: what only a command has is refused on it.
NOT_FOR_FILES = ("until", "env", "shell")
# A wait polls from the controller; a reboot runs its own commands, once each.
NOT_FOR_WAITS = {
    WaitKind.WAIT_FOR: ("until", "retries", "env", "shell", "become", "become_user", "delegate_to"),
    WaitKind.REBOOT: ("until", "retries", "delegate_to", "run_once"),
}
INCLUDE_KEYS = frozenset({"include", "vars", "tags", "when"})
GROUP_KEYS = frozenset(
    {"name", "steps", "hosts", "serial", "max_failures", "on_failure", "when", "tags"}
    | {"confirm", "timeout", "shell", "become", "become_user", "retries", "delay", "env"}
    | {"rescue", "always"}
)
GROUP_PARTS = ("rescue", "always")  # a group's step lists besides ``steps``
INNER_FORBIDDEN = ("serial", "on_failure", "max_failures", "confirm")
MAX_INCLUDE_DEPTH = 20


@dataclass(frozen=True)
class Inherited:
    """What enclosing groups and includes hand down to the steps inside them."""

    spec_layers: tuple[Mapping[str, Any], ...] = ()  # defaults, then the group's settings
    env: dict[str, str] = field(default_factory=dict)
    env_positions: dict[str, Position] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    when: tuple[str, ...] = ()  # ANDed with the step's own
    vars: dict[str, Any] = field(default_factory=dict)
    group: str | None = None  # the enclosing group's name, inside one
    files: tuple[str, ...] = ()  # the include chain, for cycles


@dataclass
class SourceFile:
    """One YAML file's steps: its path and where each of its values is written."""

    path: str
    positions: Positions

    def at(self, doc_path: DocPath) -> Position:
        return position_of(self.positions, doc_path, self.path)


class StepReader:
    """Reads the steps of a runbook and of everything it includes."""

    def __init__(self, load_steps: Any) -> None:
        # load_steps(path) -> (list of raw steps wrapped as {"steps": [...]}, positions),
        # validated against the step schema; the loader provides it.
        self._load_steps = load_steps
        self.seen: dict[str, Position] = {}
        self.files: list[str] = []

    def read(
        self, items: list[Any], file: SourceFile, base: DocPath, inherited: Inherited
    ) -> list[Step]:
        steps: list[Step] = []
        for i, raw in enumerate(items):
            doc_path = (*base, i)
            if "include" in raw:
                steps += self._include(raw, file, doc_path, inherited)
            else:
                steps.append(self._step(raw, file, doc_path, inherited))
        return steps

    # -- includes ------------------------------------------------------------------------

    def _include(
        self, raw: dict[str, Any], file: SourceFile, doc_path: DocPath, inherited: Inherited
    ) -> list[Step]:
        _only(raw, INCLUDE_KEYS, "an include", file, doc_path)
        where = file.at((*doc_path, "include"))
        # Shown as written from the runbook's own path; compared as absolute paths.
        target = os.path.normpath(os.path.join(os.path.dirname(file.path), raw["include"]))
        chain = inherited.files or (os.path.abspath(file.path),)
        if os.path.abspath(target) in chain:
            cycle = " -> ".join(os.path.basename(f) for f in (*chain, target))
            raise SchemaError(f"include cycle: {cycle}", where)
        if len(chain) > MAX_INCLUDE_DEPTH:
            raise SchemaError(f"includes nested deeper than {MAX_INCLUDE_DEPTH}", where)
        try:
            items, positions = self._load_steps(target)
        except LoadError as exc:
            if exc.position is not None and not exc.position.line:
                raise LoadError(f"include {raw['include']!r}: {exc.message}", where) from None
            raise
        self.files.append(target)
        when = raw.get("when")
        deeper = replace(
            inherited,
            tags=_union(inherited.tags, raw.get("tags", ())),
            when=inherited.when if when is None else (*inherited.when, _expr(when)),
            vars={**inherited.vars, **_templated_vars(raw, file, doc_path)},
            files=(*chain, os.path.abspath(target)),
        )
        return self.read(items, SourceFile(target, positions), ("steps",), deeper)

    # -- steps and groups ----------------------------------------------------------------

    def _step(
        self, raw: dict[str, Any], file: SourceFile, doc_path: DocPath, inherited: Inherited
    ) -> Step:
        pos = file.at(doc_path)
        name = self._name(raw, file, doc_path)
        check_finite(raw, pos, _positions(raw, file, doc_path, inherited), name)
        actions = [a for a in ACTIONS if a in raw]
        if not actions:
            raise SchemaError(
                "'run' is required (or copy:, fetch:, wait_for:, reboot:, set:, assert:, steps: "
                "for a group, or include:)",
                pos,
                step=name,
            )
        if len(actions) > 1:
            raise SchemaError(
                f"a step has one of {', '.join(ACTIONS)}; this one has {' and '.join(actions)}",
                file.at((*doc_path, actions[1])),
                step=name,
            )
        if "vars" in raw:
            raise SchemaError(
                "vars: is for include: (step vars belong in the runbook or the inventory)",
                file.at((*doc_path, "vars")),
                step=name,
            )
        if inherited.group is not None:
            self._check_inner(raw, name, file, doc_path, inherited.group)
        if "steps" in raw:
            return self._group(raw, name, file, doc_path, inherited)
        _check_leaf(raw, name, file, doc_path)
        return _leaf(raw, name, pos, _positions(raw, file, doc_path, inherited), inherited)

    def _name(self, raw: dict[str, Any], file: SourceFile, doc_path: DocPath) -> str:
        if "name" not in raw:
            raise SchemaError("'name' is required", file.at(doc_path))
        name: str = raw["name"]
        if name in self.seen:
            raise SchemaError(
                f"duplicate step name (first defined at {self.seen[name]})",
                file.at((*doc_path, "name")),
                step=name,
            )
        self.seen[name] = file.at(doc_path)
        return name

    @staticmethod
    def _check_inner(
        raw: dict[str, Any], name: str, file: SourceFile, doc_path: DocPath, group: str
    ) -> None:
        if "steps" in raw:
            raise SchemaError(
                f"groups do not nest: {name!r} is inside group {group!r}",
                file.at((*doc_path, "steps")),
                step=name,
            )
        for key in INNER_FORBIDDEN:
            if key in raw:
                raise SchemaError(
                    f"{key} is not allowed on an inner step: the group's {key} applies "
                    f"(set it on group {group!r})",
                    file.at((*doc_path, key)),
                    step=name,
                )

    def _group(
        self,
        raw: dict[str, Any],
        name: str,
        file: SourceFile,
        doc_path: DocPath,
        inherited: Inherited,
    ) -> Step:
        _only(raw, GROUP_KEYS, "a group", file, doc_path)
        where = _positions(raw, file, doc_path, inherited)
        layers, templated = split_templated((*inherited.spec_layers, raw))
        own_when = raw.get("when")
        inner = replace(
            inherited,
            spec_layers=(*inherited.spec_layers, raw),
            env={**inherited.env, **_env(raw)},
            env_positions={**inherited.env_positions, **_env_positions(raw, file, doc_path)},
            tags=_union(inherited.tags, raw.get("tags", ())),
            when=inherited.when if own_when is None else (*inherited.when, _expr(own_when)),
            group=name,
        )
        steps = self.read(raw["steps"], file, (*doc_path, "steps"), inner)
        if not steps:
            raise SchemaError("a group needs inner steps", file.at(doc_path), step=name)
        parts = {
            key: tuple(self.read(raw.get(key, []), file, (*doc_path, key), inner))
            for key in GROUP_PARTS
        }
        return Step(
            name=name,
            position=file.at(doc_path),
            spec=ExecSpec.build(*layers),
            steps=tuple(steps),
            hosts=raw.get("hosts"),
            serial=None if "serial" in templated else raw.get("serial"),
            templated=templated,
            tags=_union(inherited.tags, raw.get("tags", ())),
            confirm=raw.get("confirm"),
            when=_combined(inherited.when, own_when),
            field_positions=where,
            rescue=parts["rescue"],
            always=parts["always"],
        )


def _check_leaf(raw: dict[str, Any], name: str, file: SourceFile, doc_path: DocPath) -> None:
    """What only a group has, and ``local`` with ``hosts`` (SPEC section 10)."""
    for key in GROUP_PARTS:
        if key in raw:
            raise SchemaError(
                f"{key}: belongs to a group (a step with steps:); put this step and the "
                f"{key} steps in one",
                file.at((*doc_path, key)),
                step=name,
            )
    if raw.get("local") and "hosts" in raw:
        raise SchemaError(
            "local: true runs once, on the controller, and takes no hosts:; to run on the "
            "controller once for each of these hosts, write delegate_to: controller instead "
            "of local: true",
            file.at((*doc_path, "hosts")),
            step=name,
        )
    if raw.get("local") and "delegate_to" in raw:
        raise SchemaError(
            "local: true already runs on the controller; drop delegate_to:",
            file.at((*doc_path, "delegate_to")),
            step=name,
        )
    for kind in KINDS:
        if kind in raw and "delegate_to" in raw:
            raise SchemaError(
                f"delegate_to is not supported on a {kind} step (only on run steps)",
                file.at((*doc_path, "delegate_to")),
                step=name,
            )
    for wait in WaitKind:
        if wait.value not in raw:
            continue
        for key in NOT_FOR_WAITS[wait]:
            if key in raw:
                raise SchemaError(
                    f"{key} is not allowed on a {wait.value} step",
                    file.at((*doc_path, key)),
                    step=name,
                )


def _leaf(
    raw: dict[str, Any],
    name: str,
    pos: Position,
    where: dict[str, Position],
    inherited: Inherited,
) -> Step:
    layers, templated = split_templated((*inherited.spec_layers, raw))
    set_values, assertion = controller_parts(raw, name, where)
    check_loop(raw, name, where)
    return Step(
        name=name,
        position=pos,
        spec=ExecSpec.build(*layers),
        run=raw.get("run"),
        transfer=_transfer(raw, name, where),
        hosts=raw.get("hosts"),
        local=raw.get("local", False),
        env={**inherited.env, **_env(raw)},
        serial=None if "serial" in templated else raw.get("serial"),
        when=_combined(inherited.when, raw.get("when")),
        run_once=raw.get("run_once", False),
        tags=_union(inherited.tags, raw.get("tags", ())),
        confirm=raw.get("confirm"),
        register=raw.get("register"),
        vars=dict(inherited.vars),
        set_values=set_values,
        assertion=assertion,
        loop=raw.get("loop"),
        loop_var=raw.get("loop_var", "item"),
        templated=templated,
        field_positions=where,
        delegate_to=None if raw.get("delegate_to") is None else str(raw["delegate_to"]),
        wait=_wait(raw, name, where),
        discover=_discover(raw, name, where),
    )


def _wait(raw: dict[str, Any], name: str, where: dict[str, Position]) -> WaitAction | None:
    kind = next((k for k in WaitKind if k.value in raw), None)
    if kind is None:
        return None
    return WaitAction.read(kind, raw[kind.value] or {}, where, name)


def _transfer(raw: dict[str, Any], name: str, where: dict[str, Position]) -> FileAction | None:
    """A ``copy``/``fetch`` action, checked: what only a shell command has is refused."""
    kind = next((k for k in KINDS if k in raw), None)
    if kind is None:
        return None
    for key in NOT_FOR_FILES:
        if key in raw:
            raise SchemaError(
                f"{key} is not allowed on a {kind} step (it runs no shell command)",
                where.get(key),
                step=name,
            )
    return FileAction.read(kind, raw[kind], where, name)


def _discover(raw: dict[str, Any], name: str, where: dict[str, Position]) -> bool:
    """``discover: true`` declares a step free of side effects (``plan --check`` runs
    it); a copy or fetch writes a file, so it cannot be one."""
    if not raw.get("discover", False):
        return False
    kind = next((k for k in KINDS if k in raw), None)
    if kind is not None:
        raise SchemaError(
            f"a {kind} step cannot be a discover step: discover steps are run by "
            "`plan --check` and must not change anything",
            where.get("discover"),
            step=name,
        )
    return True


def check_finite(
    raw: dict[str, Any], pos: Position, where: dict[str, Position], step: str | None
) -> None:
    """JSON Schema cannot say "not NaN": a YAML ``.nan`` passes ``maximum``."""
    for key in ("timeout", "delay"):
        value = raw.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            raise SchemaError(
                f"{key}: {value} is not a number of seconds", where.get(key, pos), step=step
            )


def _only(
    raw: dict[str, Any], allowed: frozenset[str], what: str, file: SourceFile, doc: DocPath
) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise SchemaError(
            f"{extra[0]} is not allowed in {what} (allowed: {', '.join(sorted(allowed))})",
            file.at((*doc, extra[0])),
            step=raw.get("name"),
        )


def _templated_vars(raw: dict[str, Any], file: SourceFile, doc: DocPath) -> dict[str, Any]:
    """An include's vars come from the repository, as inventory values do: a value with
    ``{{ }}`` is a template, rendered when a step reads it (with the host's context)."""
    return {k: mark_all(v, file.at((*doc, "vars", k))) for k, v in raw.get("vars", {}).items()}


def _positions(
    raw: dict[str, Any], file: SourceFile, doc_path: DocPath, inherited: Inherited
) -> dict[str, Position]:
    """Where each field of the step (and each env value, inherited ones included) is."""
    out = {k: file.positions.get((*doc_path, k, "<text>")) or file.at((*doc_path, k)) for k in raw}
    for kind in (*KINDS, *WaitKind, "set", "assert"):  # copy.src, set.NAME: errors point inside
        if isinstance(raw.get(kind), dict):
            out.update({f"{kind}.{k}": file.at((*doc_path, kind, k)) for k in raw[kind]})
    env = {**inherited.env_positions, **_env_positions(raw, file, doc_path)}
    out.update({f"env.{k}": p for k, p in env.items()})
    return out


def _env_positions(raw: dict[str, Any], file: SourceFile, doc_path: DocPath) -> dict[str, Position]:
    return {k: file.at((*doc_path, "env", k)) for k in raw.get("env", {})}


def _env(raw: dict[str, Any]) -> dict[str, str]:
    return {k: env_str(v) for k, v in raw.get("env", {}).items()}


def env_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _expr(when: Any) -> str:
    return str(when)


def _combined(inherited: tuple[str, ...], own: Any) -> str | None:
    """The step's ``when`` ANDed with its includes' and group's."""
    parts = [*inherited, *([] if own is None else [_expr(own)])]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return " and ".join(f"({p})" for p in parts)


def _union(a: tuple[str, ...], b: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*a, *b]))
