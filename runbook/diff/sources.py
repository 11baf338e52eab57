"""The two sides of ``runbook diff`` (SPEC §9): each a runbook planned now or a saved
plan, or — with ``--git REV`` — a runbook as it is at a git revision against the working
copy.

A revision's runbook is planned in a temporary copy of that revision's whole tree
(``git archive``), so its includes, inventories and files are the revision's too; errors
on that side name ``REV:path/in/repo.yml:LINE:COL``. Both sides are planned with the same
options. Secrets are not read: a plan holds only their stand-ins, so the diff is the
same whatever their values, and a CI job needs no production secret to post it; vaulted
values are not decrypted either (a wholly encrypted file needs its password to be read).

Reviewing a change must execute nothing from it: the revision's inventory scripts and
``lookup('pipe', ...)`` commands are refused (exit 2, naming them) unless the reviewer
says ``--trust-revision``.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from runbook.diff.compare import PlanDiff, diff_plans
from runbook.errors import InputError, UsageError
from runbook.model.plan import Plan
from runbook.options import PlanOptions


@dataclass(frozen=True)
class Side:
    """One side as given: a file, and how the diff names it."""

    path: str
    label: str
    root: str = ""  # a revision's temp copy: what errors must not show
    untrusted: str | None = None  # why nothing of this side may be executed


def diff_sides(
    opts: PlanOptions, new: str | None, git: str | None, trust_revision: bool = False
) -> PlanDiff:
    """``runbook diff OLD NEW`` (``opts.file`` is OLD) or ``runbook diff --git REV FILE``
    (``opts.file`` is FILE). Raises ``InputError`` for either side, both when both fail."""
    if git is not None:
        if new is not None:
            raise UsageError("with --git REV, give one FILE: it is compared with itself at REV")
        with git_tree(git, opts.file) as old:
            if not trust_revision:
                why = (
                    f"runbook diff --git plans revision {git} without executing anything "
                    "from it; pass --trust-revision if you trust it"
                )
                old = replace(old, untrusted=why)
            return _diff(opts, old, Side(opts.file, opts.file), _relabel_for(git, old))
    if new is None:
        raise UsageError("give two files, OLD and NEW (or --git REV FILE)")
    return _diff(opts, Side(opts.file, opts.file), Side(new, new), lambda e: e)


def _diff(
    opts: PlanOptions, old: Side, new: Side, relabel: Callable[[InputError], InputError]
) -> PlanDiff:
    plans: list[Plan] = []
    errors: list[InputError] = []
    for side, fix in ((old, relabel), (new, lambda e: e)):
        try:
            side_opts = replace(opts, file=side.path)
            plans.append(side_plan(side_opts, side.label, side.untrusted, side.root))
        except InputError as exc:
            errors += [fix(e) for e in (exc, *exc.others)]
    if errors:
        first, *rest = errors
        first.others = rest
        raise first
    return diff_plans(plans[0], plans[1])


def side_plan(opts: PlanOptions, label: str, untrusted: str | None = None, root: str = "") -> Plan:
    """``opts.file`` planned (a runbook) or read (a saved plan, narrowed by the selection
    options as ``apply`` narrows it), its source named ``label``; ``untrusted``: why its
    inventory scripts and pipe lookups may not run, and its file lookups stay in ``root``."""
    from runbook.plan.narrow import narrow
    from runbook.plan.saved import plan_from_dict, read_saved_plan

    saved = read_saved_plan(opts.file)
    if saved is not None:
        plan = narrow(plan_from_dict(saved, opts.file), opts, f"saved plan {label}")
    else:
        plan = plan_runbook(opts, untrusted, root)
    return replace(plan, source=label)


def plan_runbook(opts: PlanOptions, untrusted: str | None = None, root: str = "") -> Plan:
    """As ``prepare_plan`` plans, with secrets and vaulted values as their stand-ins
    (their values change nothing in a plan) and no check of the controller's shells
    (nothing runs here)."""
    from runbook.load.secrets import lookups_for
    from runbook.load.vault import read_keyring
    from runbook.plan.planner import make_plan
    from runbook.prepare import plan_inputs
    from runbook.templating.lookups import planning
    from runbook.text import STAND_IN

    keyring = read_keyring(opts.vault_ids)
    keyring.blind = True
    rb, inventory, extra = plan_inputs(opts, keyring, untrusted)
    stand_ins = {s.name: STAND_IN for s in rb.secrets}
    sources = {s.name: {"env": s.env or "", "file": s.file or "", "pipe": s.pipe or ""}
               for s in rb.secrets}  # fmt: skip
    lookups = lookups_for(sources)
    lookups.pipe_refused = untrusted
    if untrusted is not None:
        lookups.confined_to = root or os.path.dirname(os.path.abspath(opts.file))
    with planning(lookups):
        return make_plan(rb, inventory, extra, stand_ins, opts.selection, keyring)


# -- git ----------------------------------------------------------------------------------


@contextmanager
def git_tree(rev: str, file: str) -> Iterator[Side]:
    """``file`` as it is at ``rev``: its path in a temporary copy of that revision's tree
    (removed afterwards), labelled ``REV:path/in/repo``."""
    here = os.path.dirname(os.path.abspath(file))
    top = _git(["rev-parse", "--show-toplevel"], here, f"{file}: not in a git repository")
    rel = os.path.relpath(os.path.realpath(file), os.path.realpath(top))
    if rel.startswith(os.pardir + os.sep):
        raise UsageError(f"{file} is outside the git repository at {top}")
    commit = _git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        top,
        f"--git {rev}: not a revision of the repository at {top}",
    )
    label = f"{rev}:{rel}"
    with tempfile.TemporaryDirectory(prefix="runbook-diff-") as tmp:
        root = os.path.realpath(tmp) + os.sep
        _extract(commit, top, root, rev)
        # Not there at REV: planning it says so, as ``REV:path: cannot read``.
        yield Side(os.path.join(root, rel), label, root)


def _git(args: list[str], cwd: str, error: str) -> str:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        raise UsageError(f"--git needs git: {exc.strerror}") from None
    if proc.returncode != 0:
        raise UsageError(error)
    return proc.stdout.strip()


def _extract(commit: str, top: str, dest: str, rev: str) -> None:
    """``git archive COMMIT`` streamed into ``dest``; tarfile's ``data`` filter refuses
    members that would land outside it."""
    with subprocess.Popen(
        ["git", "archive", "--format=tar", commit],
        cwd=top,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                tar.extractall(dest, filter="data")
        except (tarfile.TarError, OSError) as exc:
            proc.kill()
            raise UsageError(f"--git {rev}: cannot extract its tree: {exc}") from None
        stderr = proc.stderr.read().decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        raise UsageError(f"--git {rev}: git archive failed: {stderr}")


def _relabel_for(rev: str, side: Side) -> Callable[[InputError], InputError]:
    """Errors on the revision's side name ``REV:path/in/repo``, not the temp copy."""
    root = side.root

    def fix(exc: InputError) -> InputError:
        pos = exc.position
        if pos is not None and pos.file.startswith(root):
            exc.position = replace(pos, file=f"{rev}:{pos.file[len(root) :]}")
        exc.message = exc.message.replace(root, f"{rev}:")
        exc.args = (exc.message,)
        return exc

    return fix
