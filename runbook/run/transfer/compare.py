"""Is the file already there? What a copy compares (content, mode, owner, group) and
what it sets when it writes — one decision for every transport. A dest that is a
symlink is replaced by the file (``rename(2)``), never written through; one to a
directory is refused, as a directory is."""

from __future__ import annotations

from dataclasses import dataclass

from runbook.model.files import DEFAULT_MODE, Transfer
from runbook.run.transfer.control import TransferFailed


@dataclass(frozen=True)
class Found:
    """What the probe found at a path, and the numeric ids of the wanted owner/group."""

    state: str
    want_uid: int | None = None
    want_gid: int | None = None
    size: int | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    sha256: str | None = None

    @property
    def is_file(self) -> bool:
        return self.state == "file"


@dataclass(frozen=True)
class Decision:
    """Whether to write, and with what mode and ids (``strict``: the ids were asked
    for; otherwise they keep an existing file's owner, when allowed)."""

    write: bool
    mode: int
    uid: int | None
    gid: int | None
    strict: bool


def decide(found: Found, size: int, sha256: str, tr: Transfer) -> Decision:
    """Compare what is at dest with what the copy writes: content, mode, owner, group."""
    if found.state in ("dir", "special"):
        raise TransferFailed(f"dest {tr.dest} exists and is not a regular file ({found.state})")
    if found.state == "linkdir":  # replacing it would swap a directory for a file
        raise TransferFailed(f"dest {tr.dest} is a symbolic link to a directory")
    if found.state == "swapped":
        raise TransferFailed(f"dest {tr.dest} was replaced while it was inspected")
    if found.state == "noparent":
        raise TransferFailed(
            f"the directory of dest {tr.dest} does not exist (or cannot be searched)"
        )
    if found.state == "unreadable":
        raise TransferFailed(f"dest {tr.dest} exists but cannot be read (become?)")
    existing = found.is_file
    mode = tr.mode if tr.mode is not None else (found.mode if existing else None)
    strict = found.want_uid is not None or found.want_gid is not None
    uid = found.want_uid if found.want_uid is not None else (found.uid if existing else None)
    gid = found.want_gid if found.want_gid is not None else (found.gid if existing else None)
    same = (
        existing
        and found.size == size
        and found.sha256 == sha256
        and (tr.mode is None or found.mode == tr.mode)
        and (found.want_uid is None or found.uid == found.want_uid)
        and (found.want_gid is None or found.gid == found.want_gid)
    )
    return Decision(not same, DEFAULT_MODE if mode is None else mode, uid, gid, strict)
