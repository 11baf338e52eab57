"""A yes/no schema check compiled into small functions, so a valid runbook never imports
jsonschema.

Importing jsonschema costs more than everything else ``runbook validate`` does (~60 ms of
a ~250 ms start-up: its format checkers, referencing, attrs), and a runbook that is
valid, the usual case, needs none of its messages. ``Checker`` answers only "valid?" for
the keywords ``schemas/*.json`` use, with jsonschema's own semantics (Draft 2020-12:
``True`` is no integer, ``1.0`` is one; ``pattern`` is ``re.search``; ``enum`` of
strings compares as text). An invalid document goes to jsonschema, which finds and
words every error as before; a schema with a keyword outside this subset gets no
checker (``compile_schema`` returns ``None``) and jsonschema does all the work.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Check = Callable[[Any], bool]

# Keywords that only annotate: they never make a document invalid.
_ANNOTATIONS = frozenset(
    {"$schema", "$comment", "title", "description", "default", "examples", "$defs"}
)


class Unsupported(Exception):
    """A keyword (or a form of one) this subset does not check: use jsonschema."""


def _is_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, numbers.Number)


def _is_integer(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


def _unbool(x: Any) -> Any:
    return ("bool", x) if isinstance(x, bool) else x


def _equal(one: Any, two: Any) -> bool:
    """jsonschema's equality (``enum``, ``const``): ``True`` is not ``1``, in lists too."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return len(one) == len(two) and all(k in two and _equal(v, two[k]) for k, v in one.items())
    return bool(_unbool(one) == _unbool(two))


_TYPES: dict[str, Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
    "number": _is_number,
    "integer": _is_integer,
}


