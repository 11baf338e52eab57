"""Runbook file → validated ``Runbook``. Every problem is an ``InputError`` with a position."""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from runbook.errors import InputError, LoadError, Position, SchemaError, position_of
from runbook.load.fastschema import Checker, compile_schema
from runbook.load.steps import DocPath, Inherited, SourceFile, StepReader, check_finite, env_str
from runbook.load.yamlpos import load_yaml
from runbook.model.runbook import Runbook, SecretSpec

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
TEMPLATE_PATTERN = "\\{[{%]"  # schemas/runbook.schema.json's $defs/template


@cache
def schema(name: str = "runbook") -> dict[str, Any]:
    """A schema of ``schemas/``; ``steps`` is the runbook's, for an included file."""
    if name == "steps":
        rb = schema("runbook")
        return {
            "type": "object",
            "properties": {"steps": {"type": "array", "items": {"$ref": "#/$defs/step"}}},
            "$defs": rb["$defs"],
        }
    with open(SCHEMA_DIR / f"{name}.schema.json", encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def load_runbook(path: str) -> Runbook:
    """Parse, validate against ``schemas/runbook.schema.json`` and build the model."""
    data, positions = load_yaml(path)
    if not isinstance(data, dict):
        raise LoadError("a runbook is a YAML mapping with 'name' and 'steps'", Position(path, 1, 1))
    validate(data, positions, path)
    return build(data, positions, path)


def load_steps(path: str) -> tuple[list[Any], dict[DocPath, Position]]:
    """An included file: a YAML list of steps, validated as a runbook's ``steps``. Its
    positions are keyed as if it were ``{"steps": [...]}``, so errors read the same."""
    data, raw_positions = load_yaml(path)
    positions = {("steps", *k): v for k, v in raw_positions.items()}
    if not isinstance(data, list):
        raise LoadError("an included file is a YAML list of steps", Position(path, 1, 1))
    validate({"steps": data}, positions, path, "steps")
    return data, positions


def files_digest(paths: tuple[str, ...] | list[str]) -> str:
    """What ``--resume`` compares to know the runbook (and its includes) did not change."""
    h = hashlib.sha256()
    for i, path in enumerate(paths):
        with open(path, "rb") as f:
            data = f.read()
        if len(paths) == 1:
            return "sha256:" + hashlib.sha256(data).hexdigest()
        h.update(f"{i}:{len(data)}:".encode() + data)
    return "sha256:" + h.hexdigest()


@cache
def checker(name: str = "runbook") -> Checker | None:
    """The compiled yes/no check of a schema of ``schemas/`` (``load.fastschema``)."""
    return compile_schema(schema(name))


def schema_valid(instance: Any, name: str = "runbook", ref: str = "#") -> bool | None:
    """Whether ``instance`` is valid against a schema (or its ``ref``) without importing
    jsonschema; ``None`` when the compiled check cannot tell (ask jsonschema)."""
    check = checker(name)
    return None if check is None else check.valid(instance, ref)


def validate(data: Any, positions: dict, path: str, name: str = "runbook") -> None:
    """Raise one ``SchemaError`` listing every violation, earliest in the file first."""
    if schema_valid(data, name):
        return  # the usual case, without jsonschema's ~60 ms import
    from jsonschema import Draft202012Validator  # slow import: only to word the errors

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


def _step_name(data: Any, doc_path: tuple) -> str | None:
    if len(doc_path) >= 2 and doc_path[0] in ("steps", "always") and isinstance(data, dict):
        try:
            name = data[doc_path[0]][doc_path[1]].get("name")
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
        return name if isinstance(name, str) else f"#{doc_path[1] + 1}"
    return None


def _describe(
    err: Any, data: Any, positions: dict, path: str, template_ok: bool = False
) -> list[SchemaError]:
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
                position_of(positions, (*doc_path, k), path),
                step=step,
            )
            for k in extra
        ]
    if err.validator in ("oneOf", "anyOf") and err.context:
        # Report the alternative that got furthest, not jsonschema's generic summary.
        from jsonschema.exceptions import best_match

        # A setting that may be a template: when the value is no template, what it is
        # not is the setting's own rule (say the template only as an alternative).
        other = [e for e in err.context if not _template_miss(e)]
        templated = len(other) < len(err.context)
        near = [e for e in other if not _type_miss(e)] or other or list(err.context)
        return _describe(best_match(near), data, positions, path, template_ok or templated)
    if err.validator == "required":
        msg = f"{where}: {err.message.replace('is a required property', 'is required')}"
    elif err.validator == "type":
        alternative = " or a template ({{ }})" if template_ok else ""
        msg = (
            f"{where}: expected {_types(err.validator_value)}{alternative}, "
            f"got {_show(err.instance)}"
        )
    elif err.validator == "enum":
        choices = ", ".join(map(str, err.validator_value))
        msg = f"{where}: {_show(err.instance)} is not one of: {choices}"
    elif err.validator == "pattern" and err.schema.get("pattern", "").endswith("%$"):
        msg = f"{where}: {_show(err.instance)} is not a count or a percentage like '25%'"
    else:
        msg = f"{where}: {err.message}"
    if "propertyNames" in err.absolute_schema_path and isinstance(err.instance, str):
        doc_path = (*doc_path, err.instance)  # a bad key: point at the key, not its mapping
    return [SchemaError(msg, position_of(positions, doc_path, path), step=step)]


