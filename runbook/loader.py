"""Runbook file → validated ``Runbook``. Every problem is an ``InputError`` with a position."""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from runbook.errors import InputError, LoadError, Position, SchemaError
from runbook.model import Runbook, SecretSpec, Step
from runbook.spec import ExecSpec
from runbook.yamlpos import load_yaml

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


@cache
def schema(name: str = "runbook") -> dict[str, Any]:
    with open(SCHEMA_DIR / f"{name}.schema.json", encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def load_runbook(path: str) -> Runbook:
    """Parse, validate against ``schemas/runbook.schema.json`` and build the model."""
    data, positions = load_yaml(path)
    if not isinstance(data, dict):
        raise LoadError("a runbook is a YAML mapping with 'name' and 'steps'", Position(path, 1, 1))
    validate(data, positions, path)
    return build(data, positions, path, file_digest(path))


def file_digest(path: str) -> str:
    """What ``--resume`` compares to know the runbook did not change since the run."""
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def validate(data: Any, positions: dict, path: str, name: str = "runbook") -> None:
    """Raise one ``SchemaError`` listing every violation, earliest in the file first."""
    from jsonschema import Draft202012Validator  # slow import: only when validating

    validator = Draft202012Validator(schema(name))
    errors: list[InputError] = []
    for err in validator.iter_errors(data):
        errors.extend(_describe(err, data, positions, path))
    if errors:
        errors.sort(key=lambda e: (e.position.line, e.position.col) if e.position else (0, 0))
        first = errors[0]
        if len(errors) > 1:
            first.others = errors[1:]
        raise first


def _lookup(positions: dict, path: str, doc_path: tuple) -> Position:
    p = doc_path
    while p:
        if p in positions:
            found: Position = positions[p]
            return found
        p = p[:-1]
    return Position(path, 1, 1)


def _step_name(data: Any, doc_path: tuple) -> str | None:
    if len(doc_path) >= 2 and doc_path[0] == "steps" and isinstance(data, dict):
        try:
            name = data["steps"][doc_path[1]].get("name")
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
        return name if isinstance(name, str) else f"#{doc_path[1] + 1}"
    return None


def _describe(err: Any, data: Any, positions: dict, path: str) -> list[SchemaError]:
    doc_path = tuple(err.absolute_path)
    step = _step_name(data, doc_path)
    shown = doc_path[2:] if step is not None else doc_path  # the step is named already
    where = ".".join(str(p) for p in shown) or ("the step" if step is not None else "top level")
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
        return [
            SchemaError(
                f"unknown key {k!r} in {where} (expected one of: {', '.join(allowed)})",
                _lookup(positions, path, (*doc_path, k)),
                step=step,
            )
            for k in extra
        ]
    if err.validator in ("oneOf", "anyOf") and err.context:
        # Report the alternative that got furthest, not jsonschema's generic summary.
        from jsonschema.exceptions import best_match

        near = [e for e in err.context if not _type_miss(e)] or list(err.context)
        return _describe(best_match(near), data, positions, path)
    if err.validator == "required":
        msg = f"{where}: {err.message.replace('is a required property', 'is required')}"
    elif err.validator == "type":
        msg = f"{where}: expected {_types(err.validator_value)}, got {_show(err.instance)}"
    elif err.validator == "enum":
        choices = ", ".join(map(str, err.validator_value))
        msg = f"{where}: {_show(err.instance)} is not one of: {choices}"
    elif err.validator == "pattern" and err.schema.get("pattern", "").endswith("%$"):
        msg = f"{where}: {_show(err.instance)} is not a count or a percentage like '25%'"
    else:
        msg = f"{where}: {err.message}"
    if "propertyNames" in err.absolute_schema_path and isinstance(err.instance, str):
        doc_path = (*doc_path, err.instance)  # a bad key: point at the key, not its mapping
    return [SchemaError(msg, _lookup(positions, path, doc_path), step=step)]


def _type_miss(err: Any) -> bool:
    """An alternative that failed only because the value has another type."""
    if err.validator in ("oneOf", "anyOf") and err.context:
        return all(_type_miss(e) for e in err.context)
    return err.validator == "type" and not err.relative_path


def _types(t: Any) -> str:
    return " or ".join(t) if isinstance(t, list) else str(t)


def _show(v: Any) -> str:
    kind = {dict: "a mapping", list: "a list", type(None): "null"}.get(type(v))
    return kind or f"{type(v).__name__} {v!r}"[:80]


def build(data: dict[str, Any], positions: dict, path: str, digest: str = "") -> Runbook:
    """Validated data → ``Runbook``; also checks what the schema cannot (unique names)."""
    defaults = data.get("defaults", {})
    steps: list[Step] = []
    seen: dict[str, Position] = {}
    for i, raw in enumerate(data["steps"]):
        pos = _lookup(positions, path, ("steps", i))
        name = raw["name"]
        if name in seen:
            raise SchemaError(
                f"duplicate step name (first defined at {seen[name]})",
                _lookup(positions, path, ("steps", i, "name")),
                step=name,
            )
        seen[name] = pos
        steps.append(_step(raw, defaults, pos, _field_positions(raw, positions, path, i)))
    inventory = data.get("inventory", ())
    if isinstance(inventory, str):
        inventory = (inventory,)
    base = os.path.dirname(os.path.abspath(path))
    return Runbook(
        name=data["name"],
        path=path,
        steps=tuple(steps),
        description=data.get("description", ""),
        inventory=tuple(os.path.join(base, p) for p in inventory),
        hosts=data.get("hosts", {}),
        vars=data.get("vars", {}),
        env={k: _env_str(v) for k, v in data.get("env", {}).items()},
        secrets=_secrets(data.get("secrets", {}), positions, path, base),
        digest=digest,
        positions=positions,
    )


def _field_positions(
    raw: dict[str, Any], positions: dict, path: str, i: int
) -> dict[str, Position]:
    """Where each field of step ``i`` (and each of its env values) is written."""
    out = {
        k: positions.get(("steps", i, k, "<text>")) or _lookup(positions, path, ("steps", i, k))
        for k in raw
    }
    for k in raw.get("env", {}):
        out[f"env.{k}"] = _lookup(positions, path, ("steps", i, "env", k))
    return out


def _step(
    raw: dict[str, Any], defaults: dict[str, Any], pos: Position, where: dict[str, Position]
) -> Step:
    when = raw.get("when")
    return Step(
        name=raw["name"],
        run=raw["run"],
        position=pos,
        spec=ExecSpec.build(defaults, raw),
        hosts=raw.get("hosts", "all"),
        local=raw.get("local", False),
        env={k: _env_str(v) for k, v in raw.get("env", {}).items()},
        serial=raw.get("serial"),
        when=None if when is None else str(when),
        run_once=raw.get("run_once", False),
        tags=tuple(raw.get("tags", ())),
        confirm=raw.get("confirm"),
        field_positions=where,
    )


def _secrets(raw: dict[str, Any], positions: dict, path: str, base: str) -> tuple[SecretSpec, ...]:
    return tuple(
        SecretSpec(
            name=k,
            env=v.get("env"),
            file=os.path.join(base, v["file"]) if "file" in v else None,
            position=_lookup(positions, path, ("secrets", k)),
        )
        for k, v in raw.items()
    )


def _env_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
