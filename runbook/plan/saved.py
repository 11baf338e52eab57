"""Plans as JSON: ``plan --format json``, saved plans (``plan --out``) and the journal copy.

A saved plan holds exactly the rendered commands, so ``apply PLAN.json`` runs what was
reviewed; it is never re-rendered from the runbook or the inventory. It carries a digest
of its own content (``plan_digest``): a plan whose content does not match — edited by
hand, damaged — is refused before anything runs (SPEC §6). A command rendered
at apply time (it reads a registered value or a secret) is stored as its templates plus
the values they read, secrets only by name (SPEC §8). Version 2 adds groups, registers
and those templates to version 1's fields, which keep their meaning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from runbook.errors import InputError, Position
from runbook.inventory.text import DuplicateKey, unique_keys
from runbook.model.command import Command, Templates
from runbook.model.controller import Loop, LoopItem, controlled_from_dict
from runbook.model.files import Transfer
from runbook.model.plan import Plan, PlanItem, PlannedBatch, PlannedGroup, PlannedStep, Section
from runbook.model.runbook import Host
from runbook.model.spec import ExecSpec
from runbook.model.waits import WaitAction
from runbook.text import printable_json

FORMAT = "runbook-plan"
VERSION = 2
DIGEST = "plan_digest"  # the saved plan's field that holds ``plan_digest(data)``


def plan_to_dict(plan: Plan, path: Callable[[str], str] = str) -> dict[str, Any]:
    """``path`` writes the runbook's path and its includes' (relative to a saved plan's
    file; absolute in a journal)."""
    hosts: dict[str, Any] = {}
    for c in plan.commands:
        hosts.setdefault(c.host.name, c.host.to_dict())
    for c in plan.commands:  # delegates after the targets: a target's entry wins a clash
        if c.delegate is not None:
            hosts.setdefault(c.delegate.name, c.delegate.to_dict())
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "runbook": plan.name,
        "source": path(plan.source),
        "digest": plan.digest,
        "files": [path(f) for f in plan.files],
        "secrets": list(plan.secret_names),
        "hosts": hosts,
        "steps": [_item_dict(item, plan.source) for item in plan.steps],
    }
    if plan.hostvars:
        data["hostvars"] = plan.hostvars
    return data


def _item_dict(item: PlanItem, source: str) -> dict[str, Any]:
    d = _group_dict(item, source) if isinstance(item, PlannedGroup) else _step_dict(item, source)
    return _sections(item, d)


def _sections(item: PlanItem, d: dict[str, Any]) -> dict[str, Any]:
    """A step's section and a group's rescue and always names, only where they are set."""
    if item.section is not Section.MAIN:
        d["section"] = item.section.value
    if isinstance(item, PlannedGroup):
        for key in ("rescue", "always"):
            if getattr(item, key):
                d[key] = list(getattr(item, key))
    return d


def _group_dict(item: PlannedGroup, source: str) -> dict[str, Any]:
    return {
        "name": item.name,
        "line": item.position.line,
        "group": True,
        "hosts": item.hosts,
        "on_failure": item.on_failure,
        "max_failures": item.max_failures,
        "serial": item.serial,
        "tags": list(item.tags),
        "confirm": item.confirm,
        **_confirm_templates(item.confirm_templates),
        "inner": list(item.inner),
        "batches": [
            {"hosts": list(b.hosts), "steps": [_item_dict(s, source) for s in b.steps]}
            for b in item.batches
        ],
    }


def _step_dict(step: PlannedStep, source: str) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": step.name,
        "line": step.position.line,
        "hosts": step.hosts,
        # The policy, always written; max_failures as the resolved count.
        "on_failure": step.on_failure,
        "max_failures": step.max_failures,
        "serial": step.serial,
        "run_once": step.run_once,
        "local": step.local,
        "tags": list(step.tags),
        "confirm": step.confirm,
        **_confirm_templates(step.confirm_templates),
    }
    if step.position.file != source:  # a step from an included file
        d["file"] = step.position.file
    if step.register is not None:
        d["register"] = step.register
        d["register_hosts"] = list(step.register_hosts)
    if step.once_for:
        d["once_for"] = list(step.once_for)
    if step.discover:
        d["discover"] = True
    d["batches"] = [[c.to_dict() for c in batch] for batch in step.batches]
    return d


def _confirm_templates(t: Templates | None) -> dict[str, Any]:
    """A confirm text that reads a registered value: its template and what it reads."""
    return {} if t is None else {"confirm_templates": t.to_dict()}


def _templates(d: Mapping[str, Any] | None) -> Templates | None:
    return None if d is None else Templates.from_dict(dict(d))


def dumps(data: dict[str, Any]) -> str:
    """A plan as JSON, controls and invisible characters as JSON escapes (the same data):
    a reviewer may read the file itself."""
    return printable_json(json.dumps(data, indent=2, ensure_ascii=False)) + "\n"


def plan_digest(data: Mapping[str, Any]) -> str:
    """The digest of a saved plan's content: ``sha256:`` and the hex SHA-256 of its
    canonical JSON — every field but ``plan_digest`` itself, keys sorted at every level,
    no whitespace (``separators=(",", ":")``), characters as themselves
    (``ensure_ascii=False``), encoded as UTF-8.

    It depends on what the file says, not on how it is laid out: re-indenting a plan keeps
    it; changing a command, a host, a setting or a secret's source changes it. Saved
    plans carry it. (Approvals sign the file's exact bytes instead: ``review.approvals``.)
    """
    content = {k: v for k, v in data.items() if k != DIGEST}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a lone surrogate (written as a JSON escape) still has one encoding.
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def save_plan(plan: Plan, path: str, extra: dict[str, Any] | None = None) -> None:
    """Write a saved plan; its runbook path is stored relative to the plan file."""
    here = os.path.dirname(os.path.abspath(path))
    data = plan_to_dict(plan, lambda p: os.path.relpath(os.path.abspath(p), here))
    data.update(extra or {})
    data["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data[DIGEST] = plan_digest(data)
    with open(path, "w", encoding="utf-8") as f:
        f.write(dumps(data))


def read_saved_plan(path: str, raw: bytes | None = None) -> dict[str, Any] | None:
    """The JSON of a saved plan, or ``None`` when ``path`` is not one (a runbook);
    ``raw``: its bytes, already read (an approved plan is parsed from the bytes whose
    signatures were verified, not read again). Raises ``InputError`` for a saved plan
    whose content does not match its digest."""
    if not path.endswith(".json"):
        return None
    try:
        if raw is None:
            with open(path, "rb") as f:
                raw = f.read()
        data = json.loads(raw, object_pairs_hook=unique_keys)
    except OSError as exc:
        raise InputError(f"cannot read plan: {exc.strerror}", Position(path)) from None
    except DuplicateKey as exc:
        raise InputError(
            f"key {exc.key!r} appears twice in one JSON object: a reader of the file "
            "would see the first value, runbook the last",
            Position(path),
        ) from None
    except ValueError:
        return None  # not JSON: the runbook loader will say what is wrong, with a line
    except RecursionError:  # [[[[... a thousand deep: the C decoder recurses
        raise InputError("JSON nested too deeply to read", Position(path)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None  # a runbook written as JSON (YAML's subset)
    _check_digest(data, path)
    return data


def _check_digest(data: Mapping[str, Any], path: str) -> None:
    """A saved plan runs only as it was made: its content must match its digest."""
    recorded = data.get(DIGEST)
    if recorded is None:
        raise InputError(
            f"the plan has no {DIGEST}: only plans saved by `runbook plan --out` can be "
            "applied; make it again",
            Position(path),
        )
    actual = plan_digest(data)
    if recorded != actual:
        raise InputError(
            f"the plan's content does not match its {DIGEST} ({str(recorded)[:19]}, content "
            f"{actual[:19]}): it was changed after `runbook plan --out` made it; make it "
            "again from the runbook",
            Position(path),
        )


def plan_from_dict(data: Mapping[str, Any], path: str) -> Plan:
    """Rebuild a ``Plan`` from a saved plan or a journal (validated against
    ``schemas/plan.schema.json`` first). Commands are not re-rendered."""
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        version = data.get("version")
        raise InputError(
            f"a {FORMAT} v{version} file; this runbook reads v{VERSION}: make it again "
            "with `runbook plan --out`",
            Position(path),
        )
    _validate(data, path)
    _check_finite(data, path)
    try:
        return _plan_from_dict(data, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a valid saved plan: {exc!r}", Position(path)) from None


def _validate(data: Mapping[str, Any], path: str) -> None:
    from runbook.load.loader import schema, schema_valid

    if schema_valid(data, "plan"):
        return  # jsonschema only words the errors
    from jsonschema import Draft202012Validator

    errors = sorted(
        Draft202012Validator(schema("plan")).iter_errors(data), key=lambda e: list(e.path)
    )
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "top level"
        raise InputError(f"not a valid saved plan: {where}: {err.message}", Position(path))


# Vars bound into a plan are data: a runbook may hold ``.nan`` there on purpose.
_DATA_KEYS = frozenset({"values", "until_vars", "hostvars", "item", "loop", "set"})


def _check_finite(data: Any, path: str) -> None:
    """Python's JSON reader takes ``NaN`` and ``Infinity``, and a NaN passes every bound
    of the schema (each comparison is false): ``"timeout": NaN`` crashed the run.
    Iterative: a deep value must not exhaust the stack."""
    todo: list[tuple[str, Any]] = [("", data)]
    while todo:
        where, node = todo.pop()
        if isinstance(node, float) and not math.isfinite(node):
            raise InputError(
                f"not a valid saved plan: {where}: {node} is not a finite number", Position(path)
            )
        if isinstance(node, dict):
            children = [(k, v) for k, v in node.items() if k not in _DATA_KEYS]
        elif isinstance(node, list):
            children = list(enumerate(node))
        else:
            continue
        todo += [(f"{where}/{k}" if where else str(k), v) for k, v in children]


def _plan_from_dict(data: Mapping[str, Any], path: str) -> Plan:
    hosts = {name: Host.from_dict(name, h) for name, h in data["hosts"].items()}
    here = os.path.dirname(os.path.abspath(path))
    source = os.path.normpath(os.path.join(here, data["source"]))
    steps = tuple(_item(s, hosts, source) for s in data["steps"])
    return Plan(
        name=data["runbook"],
        source=source,
        digest=data["digest"],
        steps=steps,
        secret_names=tuple(data.get("secrets", ())),
        hostvars=dict(data.get("hostvars", {})),
        files=tuple(os.path.normpath(os.path.join(here, f)) for f in data.get("files", ())),
        meta={"created": data.get("created"), "plan_file": path},
    )


def _item(s: Mapping[str, Any], hosts: Mapping[str, Host], source: str) -> PlanItem:
    if not s.get("group"):
        return _step(s, hosts, source, None, None)
    batches = tuple(
        PlannedBatch(
            number,
            tuple(b["hosts"]),
            tuple(_step(inner, hosts, source, s["name"], number) for inner in b["steps"]),
        )
        for number, b in enumerate(s["batches"], 1)
    )
    policy = {"on_failure": s["on_failure"], "max_failures": s["max_failures"]}
    return PlannedGroup(
        name=s["name"],
        position=Position(source, s.get("line", 0)),
        batches=batches,
        spec=ExecSpec.from_dict(policy),
        hosts=s["hosts"],
        max_failures=s["max_failures"],
        confirm=s.get("confirm"),
        tags=tuple(s.get("tags", ())),
        serial=s.get("serial"),
        inner=tuple(s.get("inner", ())),
        rescue=tuple(s.get("rescue", ())),
        always=tuple(s.get("always", ())),
        section=Section(s.get("section", Section.MAIN)),
        confirm_templates=_templates(s.get("confirm_templates")),
    )


def _step(
    s: Mapping[str, Any],
    hosts: Mapping[str, Host],
    source: str,
    group: str | None,
    batch: int | None,
) -> PlannedStep:
    policy = {"on_failure": s["on_failure"], "max_failures": s["max_failures"]}
    root = os.path.dirname(source)  # a transfer's controller paths are relative to it
    batches = tuple(
        tuple(_command(s["name"], c, hosts, policy, root) for c in b) for b in s["batches"]
    )
    first = batches[0][0] if batches and batches[0] else None
    return PlannedStep(
        name=s["name"],
        position=Position(s.get("file", source), s.get("line", 0)),
        batches=batches,
        spec=first.spec if first is not None else ExecSpec.from_dict(policy),
        hosts=s["hosts"],
        max_failures=s["max_failures"],
        confirm=s.get("confirm"),
        tags=tuple(s.get("tags", ())),
        run_once=s.get("run_once", False),
        local=s.get("local", False),
        serial=s.get("serial"),
        register=s.get("register"),
        register_hosts=tuple(s.get("register_hosts", ())),
        group=group,
        batch=batch,
        section=Section(s.get("section", Section.MAIN)),
        once_for=tuple(s.get("once_for", ())),
        confirm_templates=_templates(s.get("confirm_templates")),
        discover=bool(s.get("discover", False)),
    )


def _command(
    step: str,
    c: Mapping[str, Any],
    hosts: Mapping[str, Host],
    policy: Mapping[str, Any],
    root: str,
) -> Command:
    templates = c.get("templates")
    transfer = c.get("transfer")
    delegate, wait = c.get("delegate"), c.get("wait")
    item, loop = c.get("item"), c.get("loop")
    return Command(
        step=step,
        host=hosts[c["host"]],
        cmd=c["cmd"],
        env=dict(c.get("env", {})),
        spec=ExecSpec.from_dict(c, policy),
        until_vars=c.get("until_vars", {}),
        skip_reason=c.get("skipped"),
        templates=None if templates is None else Templates.from_dict(templates),
        transfer=None if transfer is None else Transfer.from_dict(transfer, root),
        delegate=None if delegate is None else hosts[delegate],
        wait=None if wait is None else WaitAction.from_dict(wait),
        item=None if item is None else LoopItem.from_dict(item),
        loop=None if loop is None else Loop.from_dict(loop),
        controlled=controlled_from_dict(c),
        until_at=Position.parse(c["until_at"]) if "until_at" in c else None,
    )
