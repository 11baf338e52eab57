"""Journaled runs as text: ``runbook runs`` and ``runbook show``."""

from __future__ import annotations

from collections.abc import Iterable

from runbook.errors import UsageError
from runbook.journal.store import RunRecord
from runbook.model.command import CommandResult, Status, counts_text, status_counts


def runs_lines(runs: Iterable[RunRecord]) -> list[str]:
    lines = []
    for r in runs:
        f = r.finished
        counts = f.counts if f else status_counts(x.status for x in r.results())
        summary = counts_text(counts) or "-"
        resumed = f"  (resumes {r.meta['resumes']})" if r.meta.get("resumes") else ""
        if r.meta.get("kind") == "discovery":  # plan --check, or before apply PLAN.json
            resumed += f"  (discovery for {r.meta.get('for', '?')})"
        lines.append(
            f"{r.run_id}  {r.meta.get('started', '?')}  {r.status:<11}  "
            f"{r.meta.get('runbook', '?')}  {summary}{resumed}"
        )
    return lines


def result_lines(run: RunRecord, host: str | None, step: str | None) -> list[str]:
    """Every result of ``host`` and/or ``step`` (a unique prefix of a step's name will
    do), with its whole output."""
    step = _step_named(run, step) if step else None
    chosen = [
        r for r in run.results() if (not host or r.host == host) and (not step or r.step == step)
    ]
    if not chosen:
        raise UsageError(f"run {run.run_id} has no result for that host/step")
    lines = []
    for r in chosen:
        changed = "" if r.changed is None else f" changed={str(r.changed).lower()}"
        lines.append(
            f"== {r.step} @ {r.where}: {r.status.value} rc={r.rc} "
            f"attempts={r.attempts}{changed} {r.duration:.2f}s"
        )
        if r.dest is not None:
            kept = f"  backup: {r.backup or '-'}" if r.backup is not None else ""
            lines.append(f"dest: {r.dest}  sha256: {r.sha256 or '-'}{kept}")
        if r.error:
            lines.append(f"error: {r.error}")
        lines += ["--- stdout", *_text_lines(r.stdout), "--- stderr", *_text_lines(r.stderr)]
    return lines


def _step_named(run: RunRecord, wanted: str) -> str:
    names = list(dict.fromkeys(r.step for r in run.results()))
    if wanted in names:
        return wanted
    found = [n for n in names if n.startswith(wanted)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"run {run.run_id} has no step named {wanted!r} (steps: {names})")
    raise UsageError(f"--step {wanted!r} is ambiguous: {', '.join(found)}")


def _text_lines(text: str) -> list[str]:
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


def story_lines(run: RunRecord) -> list[str]:
    """A run's story: what it was, each step's counts, failures per host, how it ended."""
    meta = run.meta
    lines = [
        f"run {run.run_id}: {meta.get('runbook')} ({meta.get('source')})",
        f"started {meta.get('started')}, status {run.status}"
        + (f", resumes {meta['resumes']}" if meta.get("resumes") else ""),
    ]
    if meta.get("kind") == "discovery":
        lines.append(f"a discovery run (the discover steps alone) for {meta.get('for', '?')}")
    if meta.get("discovery_run"):
        lines.append(f"after discovery run {meta['discovery_run']}: the values matched the plan's")
    approvals = meta.get("approvals")
    if isinstance(approvals, dict):
        who = ", ".join(str(a.get("principal")) for a in approvals.get("approvers", ()))
        lines.append(
            f"plan {approvals.get('plan')} ({str(approvals.get('sha256'))[:19]}) approved by "
            f"{who} ({approvals.get('required')} required)"
        )
    steps: dict[str, list[CommandResult]] = {}
    for r in run.results():
        steps.setdefault(r.step, []).append(r)
    for name, rs in steps.items():
        summary = counts_text(status_counts(r.status for r in rs))
        lines.append(f"  {name}: {summary}")
        for r in rs:
            if r.status not in (Status.OK, Status.SKIPPED, Status.CANCELLED):
                lines.append(f"      {r.where}: {r.status.value} {r.error or ''}".rstrip())
    f = run.finished
    if f:
        if f.steps_not_run:
            lines.append("steps not run: " + ", ".join(f.steps_not_run))
        lines.append(f"finished: {f.status.value} in {f.duration:.2f}s, exit code {f.exit_code}")
    else:
        lines.append("the run did not finish (controller killed?); resume it with --resume")
    return lines
