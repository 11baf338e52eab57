"""What each ``copy`` would change (``plan --check``, SPEC §12): per host, ``unchanged``,
``new`` or a unified diff of the destination as it is against what the copy writes.

The destination is read with a small script through the run's execution contexts
(locally, over SSH, under ``sudo`` with ``become``, within the step's timeout); its bytes
go to memory and to the diff, never to disk or the journal. What the copy writes is the
src file, or the template rendered as apply renders it (real secrets, in memory only).
What a diff may show is limited: a template that reads a secret shows only whether its
content changes (the old file may hold the old secret, the new one holds the new);
binary content (a NUL byte, or not UTF-8) shows sizes and digests; a file over
``MAX_DIFF`` bytes, sizes and digests too. Lines are masked and their control
characters escaped, as all command output is.
"""

from __future__ import annotations

import difflib
import hashlib
import shlex
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from runbook.errors import ConnectError, InputError
from runbook.model.command import Command, Outcome
from runbook.model.files import SHOWN_DIGEST, show_mode
from runbook.model.plan import Plan
from runbook.options import RunSettings
from runbook.plan.text import Note
from runbook.run.contexts.base import ExecutionContext
from runbook.run.launch import execution_context
from runbook.run.transfer.content import Payload
from runbook.run.transfer.control import TransferFailed
from runbook.run.values import RunValues
from runbook.text import printable

MAX_DIFF = 1 << 20  # bytes of either side a diff is made of
MAX_LINES = 200  # diff lines shown per host; the rest are counted

# Prints "absent", "link", "dir", "other", "unreadable", or "file SIZE MODE" then, when
# SIZE is at most $2, the content.
READ = r"""
p=$1
if [ -L "$p" ]; then echo link; exit 0; fi
if [ ! -e "$p" ]; then echo absent; exit 0; fi
if [ -d "$p" ]; then echo dir; exit 0; fi
[ -f "$p" ] || { echo other; exit 0; }
[ -r "$p" ] || { echo unreadable; exit 0; }
s=$(stat -c '%s %a' -- "$p") || exit 3
echo "file $s"
if [ "${s%% *}" -le "$2" ]; then exec cat -- "$p"; fi
"""


@dataclass(frozen=True)
class _Side:
    """One side of a diff: its bytes (None when too large to read), size and digest."""

    data: bytes | None
    size: int
    sha256: str
    mode: int | None = None


def copy_notes(
    view: Plan,
    planned: Mapping[tuple[str, str], Command],
    values: RunValues,
    settings: RunSettings,
    warn: Callable[[str], None],
) -> dict[tuple[str, str], Note]:
    """A note per copy the checked ``view`` runs: what it changes on its host. The
    content comes from the ``planned`` command (the view's has its when decided and
    its template bindings dropped)."""
    shown = [
        c
        for step in view.leaf_steps()
        for c in step.commands
        if c.transfer is not None and c.transfer.kind == "copy" and c.skip_reason is None
    ]
    # A copy whose when reads a value no discover step found is decided at apply only.
    notes = {c.key: _DEFERRED for c in shown if c.templates is not None and c.templates.registers}
    copies = [planned[c.key] for c in shown if c.key not in notes]
    if not copies:
        return notes
    runs: dict[str, int] = {}
    for c in copies:
        runs[c.host.name] = runs.get(c.host.name, 0) + 1
    context = execution_context(settings.ssh, warn, runs)
    try:
        with ThreadPoolExecutor(max_workers=settings.forks) as pool:
            done = pool.map(lambda c: _note(c, values, context), copies)
            notes.update({c.key: note for c, note in zip(copies, done, strict=True)})
    finally:
        context.close()
    return notes


_DEFERRED = Note(lines=("diff: not shown, the copy's when is decided at apply",))


def _note(command: Command, values: RunValues, context: ExecutionContext) -> Note:
    tr = command.transfer
    assert tr is not None
    try:
        new = _planned(command, values)
    except (InputError, TransferFailed, OSError) as exc:
        return Note(lines=(f"diff: cannot make what the copy writes: {exc}",))
    try:
        old = _on_host(command, context)
    except _Unread as exc:
        return Note(lines=(f"diff: cannot read {tr.dest}: {exc}",))
    if isinstance(old, str):
        size = "" if tr.secret else f" ({new.size} bytes to write)"  # its length is secret
        return Note(lines=(_STATES[old].format(dest=tr.dest, size=size),))
    return Note(lines=tuple(diff_lines(old, new, tr.dest, tr.secret, tr.mode, command.host.name)))


