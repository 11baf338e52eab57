"""From what the operator asked for to a plan ready to run, with its secrets.

Three sources give a plan: a runbook (loaded, inventoried and planned now), a saved plan
(``plan --out``) and a journaled run (``--resume``). Everything that can be wrong with
them is found here, before the first command starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runbook.errors import InputError, Position, UsageError
from runbook.load.secrets import Secrets, lookups_for
from runbook.load.vault import Keyring, read_keyring
from runbook.model.plan import Plan
from runbook.model.runbook import Runbook
from runbook.options import ApplyOptions, PlanOptions

if TYPE_CHECKING:
    # Imported where they are used: `validate` and `plan` never load the runner, the
    # journal or the approvals (start-up, issue 27).
    from runbook.inventory.build import Inventory
    from runbook.journal.store import RunRecord
    from runbook.model.approval import Approvals
    from runbook.run.launch import PreparedRun


@dataclass(frozen=True)
class Prepared:
    """A runbook planned now (``validate``, ``plan``, ``apply FILE``)."""

    runbook: Runbook
    plan: Plan
    secrets: Secrets


def prepare_plan(opts: PlanOptions) -> Prepared:
    """Load, validate, build the inventory, read secrets, plan. Raises ``InputError``."""
    from runbook.plan.planner import make_plan
    from runbook.templating.lookups import planning

    keyring = read_keyring(opts.vault_ids)
    rb, inventory, extra = plan_inputs(opts, keyring)
    secrets = Secrets.read(rb.secrets)
    with planning(lookups_for(secrets.sources)):
        plan = make_plan(rb, inventory, extra, secrets.values, opts.selection, keyring)
    secrets = secrets.with_vault(keyring)
    # validate and plan read the secrets too: a template that fails on a real value is
    # their exit 2 as well, not only apply's.
    _check_planned(plan, secrets)
    return Prepared(rb, plan, secrets)


def plan_inputs(
    opts: PlanOptions, keyring: Keyring | None = None, scripts: str | None = None
) -> tuple[Runbook, Inventory, dict[str, Any]]:
    """The runbook, its inventory and the extra vars (``-e``, ``--vars-file``, the API's
    typed variables): what a plan is made of, but its secrets. ``keyring`` opens files
    encrypted whole by ansible-vault (``!vault`` values are opened when read);
    ``scripts``, when given, is why inventory scripts may not run (``diff --git``)."""
    from runbook.inventory.build import build_inventory
    from runbook.load.loader import load_runbook

    rb = load_runbook(opts.file)
    extra = {**extra_vars(opts, keyring), **dict(opts.variables)}
    files = [*rb.inventory, *opts.inventories]
    inventory = build_inventory(rb.hosts, files, rb.positions, rb.path, keyring, scripts)
    return rb, inventory, extra


def check_local_shells(plan: Plan) -> None:
    """A shell that does not exist on the controller fails before anything runs, not in
    the middle of the run (remote shells can only be found out there)."""
    for step in plan.steps:
        shell = step.spec.shell
        if any(c.runs_on.is_local for c in step.commands) and not os.access(shell, os.X_OK):
            raise InputError(
                f"shell {shell} does not exist or is not executable on this machine",
                step.position,
                step=step.name,
            )


def prepare_run(opts: ApplyOptions) -> PreparedRun:
    """The plan ``apply`` runs: from a journaled run, a saved plan or the runbook. A saved
    or journaled plan is narrowed, never re-rendered (``narrow``)."""
    from runbook.plan.discover import stored_discovery
    from runbook.plan.narrow import narrow
    from runbook.plan.saved import read_saved_plan
    from runbook.review.approvals import read_plan
    from runbook.run.launch import PreparedRun

    file = opts.plan.file
    raw = read_plan(file) if opts.require_approvals else None
    # The signatures first: a plan changed after it was approved is refused for that,
    # whatever else is wrong with it (its digest no longer matches either).
    approvals = _approved(opts, raw)
    saved = read_saved_plan(file, raw)
    if approvals is not None and saved is None:
        raise _not_a_saved_plan(file)
    if opts.resume:
        prepared = _resumed(opts, saved, approvals)
    elif saved is not None:
        plan, secrets = _from_json(saved, file, read_keyring(opts.plan.vault_ids))
        prepared = PreparedRun(
            narrow(plan, opts.plan, f"saved plan {file}"),
            secrets,
            discovered=stored_discovery(saved),
            approvals=approvals,
        )
    else:
        done = prepare_plan(opts.plan)
        prepared = PreparedRun(done.plan, done.secrets)
    if opts.resume or saved is not None:  # made earlier: its copies' sources may have changed
        from runbook.run.transfer.content import check_sources

        check_saved_syntax(prepared.plan)
        check_sources(prepared.plan)
        check_before_run(prepared)  # prepare_plan checked a plan made now
    return prepared


def _approved(opts: ApplyOptions, raw: bytes | None) -> Approvals | None:
    """``--require-approvals N --allowed-signers F``: the approvals of the saved plan whose
    bytes are ``raw`` (raises ``InputError`` unless there are N)."""
    if opts.allowed_signers and not opts.require_approvals:
        raise UsageError("--allowed-signers goes with --require-approvals N")
    if raw is None:
        return None
    if not opts.allowed_signers:
        raise UsageError("--require-approvals needs --allowed-signers FILE (who may approve)")
    if not opts.plan.file.endswith(".json"):
        raise _not_a_saved_plan(opts.plan.file)
    from runbook.review.approvals import verified

    return verified(raw, opts.plan.file, opts.require_approvals, opts.allowed_signers)


def _not_a_saved_plan(file: str) -> UsageError:
    return UsageError(
        f"--require-approvals: {file} is not a saved plan; approvals are of saved plans "
        "(runbook plan --out PLAN.json, runbook approve PLAN.json)"
    )


def check_saved_syntax(plan: Plan) -> None:
    """A saved or journaled plan's templates and ``until`` parse (a hand-edited one may
    not): found before the first command, as planning from the runbook finds it."""
    from runbook.errors import TemplateError
    from runbook.templating.controlled import check_controlled_syntax
    from runbook.templating.env import check_syntax

    for step in plan.leaf_steps():
        for c in step.commands:
            t = c.templates
            try:
                if c.spec.until is not None:
                    check_syntax(c.spec.until, step.position, expression=True)
                if t is not None:
                    check_syntax(t.run, t.positions.get("run"))
                    if t.when is not None:
                        check_syntax(t.when, t.positions.get("when"), expression=True)
                    for _, value in (*t.env, *t.step_env):
                        check_syntax(value, t.positions.get("env"))
                    check_controlled_syntax(c.controlled, t.positions)
            except TemplateError as exc:
                exc.step, exc.host = step.name, c.host.name
                raise


def check_before_run(prepared: PreparedRun) -> None:
    """What can only be checked with the real values, before the first command: local
    shells exist; commands that read secrets render with the secrets' real values."""
    _check_planned(prepared.plan, prepared.secrets)


