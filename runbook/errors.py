"""The exception tree.

Input errors (``InputError`` and subclasses) carry a source position and are rendered as
one line, ``file:line:col: step 'X': host 'Y': message``, and exit code 2; they are always
raised before anything executes. This module is the ground floor: it imports nothing of
the engine, so every other module can raise from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Position:
    """Where something came from: 1-based line and column; 0 means unknown."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col or 1}"
        return self.file

    @classmethod
    def parse(cls, text: str) -> Position:
        """The inverse of ``str``: ``file:line:col`` (a file name may hold colons)."""
        parts = text.rsplit(":", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            return cls(parts[0], int(parts[1]), int(parts[2]))
        return cls(text)


DocPath = tuple[Any, ...]  # where a value sits in a YAML document: its keys and indexes
Positions = Mapping[DocPath, Position]


def position_of(positions: Positions, doc_path: DocPath, file: str) -> Position:
    """Where ``doc_path`` is written, else its nearest enclosing value (what an error
    names may be missing from the document); the file's start when no part of it is."""
    p = doc_path
    while p:
        found = positions.get(p)
        if found is not None:
            return found
        p = p[:-1]
    return Position(file, 1, 1)


class RunbookError(Exception):
    """Base class for every error ``runbook`` raises on purpose."""


class InputError(RunbookError):
    """Bad input: the operator must fix a file or an argument. Exit code 2."""

    def __init__(
        self,
        message: str,
        position: Position | None = None,
        *,
        step: str | None = None,
        host: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.step = step
        self.host = host
        # Further errors found in the same pass; the CLI prints one line for each.
        self.others: list[InputError] = []

    def __str__(self) -> str:
        parts = []
        if self.position is not None:
            parts.append(str(self.position))
        if self.step is not None:
            parts.append(f"step {self.step!r}")
        if self.host is not None:
            parts.append(f"host {self.host!r}")
        parts.append(self.message)
        return ": ".join(parts)


class LoadError(InputError):
    """The file cannot be read or is not valid YAML."""


class SchemaError(InputError):
    """The document does not match ``schemas/runbook.schema.json``."""


class TemplateError(InputError):
    """A Jinja template does not compile or does not render (undefined name, ...)."""


class InventoryError(InputError):
    """An inventory is malformed, or a host pattern matches nothing."""


class UsageError(InputError):
    """A command-line argument is wrong."""


class JournalError(RunbookError):
    """The run journal cannot be written or read."""


class ConnectError(RunbookError):
    """A connection to a host could not be established (the host is ``unreachable``)."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.message = message


class ConnectionLost(ConnectError):
    """The connection died after the command was sent: it may have partly run, so its
    outcome is unknown (``--resume`` will not re-run it silently)."""
