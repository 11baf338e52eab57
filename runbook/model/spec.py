"""``ExecSpec``: how a step's commands run — the one place a step option is defined.

The loader builds it once from ``defaults`` + the step; the planned step and each of its
commands share it; plans serialise it with ``to_dict``/``from_dict``, whose defaults are the
dataclass's own. Adding an option is one field here plus its schema entry.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_TIMEOUT = 3600.0
DEFAULT_SHELL = "/bin/bash"
MAX_TIMEOUT = 30 * 24 * 3600.0  # SPEC §6: finite timeouts up to 30 days (the CLI checks its own)


class OnFailure(enum.StrEnum):
    """What a failure past ``max_failures`` does: stop the run, or record it and go on."""

    HALT = "halt"
    CONTINUE = "continue"


# Fields written to a plan even when they hold their default (a reviewer sees the timeout).
_ALWAYS = {"always": True}
# Fields that belong to the step's failure policy, written once per step, not per command.
_POLICY = {"policy": True}


@dataclass(frozen=True)
class ExecSpec:
    timeout: float = field(default=DEFAULT_TIMEOUT, metadata=_ALWAYS)
    shell: str = DEFAULT_SHELL
    become: bool = False
    become_user: str | None = None
    retries: int = 0
    delay: float = 0.0
    until: str | None = None
    on_failure: OnFailure = field(default=OnFailure.HALT, metadata=_POLICY)
    max_failures: int | str = field(default=0, metadata=_POLICY)

    @classmethod
    def build(cls, *layers: Mapping[str, Any]) -> ExecSpec:
        """Later layers win (``defaults``, then the group, then the step)."""
        values: dict[str, Any] = {}
        for layer in layers:
            values.update({f.name: layer[f.name] for f in fields(cls) if f.name in layer})
        if "timeout" in values:
            values["timeout"] = float(values["timeout"])
        if "delay" in values:
            values["delay"] = float(values["delay"])
        if "on_failure" in values:
            values["on_failure"] = OnFailure(values["on_failure"])
        return cls(**values)

    def to_dict(self, *, policy: bool = False) -> dict[str, Any]:
        """Fields that differ from their default (plus the always-shown ones), in field
        order; ``policy`` selects the step-level fields instead of the command-level ones."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if bool(f.metadata.get("policy")) != policy:
                continue
            value = getattr(self, f.name)
            if value != f.default or f.metadata.get("always"):
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, *layers: Mapping[str, Any]) -> ExecSpec:
        """The inverse of ``to_dict``: absent fields take the dataclass defaults."""
        return cls.build(*layers)

    @property
    def user(self) -> str | None:
        """Who the command runs as: ``None`` for the connecting user."""
        if not self.become:
            return None
        return self.become_user or "root"