def _check_planned(plan: Plan, secrets: Secrets) -> None:
    check_local_shells(plan)
    if any(c.templates is not None and c.templates.secrets for c in plan.commands):
        from runbook.run.values import RunValues  # the run's renderer: only when needed

        RunValues(plan, secrets.values, secrets.masker, secrets.sources).check_secret_commands(plan)


def _resumed(
    opts: ApplyOptions, saved: dict[str, Any] | None, approvals: Approvals | None
) -> PreparedRun:
    """The journaled run's plan, narrowed, with what its family of runs (itself, what it
    resumed, and every resume of those: ``journal.resumes``) already did."""
    from runbook.journal.resumes import story
    from runbook.journal.store import read_run, runs_dir
    from runbook.plan.narrow import narrow
    from runbook.run.launch import PreparedRun
    from runbook.run.runner import Resume

    file, run_id = opts.plan.file, opts.resume
    assert run_id is not None
    source = file if saved is None else _saved_source(saved, file)
    root = runs_dir(source, opts.journal)
    run = read_run(root, run_id)
    started_with = (run.meta.get("approvals") or {}).get("sha256")
    if approvals is not None and started_with != approvals.sha256:
        raise InputError(
            f"run {run_id} was not started from this approved plan ({file}, "
            f"{approvals.sha256[:19]}): it cannot be resumed under --require-approvals"
        )
    if saved is None:
        _check_unchanged(file, run.meta, run_id, opts.force)
    told = story(root, run)
    _check_known_outcomes(told.unknown, opts.rerun_unknown)
    keyring = read_keyring(opts.plan.vault_ids)
    plan, secrets = _from_json(run.plan(), str(run.path / "plan.json"), keyring)
    narrowed = narrow(plan, opts.plan, f"run {run_id}")
    whole = plan if told.root is run else _first_plan(told.root)
    selected = {c.key for c in narrowed.commands}
    left_out = tuple(k for k in _keys(whole) if k not in told.finished and k not in selected)
    resume = Resume(
        run_id,
        told.done,
        told.registered,
        rescued=told.rescued,
        done_items=told.done_items,
        left_out=left_out,
    )
    return PreparedRun(narrowed, secrets, resume, approvals=approvals)


