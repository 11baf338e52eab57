"""The compiled schema check says what jsonschema says, on every runbook the project holds
and on thousands of mutations of them (it decides whether jsonschema is imported at all:
a "valid" it gave wrongly would let a bad runbook through)."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from runbook.errors import LoadError
from runbook.load.fastschema import compile_schema
from runbook.load.loader import checker, schema, schema_valid
from runbook.load.yamlpos import load_yaml

ROOT = Path(__file__).resolve().parents[2]

# Values of every JSON type and the edges of the schema's rules: bools against integers,
# 1.0 (an integer to Draft 2020-12), empty text and lists, templates, NaN and infinity.
ODD = [
    True,
    False,
    None,
    0,
    -1,
    1,
    1.0,
    1.5,
    10**9,
    math.nan,
    math.inf,
    "",
    " ",
    "x",
    "{{ x }}",
    "{% if a %}b{% endif %}",
    "/abs",
    "50%",
    "101%",
    "halt",
    "local",
    [],
    ["x"],
    [{}],
    {},
    {"x": 1},
    {"name": "n", "run": "true"},
]


def _documents() -> Iterator[tuple[str, Any]]:
    for path in sorted([*ROOT.glob("tests/**/*.y*ml"), *ROOT.glob("playbooks/**/*.y*ml")]):
        if path.stat().st_size > 200_000:
            continue
        try:
            data, _ = load_yaml(str(path))
        except (LoadError, RecursionError):
            continue
        if isinstance(data, dict) and "steps" in data:
            yield str(path.relative_to(ROOT)), data


DOCUMENTS = list(_documents())


def _paths(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*at, i))


def _replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(doc)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def _deleted(doc: Any, path: tuple[Any, ...]) -> Any:
    out = copy.deepcopy(doc)
    node = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


def _mutations(doc: dict[str, Any]) -> Iterator[Any]:
    for n, path in enumerate(_paths(doc)):
        if not path:
            continue
        yield _deleted(doc, path)
        for m, value in enumerate(ODD):
            if (n + m) % 5 == 0:  # a fifth of the pairs: thousands, in a second or two
                yield _replaced(doc, path, value)
        parent = path[:-1]
        node = doc
        for part in parent:
            node = node[part]
        if isinstance(node, dict):  # an unknown key beside a known one
            yield _replaced(doc, (*parent, "no_such_key"), 1)


RUNBOOK = Draft202012Validator(schema("runbook"))


def test_the_project_schemas_compile() -> None:
    for name in ("runbook", "plan", "steps", "events", "diff"):
        assert checker(name) is not None, name


def test_a_check_that_cannot_run_leaves_it_to_jsonschema() -> None:
    check = compile_schema({"patternProperties": {"^a": {}}})
    assert check is not None
    assert check.valid({1: "an integer key no pattern can search"}) is None


def test_the_corpus_is_the_projects_runbooks() -> None:
    assert len(DOCUMENTS) > 50
    assert any(RUNBOOK.is_valid(d) for _, d in DOCUMENTS)
    assert any(not RUNBOOK.is_valid(d) for _, d in DOCUMENTS)  # tests/data's bad inputs


@pytest.mark.parametrize(("name", "doc"), DOCUMENTS, ids=[n for n, _ in DOCUMENTS])
def test_agrees_with_jsonschema_on_each_runbook_and_its_mutations(name: str, doc: Any) -> None:
    check = checker("runbook")
    assert check is not None
    disagree = []
    for variant in [doc, *_mutations(doc)]:
        if check.valid(variant) != RUNBOOK.is_valid(variant):
            disagree.append(json.dumps(variant, default=repr)[:300])
    assert disagree == []


PLANS = sorted((ROOT / "tests/golden").glob("*.json"))


@pytest.mark.parametrize("path", PLANS, ids=[p.name for p in PLANS])
def test_a_saved_plan_agrees_with_jsonschema(path: Path) -> None:
    data = json.loads(path.read_text())
    validator = Draft202012Validator(schema("plan"))
    paths = list(_paths(data))[1:]
    every = max(1, len(paths) // 100)  # ~100 mutations a plan, spread over all of it
    variants = [data]
    for n, at in enumerate(paths[::every]):
        variants.append(_replaced(data, at, ODD[n % len(ODD)]))
    disagree = [
        json.dumps(v, default=repr)[:300]
        for v in variants
        if schema_valid(v, "plan") != validator.is_valid(v)
    ]
    assert disagree == []


CLOSED = {"patternProperties": {"^a": {}}, "properties": {"b": {}}, "additionalProperties": False}


@pytest.mark.parametrize(
    ("rule", "value", "valid"),
    [
        ({"type": "integer"}, True, False),  # a bool is no integer
        ({"type": "integer"}, 1.0, True),  # Draft 2020-12: 1.0 is an integer
        ({"type": "number"}, False, False),
        ({"minimum": 0}, True, True),  # bounds apply to numbers only
        ({"maximum": 5}, math.nan, True),  # as jsonschema: every comparison is false
        ({"enum": ["a"]}, ["a"], False),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1, False),  # both: not one
        ({"anyOf": [{"type": "integer"}, {"type": "number"}]}, 1, True),
        ({"pattern": "^a"}, 3, True),  # a pattern applies to text only
        ({"propertyNames": {"pattern": "^[a-z]+$"}}, {"A": 1}, False),
        ({"additionalProperties": False, "properties": {"a": {}}}, {"a": 1, "b": 2}, False),
        ({"additionalProperties": {"type": "string"}}, {"a": 1}, False),
        ({"minLength": 2}, "é", False),  # code points, as len()
        ({"enum": [1, "a"]}, True, False),  # True is not 1
        ({"enum": [[1]]}, [True], False),
        ({"const": 0}, 0.0, True),
        ({"const": {"a": [1]}}, {"a": [1]}, True),
        ({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}, ["a", 1], True),
        ({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}, ["a", "b"], False),
        ({"maxItems": 1}, [1, 2], False),
        ({"if": {"type": "string"}, "then": {"minLength": 2}, "else": {"minimum": 3}}, "a", False),
        ({"if": {"type": "string"}, "then": {"minLength": 2}, "else": {"minimum": 3}}, 2, False),
        ({"if": {"type": "string"}, "then": {"minLength": 2}}, 2, True),
        ({"then": {"minLength": 2}}, "a", True),  # "then" without "if" means nothing
        ({"allOf": [{"minimum": 1}, {"maximum": 2}]}, 3, False),
        ({"not": {"type": "string"}}, "a", False),
        ({"patternProperties": {"^a": {"type": "string"}}}, {"ab": 1}, False),
        (CLOSED, {"ab": 1, "b": 2}, True),
        (CLOSED, {"ab": 1, "b": 2, "c": 3}, False),
    ],
)
def test_keyword_semantics_match_jsonschema(rule: dict[str, Any], value: Any, valid: bool) -> None:
    check = compile_schema(rule)
    assert check is not None
    assert check.valid(value) is valid
    assert Draft202012Validator(rule).is_valid(value) is valid


@pytest.mark.parametrize(
    "rule",
    [
        {"format": "email"},
        {"unevaluatedProperties": False},
        {"dependentRequired": {"a": ["b"]}},
        {"$ref": "https://example.com/other.json"},
        {"$anchor": "here"},
        {"properties": {"a": {"$id": "x", "type": "string"}}},
    ],
)
def test_a_keyword_outside_the_subset_leaves_it_to_jsonschema(rule: dict[str, Any]) -> None:
    assert compile_schema(rule) is None


def test_recursive_references_resolve() -> None:
    rule = {
        "$ref": "#/$defs/node",
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                "additionalProperties": False,
            }
        },
    }
    check = compile_schema(rule)
    assert check is not None
    assert check.valid({"kids": [{"kids": []}, {}]})
    assert not check.valid({"kids": [{"kids": [{"x": 1}]}]})