class Checker:
    """``valid(instance, ref)``: whether ``instance`` is valid against the schema (or the
    ``#/$defs/...`` it names). Compiled once; ``$ref`` resolves lazily, so recursive
    definitions (steps inside groups) work."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self._root = root
        self._refs: dict[str, Check] = {}
        self._check = self._compile(root)

    def valid(self, instance: Any, ref: str = "#") -> bool | None:
        """``None``: the check itself failed (a key no pattern can search, a value that
        cannot be compared): jsonschema decides, as it always did."""
        try:
            return self._check(instance) if ref == "#" else self._ref(ref)(instance)
        except Exception:
            return None

    def _ref(self, ref: str) -> Check:
        done = self._refs.get(ref)
        if done is not None:
            return done
        if not ref.startswith("#/"):
            raise Unsupported(ref)
        node: Any = self._root
        for part in ref[2:].split("/"):
            if not isinstance(node, Mapping) or part not in node:
                raise Unsupported(ref)
            node = node[part]
        slot: list[Check] = []
        self._refs[ref] = lambda x: slot[0](x)  # a recursive reference meets itself here
        slot.append(self._compile(node))
        self._refs[ref] = slot[0]
        return slot[0]

    def _compile(self, schema: Any) -> Check:
        if schema is True:
            return lambda x: True
        if schema is False:
            return lambda x: False
        if not isinstance(schema, Mapping):
            raise Unsupported(repr(schema))
        built = [self._keyword(k, v, schema) for k, v in schema.items() if k not in _ANNOTATIONS]
        checks = [c for c in built if c is not None]
        if not checks:
            return lambda x: True
        if len(checks) == 1:
            return checks[0]
        return lambda x: all(c(x) for c in checks)

    def _keyword(self, key: str, value: Any, schema: Mapping[str, Any]) -> Check | None:
        if key == "$id" and schema is not self._root:
            raise Unsupported("$id below the root: references would resolve elsewhere")
        if key.startswith("$") and key not in ("$ref", "$id"):
            raise Unsupported(key)
        build = getattr(self, "_k_" + key.lstrip("$"), None)
        if build is None:
            raise Unsupported(key)
        check: Check | None = build(value, schema)
        return check

    # -- the keywords --------------------------------------------------------------------

    def _k_id(self, uri: Any, schema: Mapping[str, Any]) -> None:
        return None  # the root's own URI: local references ("#/$defs/...") stay local

    def _k_ref(self, ref: Any, schema: Mapping[str, Any]) -> Check:
        self._ref(ref)  # an unknown reference: unsupported now, not mid-check
        return lambda x: self._refs[ref](x)

    def _k_type(self, types: Any, schema: Mapping[str, Any]) -> Check:
        names = types if isinstance(types, list) else [types]
        try:
            tests = [_TYPES[n] for n in names]
        except (KeyError, TypeError):
            raise Unsupported(f"type {types!r}") from None
        if len(tests) == 1:
            return tests[0]
        return lambda x: any(t(x) for t in tests)

    def _k_enum(self, values: Any, schema: Mapping[str, Any]) -> Check:
        if not isinstance(values, list):
            raise Unsupported("enum that is no list")
        if all(type(v) is str for v in values):  # the usual case: text compares as text
            allowed = frozenset(values)
            return lambda x: (
                (x in allowed) if isinstance(x, str) else any(_equal(v, x) for v in values)
            )
        return lambda x: any(_equal(v, x) for v in values)

    def _k_const(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda x: _equal(x, value)

    def _k_properties(self, props: Any, schema: Mapping[str, Any]) -> Check:
        compiled = [(name, self._compile(sub)) for name, sub in props.items()]

        def check(x: Any) -> bool:
            if not isinstance(x, dict):
                return True
            return all(c(x[name]) for name, c in compiled if name in x)

        return check

    def _k_patternProperties(self, patterns: Any, schema: Mapping[str, Any]) -> Check:
        compiled = [(re.compile(p).search, self._compile(sub)) for p, sub in patterns.items()]
        return lambda x: (
            not isinstance(x, dict)
            or all(c(v) for search, c in compiled for k, v in x.items() if search(k))
        )

    def _k_additionalProperties(self, extra: Any, schema: Mapping[str, Any]) -> Check:
        known = frozenset(schema.get("properties", {}))
        patterns = "|".join(schema.get("patternProperties", {}))
        search = re.compile(patterns).search if patterns else None

        def extras(x: dict[Any, Any]) -> list[Any]:
            return [k for k in x if k not in known and not (search and search(k))]

        if extra is False:
            return lambda x: not isinstance(x, dict) or not extras(x)
        sub = self._compile(extra)
        return lambda x: not isinstance(x, dict) or all(sub(x[k]) for k in extras(x))

    def _k_propertyNames(self, names: Any, schema: Mapping[str, Any]) -> Check:
        sub = self._compile(names)
        return lambda x: not isinstance(x, dict) or all(sub(k) for k in x)

    def _k_required(self, keys: Any, schema: Mapping[str, Any]) -> Check:
        wanted = tuple(keys)
        return lambda x: not isinstance(x, dict) or all(k in x for k in wanted)

    def _k_items(self, items: Any, schema: Mapping[str, Any]) -> Check:
        start = len(schema.get("prefixItems", []))
        sub = self._compile(items)
        return lambda x: not isinstance(x, list) or all(sub(v) for v in x[start:])

    def _k_prefixItems(self, subs: Any, schema: Mapping[str, Any]) -> Check:
        compiled = [self._compile(s) for s in subs]
        return lambda x: (
            not isinstance(x, list) or all(c(v) for c, v in zip(compiled, x, strict=False))
        )

    def _k_maxItems(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda x: not isinstance(x, list) or len(x) <= n

    def _k_minItems(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda x: not isinstance(x, list) or len(x) >= n

    def _k_minLength(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda x: not isinstance(x, str) or len(x) >= n

    def _k_minProperties(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda x: not isinstance(x, dict) or len(x) >= n

    def _k_maxProperties(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda x: not isinstance(x, dict) or len(x) <= n

    def _k_minimum(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda x: not _is_number(x) or not x < n

    def _k_maximum(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda x: not _is_number(x) or not x > n

    def _k_exclusiveMinimum(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda x: not _is_number(x) or not x <= n

    def _k_pattern(self, pattern: Any, schema: Mapping[str, Any]) -> Check:
        search = re.compile(pattern).search
        return lambda x: not isinstance(x, str) or search(x) is not None

    def _k_anyOf(self, subs: Any, schema: Mapping[str, Any]) -> Check:
        compiled = [self._compile(s) for s in subs]
        return lambda x: any(c(x) for c in compiled)

    def _k_oneOf(self, subs: Any, schema: Mapping[str, Any]) -> Check:
        compiled = [self._compile(s) for s in subs]
        return lambda x: sum(1 for c in compiled if c(x)) == 1

    def _k_allOf(self, subs: Any, schema: Mapping[str, Any]) -> Check:
        compiled = [self._compile(s) for s in subs]
        return lambda x: all(c(x) for c in compiled)

    def _k_not(self, sub: Any, schema: Mapping[str, Any]) -> Check:
        compiled = self._compile(sub)
        return lambda x: not compiled(x)

    def _k_if(self, sub: Any, schema: Mapping[str, Any]) -> Check:
        test = self._compile(sub)
        then = self._compile(schema.get("then", True))
        other = self._compile(schema.get("else", True))
        return lambda x: then(x) if test(x) else other(x)

    def _k_then(self, sub: Any, schema: Mapping[str, Any]) -> None:
        return None  # read by "if"; alone it means nothing

    def _k_else(self, sub: Any, schema: Mapping[str, Any]) -> None:
        return None


def compile_schema(schema: Mapping[str, Any]) -> Checker | None:
    """A checker for ``schema``, or ``None`` when it uses a keyword outside the subset."""
    try:
        return Checker(schema)
    except (Unsupported, re.error):
        return None
