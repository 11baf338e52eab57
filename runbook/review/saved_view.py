"""``runbook show PLAN.json``: a saved plan as a reviewer checks it before applying it —
the sha256 of its bytes, what its discover steps found (``plan --check --out``), who
approved it, then the plan itself (rendered with what was discovered). Reads no secret
and contacts no host: stored secret values are ``((secret:NAME))`` tokens here.
"""

from __future__ import annotations

import os

from runbook.errors import UsageError
from runbook.load.secrets import Secrets
from runbook.plan.discover import stored_discovery
from runbook.plan.saved import plan_from_dict, read_saved_plan
from runbook.plan.text import Note, plan_text
from runbook.review.approvals import bytes_digest, check_signatures, read_plan, signatures_file
from runbook.review.checked import checked_view, discovered_values


def saved_plan_lines(path: str, allowed: str | None) -> list[str]:
    """The lines of ``runbook show PLAN.json``; ``allowed``: an allowed_signers file that
    names the approvers (without it, signatures are only checked for validity)."""
    raw = read_plan(path)
    saved = read_saved_plan(path, raw)
    if saved is None:
        raise UsageError(f"{path} is not a saved plan (runbook plan --out PLAN.json makes one)")
    plan = plan_from_dict(saved, path)
    lines = [
        f"saved plan {path}: {plan.name}",
        f"runbook: {os.path.relpath(plan.source)}, planned {saved.get('created') or '?'}",
        f"bytes: {bytes_digest(raw)} (what approvals sign)",
    ]
    found = list(stored_discovery(saved))
    notes: dict[tuple[str, str], Note] = {}
    if found:
        run_id = saved.get("discovery", {}).get("run_id") or "?"
        lines.append(f"checked: discovery run {run_id}, {len(found)} discover steps' values")
        secrets = Secrets()  # no secret is read: stored values keep their tokens
        plan, notes = checked_view(plan, discovered_values(plan, secrets, found), found)
    lines += approval_lines(raw, path, allowed)
    return [*lines, "", *plan_text(plan, notes=notes).rstrip("\n").split("\n")]


def approval_lines(raw: bytes, path: str, allowed: str | None) -> list[str]:
    """Who signed the plan, one line per signature of ``PLAN.json.sig``."""
    signatures = check_signatures(raw, path, allowed)
    sig_file = signatures_file(path)
    if not signatures:
        return [f"approvals: none ({sig_file} has no signature)"]
    valid = {s.principal for s in signatures if s.principal is not None}
    if allowed is not None:
        head = f"approvals: {len(valid)} distinct principals of {allowed}"
    else:
        head = "approvals: signatures in " + sig_file + " (--allowed-signers FILE names them)"
    lines = [head]
    for s in signatures:
        who = s.principal or ("-" if allowed is not None else "?")
        state = "valid for this plan" if s.valid else "does NOT verify over this plan"
        problem = s.problem(allowed)
        if allowed is not None and problem is not None:
            state = problem
        lines.append(f"  {s.index}. {who}  {s.key}  {state}")
    return lines
