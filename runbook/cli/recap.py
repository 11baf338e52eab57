"""The recap at the end of a run: hosts where nothing went wrong fold into one line;
every other host gets its counts per status; then what never ran and where the journal is.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import IO

from runbook.model.approval import Approvals
from runbook.model.command import Status, counts_text, status_counts
from runbook.plan.text import compact, counted
from runbook.run.runner import RunResult
from runbook.text import printable

# A host is "fine" when none of its results is one of these: it folds into one line (a
# rescued host is listed: something failed on it, and its rescue steps ran).
_NOT_FINE = frozenset(s for s in Status if s.is_failure) | {Status.CANCELLED, Status.RESCUED}


@dataclass(frozen=True)
class _Recap:
    title: str
    fine: list[str]  # hosts with nothing failed or cancelled, in run order
    fine_counts: dict[str, int]
    others: dict[str, dict[str, int]]  # host → counts, the rest
    changed: list[str]
    footer: list[str]


def _recap(result: RunResult, journal: str | None) -> _Recap:
    per_host: dict[str, list[Status]] = {}
    changed: set[str] = set()
    for r in result.results:
        per_host.setdefault(r.host, []).append(r.status)
        if r.changed:
            changed.add(r.host)
    hosts = sorted(per_host, key=natural)
    fine = [h for h in hosts if not _NOT_FINE.intersection(per_host[h])]
    fine_counts = status_counts(s for h in fine for s in per_host[h])
    others = {h: status_counts(per_host[h]) for h in hosts if h not in fine}
    title = f"RECAP · run {result.run_id} · {result.status.value}"
    changed_hosts = sorted(changed, key=natural)  # as every other list here: not run order
    return _Recap(title, fine, fine_counts, others, changed_hosts, _footer(result, journal))


def natural(name: str) -> list[object]:
    """``web2`` before ``web10``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _fold_line(r: _Recap) -> str | None:
    if not r.fine:
        return None
    counts = counts_text(r.fine_counts)
    return f"{counted(len(r.fine), 'host')} without a failure: {compact(r.fine)} ({counts})"


def _footer(result: RunResult, journal: str | None) -> list[str]:
    lines = []
    if result.steps_not_run:
        lines.append("steps not run (halted): " + ", ".join(result.steps_not_run))
    if result.halted:
        lines.append(f"halted: {result.halted}")
    total = result.finished - result.started
    lines.append(f"total time: {total:.2f}s · exit code {result.exit_code}")
    if journal:
        lines.append(f"journal: {journal}")
    return lines


def recap(
    result: RunResult,
    journal: str | None,
    out: IO[str] | None = None,
    approvals: Approvals | None = None,
) -> None:
    """The recap on ``out`` (stdout): a table on a terminal, plain text otherwise;
    ``approvals``: who approved the saved plan that ran."""
    stream = out or sys.stdout
    r = _recap(result, journal)
    if approvals is not None:
        r.footer.insert(0, approvals.summary())
    if not stream.isatty():
        stream.write(recap_text(r))
        stream.flush()
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, highlight=False, width=120)
    console.print(_shown(r.title), markup=False)
    fold = _fold_line(r)
    if fold:
        console.print(_shown(fold), markup=False, style="green")
    if r.changed:
        console.print(_shown(f"changed: {compact(r.changed)}"), markup=False)
    if r.others:
        from rich.text import Text

        table = Table()
        table.add_column("host")
        for s in _columns(r):
            table.add_column(s.value, justify="right")
        for host, c in r.others.items():
            table.add_row(Text(_shown(host)), *[_cell(c[s.value], s) for s in _columns(r)])
        console.print(table)
    for line in r.footer:
        console.print(_shown(line), markup=False)


def _shown(line: str) -> str:
    """Host and step names and the halt reason come from the runbook, its inventory and
    the hosts: shown escaped, as on every surface."""
    return printable(line, multiline=False)


def _columns(r: _Recap) -> list[Status]:
    """Every status, but ``rescued`` only in a run that rescued a host."""
    rescued = any(c.get(Status.RESCUED.value) for c in r.others.values())
    return [s for s in Status if s is not Status.RESCUED or rescued]


def _cell(n: int, status: Status) -> str:
    if not n:
        return "."
    if status.is_failure:
        return f"[red]{n}[/red]"
    return f"[green]{n}[/green]" if status is Status.OK else str(n)


def recap_text(r: _Recap) -> str:
    """The recap for logs, CI and files: the table drawn with ``|``, no rich (rich lays a
    ``Table`` out in O(hosts) Python work, 1.1 s for 1,000 hosts; this is padding)."""
    names = [s.value for s in _columns(r)]
    width = max([4, *(len(_shown(h)) for h in r.others)])

    def row(first: str, cells: list[str]) -> str:
        return (
            "| "
            + _shown(first).ljust(width)
            + "".join(f" | {c:>{len(n)}}" for c, n in zip(cells, names, strict=True))
            + " |"
        )

    lines = [r.title]
    fold = _fold_line(r)
    if fold:
        lines.append(fold)
    if r.changed:
        lines.append(f"changed: {compact(r.changed)}")
    if r.others:
        lines.append(row("host", names))
        lines += [row(h, [str(c[n] or ".") for n in names]) for h, c in r.others.items()]
    lines += r.footer
    return "\n".join(map(_shown, lines)) + "\n"
