"""Step settings written as templates (SPEC §11): ``timeout``, ``retries``, ``delay``,
``serial`` and ``max_failures`` may be ``"{{ ... }}"``, rendered at plan time.

The loader keeps them apart from the typed settings (``ExecSpec``, ``Step.serial``),
which hold their defaults meanwhile; the planner renders them (``plan/settings.py``).
A later layer wins, as for plain settings: a step's plain ``timeout: 60`` replaces its
group's templated one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

TEMPLATED = ("timeout", "retries", "delay", "serial", "max_failures")
# Rendered once per step (they shape its batches and its policy), not per host.
STEP_LEVEL = frozenset({"serial", "max_failures"})


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def split_templated(
    layers: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], dict[str, str]]:
    """``layers`` without their templated settings, and those settings (later layers
    win, a plain value in a later layer included)."""
    plain: list[Mapping[str, Any]] = []
    templated: dict[str, str] = {}
    for layer in layers:
        own = {k: layer[k] for k in TEMPLATED if is_template(layer.get(k))}
        for key in TEMPLATED:
            if key in layer and key not in own:
                templated.pop(key, None)
        templated.update(own)
        plain.append({k: v for k, v in layer.items() if k not in own} if own else layer)
    return plain, templated
