"""Apply time: what a copy writes, and whether the host already has it.

``bind`` renders a template for real, in memory only, just before the transfer: the
rendering goes to the execution context and nowhere else. It is checked against the plan
(the same raw src, the same shown digest) so a saved plan writes what was reviewed.
``Payload`` streams a plain src in chunks and checks its digest at the end, before the
temp file is renamed: a src edited mid-run fails the copy, never half-lands.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from runbook.errors import InputError, Position, TemplateError
from runbook.load.secrets import fill_values
from runbook.model.command import Command
from runbook.model.files import Transfer, TransferKind
from runbook.model.plan import Plan
from runbook.plan.transfers import CHUNK, check_source, file_digest
from runbook.run.transfer.control import TransferFailed, Watch, describe_os_error
from runbook.templating.env import evaluate
from runbook.templating.files import parse_template
from runbook.templating.render import withheld
from runbook.text import STAND_IN

READ_CHUNK = CHUNK


def bind(command: Command, ctx: dict[str, Any]) -> Command:
    """The command as it runs: its deferred ``when`` decided, its template rendered with
    ``ctx`` (real secrets). Raises ``TemplateError``; one from a render with real secrets
    is withheld (its text could show them)."""
    t, tr = command.templates, command.transfer
    assert t is not None and tr is not None
    if t.when is not None and not evaluate(t.when, ctx, t.positions.get("when")):
        return replace(command, skip_reason=f"when: {t.when}", templates=None)
    if not tr.template or not tr.planned:
        return replace(command, templates=None)
    stand_ins = dict.fromkeys(t.secrets, STAND_IN)
    shown = {**ctx, **fill_values(t.values, stand_ins), **stand_ins}  # as it was planned
    _render(tr, ctx, t.secrets, shown)  # now, so an error fails this command before it starts

    def render() -> bytes:
        try:
            return _render(tr, ctx, t.secrets, shown)
        except TemplateError as exc:  # the src changed since the check above
            raise TransferFailed(str(exc)) from None

    return replace(command, transfer=tr.rendered_by(render), templates=None)


def _render(
    tr: Transfer, ctx: dict[str, Any], secrets: tuple[str, ...], shown_ctx: dict[str, Any]
) -> bytes:
    """The real rendering, checked against the plan: the same raw src, and the same
    shown digest (the stand-in rendering's, for a template that reads a secret)."""
    path = tr.on_controller(tr.src)
    template = parse_template(_read_src(tr, path), path, Position(path))
    try:
        content = template.render(ctx)
    except TemplateError as exc:
        raise (withheld(exc, secrets) if secrets else exc) from None
    shown = content
    if tr.secret:
        shown = template.render(shown_ctx)
    if hashlib.sha256(shown).hexdigest() != tr.sha256:
        raise TemplateError(
            f"template {tr.src!r} renders differently than when the plan was made (its "
            "values changed?); make the plan again",
            Position(path),
        )
    return content


def _read_src(tr: Transfer, path: str) -> bytes:
    check_source(path, tr.src, Position(path))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise TemplateError(f"cannot read {path}: {describe_os_error(exc)}") from None
    if hashlib.sha256(data).hexdigest() != tr.src_sha256:
        raise TemplateError(src_changed(tr), Position(path))
    return data


def src_changed(tr: Transfer) -> str:
    return (
        f"src {tr.src!r} changed since the plan was made (planned sha256:"
        f"{(tr.src_sha256 or '?')[:16]}); make the plan again and review it"
    )


@dataclass(frozen=True)
class Payload:
    """What a copy writes: rendered bytes, or the src file read in chunks."""

    size: int
    sha256: str  # of the real content: what the host's file is compared with
    path: str | None = None
    data: bytes | None = None

    @classmethod
    def of(cls, tr: Transfer) -> Payload:
        if tr.render is not None:
            data = tr.render()
            return cls(len(data), hashlib.sha256(data).hexdigest(), data=data)
        if tr.template:  # bind() renders every template first: reaching here is a bug
            raise RuntimeError(f"template {tr.src!r} was not rendered before its transfer")
        assert tr.size is not None and tr.src_sha256 is not None
        return cls(tr.size, tr.src_sha256, path=tr.on_controller(tr.src))

    def chunks(self, watch: Watch, size: int = READ_CHUNK) -> Iterator[bytes]:
        """The content of a src file whose digest was checked against the plan's before
        its first chunk (raises ``TransferFailed`` if it changed since the plan) and whose
        identity (inode, size, mtime, ctime) is the same after its last chunk. One src
        copied to many hosts at once is hashed once: the others wait for that hash."""
        if self.data is not None:
            for i in range(0, len(self.data), size):
                watch.check()
                yield self.data[i : i + size]
            return
        assert self.path is not None
        try:
            with open(self.path, "rb") as f:
                before = _identity(os.fstat(f.fileno()))
                self._verify(f, before, watch, size)
                f.seek(0)
                while block := f.read(size):
                    watch.check()
                    yield block
                after = _identity(os.fstat(f.fileno()))
        except OSError as exc:
            raise TransferFailed(f"cannot read {self.path}: {describe_os_error(exc)}") from None
        if after != before:
            raise TransferFailed(f"src {self.path} changed during the run; nothing was written")

    def _verify(self, f: Any, identity: tuple[int, ...], watch: Watch, size: int) -> None:
        assert self.path is not None
        with _verifying.setdefault(self.path, threading.Lock()):
            if _verified.get(self.path) == (identity, self.sha256):
                return
            h = hashlib.sha256()
            while block := f.read(size):
                watch.check()
                h.update(block)
            if h.hexdigest() != self.sha256 or _identity(os.fstat(f.fileno())) != identity:
                raise TransferFailed(f"src {self.path} changed since the plan; nothing was written")
            _verified[self.path] = (identity, self.sha256)


# src path → (identity, sha256) of a read that hashed to the planned digest, this process.
_verified: dict[str, tuple[tuple[int, ...], str]] = {}
_verifying: dict[str, threading.Lock] = {}  # one hash of a path at a time (setdefault: atomic)


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """What changes when a file's content can have changed (ctime cannot be set back)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def check_sources(plan: Plan) -> None:
    """A saved or journaled plan copies what was reviewed: every copy's raw ``src``
    must still have the sha256 the plan recorded. Raises ``InputError`` (exit 2, nothing
    run), one line per changed file."""
    digests: dict[str, str] = {}
    errors: dict[str, InputError] = {}
    for step in plan.leaf_steps():
        for command in step.commands:
            tr = command.transfer
            if tr is None or tr.kind != TransferKind.COPY or tr.src_sha256 is None:
                continue
            path = tr.on_controller(tr.src)
            if path not in digests:
                try:
                    digests[path] = file_digest(path)[1]
                except OSError as exc:
                    digests[path] = f"unreadable ({describe_os_error(exc)})"
            if digests[path] != tr.src_sha256 and path not in errors:
                errors[path] = InputError(src_changed(tr), Position(path), step=step.name)
    if errors:
        first, *rest = errors.values()
        first.others = rest
        raise first
