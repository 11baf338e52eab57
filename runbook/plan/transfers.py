"""Plan time for ``copy`` and ``fetch``: paths rendered and checked, content measured.

A copy's plan shows, per host, dest, mode, size and the sha256 of the rendered content —
never the content. A template that reads a secret is rendered here with the secrets'
stand-ins, and that rendering's digest is what every surface shows, marked ``secret``:
the real content's digest would let a weak secret be guessed offline (SPEC §8). The real
rendering happens only in memory at apply time (``content.bind``), from the values bound
here (``Templates.values``), so a saved plan never re-reads the runbook or inventory.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from runbook.errors import InputError, Position, TemplateError
from runbook.load.vault import Keyring
from runbook.model.command import Command, Templates
from runbook.model.files import FileAction, Transfer, TransferKind
from runbook.model.runbook import Host, Runbook, Step
from runbook.plan.vaulted import NONE as NO_VAULT
from runbook.plan.vaulted import VaultReads, split_vaulted
from runbook.templating.env import evaluate, expression_names, template_names
from runbook.templating.env import render as render_template
from runbook.templating.files import MAX_TEMPLATE, FileTemplate, parse_template

CHUNK = 1 << 20


def file_digest(path: str, chunk: int = CHUNK) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in chunks: a 1 GiB src is never in memory."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


@dataclass(frozen=True)
class _Source:
    """A copy's src as read once per plan: its raw digest, and its template if it is one."""

    size: int
    sha256: str
    template: FileTemplate | None


class StepPlanning(Protocol):
    """What a transfer needs of the planning pass it belongs to (``planner._Planner``)."""

    runbook: Runbook
    secrets: frozenset[str]
    registered: set[str]
    keyring: Keyring

    def context(self, step: Step, host: Host, reads: frozenset[str]) -> Mapping[str, Any]: ...

    def host(self, host: Host) -> Host: ...

    def with_become(self, step: Step, host: Host) -> Step: ...