def _first_plan(run: RunRecord) -> Plan:
    """The first run's plan: the whole procedure its resumes narrowed."""
    from runbook.plan.saved import plan_from_dict

    return plan_from_dict(run.plan(), str(run.path / "plan.json"))


def _keys(plan: Plan) -> list[tuple[str, str]]:
    """(step, host) of every command the plan would run (not skipped at plan time)."""
    return [c.key for c in plan.commands if c.skip_reason is None]


def _saved_source(saved: dict[str, Any], plan_file: str) -> str:
    """A saved plan's runbook: its path is relative to the plan file."""
    return os.path.join(os.path.dirname(os.path.abspath(plan_file)), str(saved.get("source")))


def _check_unchanged(file: str, meta: dict[str, Any], run_id: str, force: bool) -> None:
    from runbook.load.loader import files_digest

    files = meta.get("files") or [file]
    try:
        digest = files_digest(files)
    except OSError as exc:
        digest = f"unreadable ({exc.strerror})"
    if digest != meta.get("digest") and not force:
        raise InputError(
            f"{file} (or a file it includes) changed since run {run_id} (digest "
            f"{str(meta.get('digest', '?'))[:19]} → {digest[:19]}); "
            "use --force to resume the journaled plan anyway"
        )


def _check_known_outcomes(unknown: tuple[tuple[str, str, str], ...], rerun: bool) -> None:
    """(step, host, run id) that started and has no result: refused unless ``rerun``."""
    if not unknown or rerun:
        return
    first, *rest = (
        InputError(
            f"step {step!r} on host {host!r} started in run {run_id} and has no result: "
            "its outcome is unknown (it may have run); check the host, then resume with "
            "--rerun-unknown to run it again"
        )
        for step, host, run_id in unknown
    )
    first.others = rest
    raise first


def _from_json(data: dict[str, Any], path: str, keyring: Keyring) -> tuple[Plan, Secrets]:
    """A plan from JSON, its secrets read again now (they are never stored; a vaulted
    value is stored encrypted, and opened again with the vault passwords given)."""
    from runbook.plan.saved import plan_from_dict

    plan = plan_from_dict(data, path)
    secrets = Secrets.from_sources(data.get("secret_sources", {}), keyring, path)
    for step in plan.leaf_steps():  # a hand-edited plan: a KeyError mid-run otherwise
        for command in step.commands:
            t = command.templates
            for name in t.secrets if t is not None else ():
                if name not in secrets.values:
                    raise InputError(
                        f"step {step.name!r} reads secret {name!r}, which the plan's "
                        "secret_sources do not define",
                        Position(path),
                    )
    return plan, secrets


def extra_vars(opts: PlanOptions, keyring: Keyring | None = None) -> dict[str, Any]:
    """``--vars-file`` files, then each ``-e`` (``KEY=VALUE`` or ``@FILE``) in order; a
    file may hold ``!vault`` values or be encrypted whole (``load.vault``)."""
    out: dict[str, Any] = {}
    for item in [f"@{f}" for f in opts.vars_files] + list(opts.extra_vars):
        if item.startswith("@"):
            data = vars_file(item[1:], keyring)
            if not isinstance(data, dict):
                raise UsageError("a vars file must be a YAML mapping", Position(item[1:], 1, 1))
            out.update(data)
            continue
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"-e {item!r}: expected KEY=VALUE with KEY a variable name")
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"-e {key}: the value is not valid UTF-8 text") from None
        out[key] = scalar(raw)
    return out


def vars_file(path: str, keyring: Keyring | None) -> Any:
    """A vars file's data; one encrypted whole by ansible-vault is decrypted, and every
    string in it is a secret (SPEC §13)."""
    from runbook.load.vault import is_encrypted, vault_all
    from runbook.load.yamlpos import MAX_BYTES, load_yaml, parse_yaml

    try:
        with open(path, "rb") as f:
            head = f.read(len("$ANSIBLE_VAULT;") + 64)
    except OSError:
        head = b""
    if not is_encrypted(head.decode("utf-8", "replace")):
        return load_yaml(path)[0]
    with open(path, "rb") as f:
        raw = f.read(MAX_BYTES * 3)
    keyring = keyring or Keyring()
    text = keyring.decrypt_file(raw.decode("utf-8", "replace"), path)
    data, _ = parse_yaml(text.encode(), path)
    return vault_all(data, path, keyring)


def scalar(raw: str) -> Any:
    """``-e`` value → int, float, bool or null when the text says so unambiguously, else the
    text as written: ``1.10`` stays "1.10", ``0755`` stays "0755", ``no`` stays "no"."""
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    for kind in (int, float):
        try:
            value = kind(raw)
        except ValueError:
            continue
        return value if str(value) == raw else raw
    return raw