def _type_miss(err: Any) -> bool:
    """An alternative that failed only because the value has another type."""
    if err.validator in ("oneOf", "anyOf") and err.context:
        return all(_type_miss(e) for e in err.context)
    return err.validator == "type" and not err.relative_path


def _template_miss(err: Any) -> bool:
    """The template alternative of a setting, failed (the value is no template)."""
    return bool(err.schema.get("pattern") == TEMPLATE_PATTERN)


def _types(t: Any) -> str:
    return " or ".join(t) if isinstance(t, list) else str(t)


def _show(v: Any) -> str:
    kind = {dict: "a mapping", list: "a list", type(None): "null"}.get(type(v))
    return kind or f"{type(v).__name__} {v!r}"[:80]


def build(data: dict[str, Any], positions: dict, path: str) -> Runbook:
    """Validated data → ``Runbook``: includes expanded, groups built (``stepreader``)."""
    defaults = data.get("defaults", {})
    check_finite(defaults, position_of(positions, ("defaults",), path), {}, None)
    reader = StepReader(load_steps)
    inherited = Inherited(spec_layers=(defaults,), files=(os.path.abspath(path),))
    source = SourceFile(path, positions)
    steps = reader.read(data["steps"], source, ("steps",), inherited)
    always = reader.read(data.get("always", []), source, ("always",), inherited)
    inventory = data.get("inventory", ())
    if isinstance(inventory, str):
        inventory = (inventory,)
    base = os.path.dirname(os.path.abspath(path))
    files = (path, *reader.files)
    return Runbook(
        name=data["name"],
        path=path,
        steps=tuple(steps),
        description=data.get("description", ""),
        inventory=tuple(os.path.join(base, p) for p in inventory),
        hosts=data.get("hosts", {}),
        vars=data.get("vars", {}),
        env={k: env_str(v) for k, v in data.get("env", {}).items()},
        secrets=_secrets(data.get("secrets", {}), positions, path, base),
        digest=files_digest(files),
        files=files,
        positions=positions,
        always=tuple(always),
    )


def _secrets(raw: dict[str, Any], positions: dict, path: str, base: str) -> tuple[SecretSpec, ...]:
    return tuple(
        SecretSpec(
            name=k,
            env=v.get("env"),
            file=os.path.normpath(os.path.join(base, v["file"])) if "file" in v else None,
            position=position_of(positions, ("secrets", k), path),
            pipe=v.get("pipe"),
            cwd=base if "pipe" in v else None,
        )
        for k, v in raw.items()
    )