_STATES = {
    "absent": "new: {dest} does not exist{size}",
    "link": "{dest} is a symbolic link: the copy replaces the link with a file",
    "dir": "{dest} is a directory: the copy will fail",
    "other": "{dest} is not a regular file: the copy will fail",
    "unreadable": "{dest} exists but cannot be read (become?): the copy will fail",
}


def diff_lines(
    old: _Side, new: _Side, dest: str, secret: bool, mode: int | None, host: str
) -> list[str]:
    """What changes from ``old`` (on the host) to ``new`` (the copy's content)."""
    out = []
    if mode is not None and old.mode is not None and old.mode != mode:
        out.append(f"mode {show_mode(old.mode)} → {show_mode(mode)}")
    if old.sha256 == new.sha256:
        return [*out, "unchanged" if not out else "content unchanged"]
    if secret:  # either side may hold a secret: no text, no size, no digest of it
        return [*out, "content changed (not shown: the template reads a secret)"]
    if old.data is None or new.data is None or _binary(old.data) or _binary(new.data):
        why = "binary" if old.data is not None and new.data is not None else "large"
        return [
            *out,
            f"{why}: {old.size} → {new.size} bytes, sha256:{old.sha256[:SHOWN_DIGEST]} → "
            f"sha256:{new.sha256[:SHOWN_DIGEST]}",
        ]
    diff = list(
        difflib.unified_diff(
            old.data.decode().splitlines(keepends=True),
            new.data.decode().splitlines(keepends=True),
            f"{dest} on {host}",
            f"{dest} planned",
        )
    )
    shown = [printable(line.rstrip("\n")) for line in diff[:MAX_LINES]]
    if len(diff) > MAX_LINES:
        shown.append(f"... ({len(diff) - MAX_LINES} more diff lines)")
    return [*out, *shown]


def _binary(data: bytes) -> bool:
    if b"\0" in data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _planned(command: Command, values: RunValues) -> _Side:
    """What the copy writes: the template rendered for real (in memory), or the src."""
    tr = command.transfer
    assert tr is not None
    if command.templates is not None:  # rendered as apply renders it, in memory
        bound = values.executable(command)
        tr = bound.transfer
        assert tr is not None
    payload = Payload.of(tr)
    data = payload.data
    if data is None and payload.size <= MAX_DIFF:
        assert payload.path is not None
        with open(payload.path, "rb") as f:
            data = f.read(MAX_DIFF + 1)
        if hashlib.sha256(data).hexdigest() != payload.sha256:
            raise TransferFailed(f"src {tr.src} changed since the plan was made")
    if data is not None and len(data) > MAX_DIFF:
        data = None
    return _Side(data, payload.size, payload.sha256, tr.mode)


def _read(command: Command, context: ExecutionContext, script: str) -> Outcome:
    """``script`` run where the copy writes, as its user (``become``), within its
    timeout, once (no retries, no ``until``)."""
    reader = replace(
        command,
        cmd=script,
        env={},
        transfer=None,
        templates=None,
        spec=replace(command.spec, retries=0, until=None),
    )
    try:
        return context.execute(reader)
    except ConnectError as exc:
        raise _Unread(exc.message) from None


class _Unread(Exception):
    """The destination could not be read (unreachable, refused, timed out)."""


def _on_host(command: Command, context: ExecutionContext) -> _Side | str:
    """The destination as it is: its bytes (up to ``MAX_DIFF``), or its state."""
    tr = command.transfer
    assert tr is not None
    path = tr.on_controller(tr.dest) if command.host.is_local else tr.dest
    outcome = _read(command, context, f"set -- {shlex.quote(path)} {MAX_DIFF}\n{READ}")
    if outcome.timed_out or outcome.killed or outcome.rc != 0:
        why = outcome.stderr.decode("utf-8", "replace").strip() or f"exit code {outcome.rc}"
        raise _Unread("timed out" if outcome.timed_out else why)
    head, _, body = outcome.stdout.partition(b"\n")
    words = head.decode("utf-8", "replace").split()
    if words[:1] != ["file"]:
        return words[0] if words and words[0] in _STATES else "other"
    size, mode = int(words[1]), int(words[2], 8)
    if size > MAX_DIFF:  # too large to diff: its digest says whether it changes
        return _Side(None, size, _digest(command, context, path), mode)
    if len(body) != size:
        raise _Unread(f"read {len(body)} of {size} bytes (the file changed while read?)")
    return _Side(body, size, hashlib.sha256(body).hexdigest(), mode)


def _digest(command: Command, context: ExecutionContext, path: str) -> str:
    outcome = _read(command, context, f"sha256sum -- {shlex.quote(path)}")
    words = outcome.stdout.decode("utf-8", "replace").split()
    if outcome.rc != 0 or not words:
        raise _Unread("cannot compute its sha256")
    return words[0]
