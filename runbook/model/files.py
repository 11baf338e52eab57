"""A file step as written (``FileAction``) and as planned for one host (``Transfer``).

Paths on the controller (a copy's ``src``, a fetch's ``dest``) are kept as the runbook
gives them, relative to the runbook's directory, so a plan reads the same on every
machine and a saved plan applies from anywhere; ``root`` (that directory) is set when a
plan is made or loaded and is never stored.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from runbook.errors import Position, SchemaError


class TransferKind(enum.StrEnum):
    COPY = "copy"  # controller → host
    FETCH = "fetch"  # host → controller


KINDS = tuple(TransferKind)
DEFAULT_MODE = 0o644  # a new file without ``mode``; an existing file keeps its own
SHOWN_DIGEST = 16  # hex digits of a sha256 in the text plan (SPEC §5: at least 12)
_OCTAL = re.compile(r"^[0-7]{3,5}$")
_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@-]*$")


def parse_mode(value: Any, position: Position | None, step: str | None) -> int:
    """``"0640"`` → 0o640. A YAML number is refused: ``mode: 0640`` unquoted is the
    number 416 to YAML, and ``mode: 640`` would be decimal, so neither means what it says.
    Raises ``SchemaError`` (exit 2)."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise SchemaError(
            f"mode: {value!r} is not a quoted octal mode; write it as a string like "
            '"0640" (YAML reads an unquoted 0640 as the number 416)',
            position,
            step=step,
        )
    if not _OCTAL.match(value):
        raise SchemaError(
            f'mode: {value!r} is not an octal file mode like "0640"', position, step=step
        )
    mode = int(value, 8)
    if mode > 0o7777:
        raise SchemaError(f"mode: {value!r} is above 07777", position, step=step)
    return mode


def show_mode(mode: int | None) -> str | None:
    return None if mode is None else f"{mode:04o}"


@dataclass(frozen=True)
class FileAction:
    """``copy: {src, dest, template, mode, owner, group, backup}`` or ``fetch: {src,
    dest}``; ``src`` and ``dest`` are templates."""

    kind: TransferKind
    src: str
    dest: str
    template: bool = False
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    backup: bool = False  # keep the replaced file as DEST.YYYYmmddTHHMMSS~ (copy)

    @classmethod
    def read(
        cls, kind: TransferKind, raw: dict[str, Any], where: dict[str, Position], step: str
    ) -> FileAction:
        """The validated action; ``where`` holds ``copy.mode``-style positions."""
        mode = raw.get("mode")
        for key in ("owner", "group"):
            name = raw.get(key)
            if name is not None and not _NAME.match(str(name)):
                raise SchemaError(
                    f"{key}: {name!r} is not a user or group name", where.get(f"{kind}.{key}")
                )
        return cls(
            kind=kind,
            src=str(raw["src"]),
            dest=str(raw["dest"]),
            template=bool(raw.get("template", False)),
            mode=None if mode is None else parse_mode(mode, where.get(f"{kind}.mode"), step),
            owner=None if raw.get("owner") is None else str(raw["owner"]),
            group=None if raw.get("group") is None else str(raw["group"]),
            backup=bool(raw.get("backup", False)),
        )


@dataclass(frozen=True)
class Transfer:
    """One host's copy or fetch, as planned. ``size``/``sha256`` describe the content a
    copy writes (for a template that reads a secret: its stand-in rendering, ``secret``);
    ``src_sha256`` is the raw ``src`` file's, which ``apply PLAN.json`` checks. ``render``
    makes the real rendering of a template, in memory, when the transfer runs (so a
    thousand queued hosts do not each hold one); it is never stored."""

    kind: TransferKind
    src: str
    dest: str
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    template: bool = False
    secret: bool = False
    size: int | None = None
    sha256: str | None = None
    src_sha256: str | None = None
    backup: bool = False  # a copy keeps the file it replaces (run/transfer/backup.py)
    root: str = field(default="", compare=False)
    render: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)

    # -- paths ---------------------------------------------------------------------------

    def on_controller(self, path: str) -> str:
        """A controller path of the plan: relative ones are relative to the runbook."""
        return os.path.normpath(os.path.join(self.root, path))

    @property
    def planned(self) -> bool:
        """False for a host whose ``when`` was false at plan time (nothing rendered)."""
        return self.sha256 is not None or self.kind == TransferKind.FETCH

    # -- showing and storing ----------------------------------------------------------------

    def summary(self) -> str:
        """The one line a reviewer reads (the command's ``cmd``): never the content."""
        head = f"{self.kind} {self.src} -> {self.dest}"
        if self.kind == TransferKind.FETCH or self.sha256 is None:
            return head
        details = ["template"] if self.template else []
        details += [f"{k} {v}" for k, v in self._owner_fields() if v is not None]
        details += ["backup"] if self.backup else []
        digest = f"sha256:{self.sha256[:SHOWN_DIGEST]}"
        if self.secret:
            digest += " of the stand-in rendering (secret)"
        details += [f"{self.size} bytes", digest]
        return f"{head} ({', '.join(details)})"

    def _owner_fields(self) -> list[tuple[str, str | None]]:
        return [("mode", show_mode(self.mode)), ("owner", self.owner), ("group", self.group)]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "src": self.src, "dest": self.dest}
        d.update({k: v for k, v in self._owner_fields() if v is not None})
        if self.template:
            d["template"] = True
        if self.secret:
            d["secret"] = True
        if self.backup:
            d["backup"] = True
        for key in ("size", "sha256", "src_sha256"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], root: str) -> Transfer:
        mode = d.get("mode")
        return cls(
            kind=TransferKind(d["kind"]),
            src=str(d["src"]),
            dest=str(d["dest"]),
            mode=None if mode is None else int(mode, 8),
            owner=d.get("owner"),
            group=d.get("group"),
            template=bool(d.get("template", False)),
            secret=bool(d.get("secret", False)),
            size=d.get("size"),
            sha256=d.get("sha256"),
            src_sha256=d.get("src_sha256"),
            backup=bool(d.get("backup", False)),
            root=root,
        )

    def rendered_by(self, render: Callable[[], bytes]) -> Transfer:
        return replace(self, render=render)
