"""Reading ``set``, ``assert`` and ``loop`` (SPEC §11): what the schema cannot say.

``set`` and ``assert`` run no command: the settings only a command has are refused on
them, and so is ``register`` (a ``set``'s values are read by their own names). ``loop``
repeats a ``run`` command; ``loop_var`` needs a ``loop``.
"""

from __future__ import annotations

from typing import Any

from runbook.errors import Position, SchemaError
from runbook.model.controller import Assertion, SetValues

# What only a shell command has (or what would make no sense without one).
NOT_ON_CONTROLLER = (
    "until",
    "env",
    "shell",
    "become",
    "become_user",
    "timeout",
    "retries",
    "delay",
    "register",
    "loop",
    "local",
)


def controller_parts(
    raw: dict[str, Any], name: str, where: dict[str, Position]
) -> tuple[SetValues | None, Assertion | None]:
    """The step's ``set`` or ``assert``, checked; (None, None) for any other step."""
    kind = "set" if "set" in raw else "assert" if "assert" in raw else None
    if kind is None:
        return None, None
    for key in NOT_ON_CONTROLLER:
        if key in raw:
            hint = " (its values are read by their names)" if key == "register" else ""
            raise SchemaError(
                f"{key} is not allowed on {'a' if kind == 'set' else 'an'} {kind} step: it "
                f"runs no command, the controller evaluates it{hint}",
                where.get(key),
                step=name,
            )
    if kind == "set":
        return SetValues(tuple(raw["set"].items())), None
    body = raw["assert"]
    that = body["that"]
    return None, Assertion(
        that=(that,) if isinstance(that, str) else tuple(that), message=body.get("message")
    )


def check_loop(raw: dict[str, Any], name: str, where: dict[str, Position]) -> None:
    if "loop" in raw and "run" not in raw:
        raise SchemaError(
            "loop is for run steps: it runs the command once per item",
            where.get("loop"),
            step=name,
        )
    if "loop_var" in raw and "loop" not in raw:
        raise SchemaError(
            "loop_var names a loop's item: add loop:", where.get("loop_var"), step=name
        )
