"""What a command is when it is no shell command, or one of several: the controller's part
(SPEC §11).

``SetValues`` and ``Assertion`` are steps evaluated on the controller, per host: no
command runs. ``LoopItem`` marks one command of a ``loop`` (the item it was rendered
with); ``Loop`` is a loop whose list is known only at run time (it reads a registered
value), expanded into items just before it runs. Each is planned like a command — known
at plan time, or kept as templates with the values they read — and shown as its summary
in ``Command.cmd``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_LOOP_VAR = "item"
NO_ITEMS = "loop: no items"  # why a host whose loop has no item is skipped


@dataclass(frozen=True)
class SetValues:
    """``set``: named values for the host, as written (templates, possibly inside lists
    and mappings), and computed — at plan time when they read only plan-time values
    (``values``), else at run time (``values`` is None)."""

    templates: tuple[tuple[str, Any], ...]
    values: dict[str, Any] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.templates)

    def summary(self) -> str:
        """How plans and results show it: each name with its value, or its template
        while it is computed at run time."""
        lines = []
        for name, template in self.templates:
            if self.values is not None and name in self.values:
                shown = json.dumps(self.values[name], ensure_ascii=False, sort_keys=True)
            else:
                shown = template if isinstance(template, str) else json.dumps(template)
            lines.append(f"set {name} = {shown}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"templates": [[k, v] for k, v in self.templates]}
        if self.values is not None:
            d["values"] = self.values
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SetValues:
        values = d.get("values")
        return cls(
            templates=tuple((str(k), v) for k, v in d["templates"]),
            values=None if values is None else dict(values),
        )


@dataclass(frozen=True)
class Assertion:
    """``assert``: every expression of ``that`` must hold, else the host fails with
    ``message`` (a template) rendered. Decided at plan time when it reads only plan-time
    values (``held`` True or False, ``failure`` the rendered message), else at run time
    (``held`` None)."""

    that: tuple[str, ...]
    message: str | None = None
    held: bool | None = None
    failure: str | None = None

    def summary(self) -> str:
        return "\n".join(f"assert {e}" for e in self.that)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"that": list(self.that)}
        if self.message is not None:
            d["message"] = self.message
        if self.held is not None:
            d["held"] = self.held
        if self.failure is not None:
            d["failure"] = self.failure
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Assertion:
        return cls(
            that=tuple(str(e) for e in d["that"]),
            message=d.get("message"),
            held=d.get("held"),
            failure=d.get("failure"),
        )


Controlled = SetValues | Assertion


def controlled_from_dict(d: Mapping[str, Any]) -> Controlled | None:
    """The ``set`` or ``assert`` of a command read back from a plan."""
    if "set" in d:
        return SetValues.from_dict(d["set"])
    if "assert" in d:
        return Assertion.from_dict(d["assert"])
    return None


def controlled_to_dict(c: Controlled) -> dict[str, Any]:
    return {"set": c.to_dict()} if isinstance(c, SetValues) else {"assert": c.to_dict()}


@dataclass(frozen=True)
class LoopItem:
    """One item of a loop: its position (0-based, as in ``register.results``), its value
    and the name it is bound to (``loop_var``)."""

    index: int
    value: Any
    var: str = DEFAULT_LOOP_VAR

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "var": self.var, "value": self.value}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopItem:
        return cls(int(d["index"]), d.get("value"), str(d.get("var", DEFAULT_LOOP_VAR)))


@dataclass(frozen=True)
class Loop:
    """A loop whose list reads a run-time value: ``source`` as written (a template, or a
    list holding templates), expanded just before the host's turn."""

    source: Any
    var: str = DEFAULT_LOOP_VAR

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "var": self.var}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Loop:
        return cls(d["source"], str(d.get("var", DEFAULT_LOOP_VAR)))