class TransferPlanner:
    """The copy/fetch part of one planning pass (``planner._Planner`` delegates here)."""

    def __init__(self, planner: StepPlanning) -> None:
        self.p = planner
        self.root = os.path.dirname(os.path.abspath(planner.runbook.path))
        self.shown_root = os.path.dirname(planner.runbook.path)
        self._sources: dict[tuple[str, bool], _Source] = {}
        self._fetched: dict[str, dict[str, str]] = {}  # step → controller path → host

    def command(self, step: Step, host: Host) -> Command:
        """One host's copy or fetch. Raises ``InputError`` (the caller adds step/host)."""
        action = step.transfer
        assert action is not None
        when = step.when
        when_reads = expression_names(when) if when is not None else frozenset()
        paths = template_names(action.src) | template_names(action.dest)
        ctx: Mapping[str, Any] = self.p.context(step, host, paths | when_reads)
        host = self.p.host(host)
        step = self.p.with_become(step, host)
        later = self.p.secrets | self.p.registered | {"hostvars"}
        deferred_when = when is not None and bool(when_reads & later)
        if when is not None and not deferred_when and not evaluate(when, ctx, _at(step, "when")):
            return self._command(step, host, self._unplanned(action), None, f"when: {when}")
        src, dest = self._paths(step, host, action, ctx, later)
        names: frozenset[str] = frozenset()
        vault = NO_VAULT
        if action.kind == TransferKind.FETCH:
            transfer = self._fetch(step, host, action, src, dest)
        else:
            transfer, names, read_ctx, vault = self._copy(
                step, host, action, (src, dest), paths | when_reads
            )
            ctx = read_ctx if read_ctx is not None else ctx
        if not names and not deferred_when and not transfer.template:
            # A template is rendered at apply time from ``Templates.values``: one that
            # reads no name still needs them (an apply of it crashed with exit 70).
            return self._command(step, host, transfer, None, None)
        read = names | (when_reads if deferred_when else frozenset())
        when_at = _at(step, "when") if deferred_when else None
        templates = Templates(
            run="",
            when=when if deferred_when else None,
            values={
                **{n: ctx[n] for n in sorted(read) if n in ctx and n not in later},
                **vault.tokenized,  # a vaulted value as its secret's token
            },
            secrets=tuple(sorted(read & self.p.secrets | vault.secrets)),
            registers=tuple(sorted(read & (self.p.registered | {"hostvars"}))),
            positions={"when": when_at} if when_at is not None else {},
        )
        return self._command(step, host, transfer, templates, None)

    def _command(
        self, step: Step, host: Host, t: Transfer, templates: Templates | None, skip: str | None
    ) -> Command:
        return Command(
            step=step.name,
            host=host,
            cmd=t.summary(),
            spec=step.spec,
            skip_reason=skip,
            templates=templates,
            transfer=t,
        )

    def _unplanned(self, action: FileAction) -> Transfer:
        """A host the plan skips: the action as written, nothing rendered or read."""
        return Transfer(
            action.kind,
            action.src,
            action.dest,
            action.mode,
            action.owner,
            action.group,
            action.template,
            backup=action.backup,
            root=self.root,
        )

    # -- paths ----------------------------------------------------------------------------

    def _paths(
        self,
        step: Step,
        host: Host,
        action: FileAction,
        ctx: Mapping[str, Any],
        later: Iterable[str],
    ) -> tuple[str, str]:
        """``src`` and ``dest`` rendered: shown in the plan, so they may not read a secret
        or a registered value; a path on a remote host must be absolute."""
        out = []
        for key in ("src", "dest"):
            where = _at(step, f"{action.kind}.{key}")
            source = getattr(action, key)
            for name in sorted(template_names(source) & set(later)):
                raise TemplateError(
                    f"{key} reads {name!r}, which is known only at apply time; a path is "
                    "rendered at plan time and shown in the plan",
                    where,
                )
            path = render_template(source, ctx, where)
            if not path or "\0" in path:
                raise InputError(f"{key} renders to {path!r}, which is not a path", where)
            if key == ("src" if action.kind == "copy" else "dest"):  # on the controller
                check_inside(key, source, path, where)
            out.append(path)
        src, dest = out
        if action.kind == TransferKind.COPY and dest.endswith("/"):
            dest += os.path.basename(src)  # into that directory, under the src's name
        on_host = dest if action.kind == TransferKind.COPY else src
        if not host.is_local and not os.path.isabs(on_host):
            key = "dest" if action.kind == TransferKind.COPY else "src"
            raise InputError(
                f"{key} {on_host!r} is not an absolute path; on remote host {host.name!r} "
                "it must be (relative paths are the runbook's only on the controller)",
                _at(step, f"{action.kind}.{key}"),
            )
        return src, dest

    def _fetch(self, step: Step, host: Host, action: FileAction, src: str, dest: str) -> Transfer:
        """A fetch; two hosts of one step writing one controller file is an input error."""
        transfer = Transfer(TransferKind.FETCH, src, dest, root=self.root)
        target = transfer.on_controller(dest)
        seen = self._fetched.setdefault(step.name, {})
        other = seen.setdefault(target, host.name)
        if other != host.name:
            raise InputError(
                f"fetch dest {dest!r} is the same file for hosts {other!r} and {host.name!r}; "
                "each would overwrite the other's: put {{ host.name }} in dest",
                _at(step, "fetch.dest"),
            )
        return transfer

    # -- copy -----------------------------------------------------------------------------

    def _copy(
        self,
        step: Step,
        host: Host,
        action: FileAction,
        paths: tuple[str, str],
        reads: frozenset[str],
    ) -> tuple[Transfer, frozenset[str], Mapping[str, Any] | None, VaultReads]:
        """The copy's transfer, the names its template reads, the context it read and the
        vaulted values in it (stand-ins in the context, as secrets are)."""
        src, dest = paths
        source = self._source(src, action.template, _at(step, "copy.src"))
        transfer = Transfer(
            TransferKind.COPY,
            src,
            dest,
            action.mode,
            action.owner,
            action.group,
            action.template,
            size=source.size,
            sha256=source.sha256,
            src_sha256=source.sha256,
            backup=action.backup,
            root=self.root,
        )
        if source.template is None:
            return transfer, frozenset(), None, NO_VAULT
        names = source.template.names
        for name in sorted(names & (self.p.registered | {"hostvars"})):
            raise TemplateError(
                f"template {source.template.shown!r} reads {name!r}, registered by an earlier "
                "step; a copy template is rendered from plan-time values",
                _at(step, "copy.src"),
            )
        ctx = dict(self.p.context(step, host, reads | names))  # secrets are stand-ins here
        vault = split_vaulted(ctx, names, self.p.keyring)  # and so are vaulted values
        content = source.template.render(ctx)
        shown = replace(
            transfer,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            secret=bool(names & self.p.secrets or vault.secrets),
        )
        return shown, names, ctx, vault

    def _source(self, src: str, template: bool, where: Position | None) -> _Source:
        """The src file, read once per plan (a src shared by 1,000 hosts is hashed once)."""
        key = (src, template)
        found = self._sources.get(key)
        if found is None:
            found = self._sources[key] = self._read_source(src, template, where)
        return found

    def _read_source(self, src: str, template: bool, where: Position | None) -> _Source:
        path = os.path.join(self.root, src)
        shown = os.path.join(self.shown_root, src)
        check_source(path, src, where)
        try:
            if not template:
                size, digest = file_digest(path)
                return _Source(size, digest, None)
            with open(path, "rb") as f:
                data = f.read(MAX_TEMPLATE + 1)
        except OSError as exc:
            raise InputError(f"src {src!r}: cannot read {shown}: {exc.strerror}", where) from None
        parsed = parse_template(data, shown, where)
        return _Source(len(data), hashlib.sha256(data).hexdigest(), parsed)


def check_inside(key: str, written: str, path: str, where: Position | None) -> None:
    """A controller path built from a template (a copy's src, a fetch's dest) stays inside
    the runbook's directory unless the runbook writes it absolute (SPEC §6): a host name
    or an inventory var must not make ``logs/{{ host.name }}.log`` write elsewhere, or
    ``files/{{ conf }}`` ship ``~/.ssh/id_ed25519`` to a host. Raises ``InputError``."""
    if not template_names(written) or os.path.isabs(written):
        return  # as the author wrote it
    parts = os.path.normpath(path).split(os.sep)
    if os.path.isabs(path) or parts[0] == "..":
        raise InputError(
            f"{key} {path!r}, rendered from {written!r}, is outside the runbook's directory; "
            "a path built from a template stays inside it unless written absolute",
            where,
        )


def check_source(path: str, src: str, where: Position | None) -> None:
    """The src must exist, now, as a regular file (SPEC §5). Raises ``InputError``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(
            f"src {src!r} does not exist ({path}); it is relative to the runbook", where
        ) from None
    except OSError as exc:
        raise InputError(f"src {src!r}: cannot read {path}: {exc.strerror}", where) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(
            f"src {src!r} is a directory; copy writes one file (one copy step per file, "
            "or an archive)",
            where,
        )
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"src {src!r} is not a regular file", where)


def _at(step: Step, key: str) -> Position | None:
    return step.field_positions.get(key) or step.field_positions.get(key.split(".")[0])
