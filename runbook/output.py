"""What the operator sees: the plan as text, run progress, and the recap.

Plain line-per-result output when stdout is not a terminal (logs, CI, benchmarks); a live
per-step status line on a terminal. ``NO_COLOR`` is honoured by rich.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import IO, Any

from runbook import events as ev
from runbook.command import Status
from runbook.events import Event
from runbook.planner import Plan

FAILED_OUTPUT_LINES = 40
FAILED_OUTPUT_CHARS = 8192


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def plan_text(plan: Plan, mask: Callable[[str], str] = str) -> str:
    """The reviewable plan. Deterministic: same input, same bytes."""
    hosts = {c.host.name for c in plan.commands}
    lines = [
        f"Plan: {plan.name}",
        f"source: {plan.source} ({plan.digest[:19]})" if plan.digest else f"source: {plan.source}",
        f"{counted(len(plan.steps), 'step')}, {counted(len(hosts), 'host')}, "
        f"{counted(len(plan.commands), 'command')}",
    ]
    for i, step in enumerate(plan.steps, 1):
        cmds = step.commands
        lines.append("")
        head = f"[{i}] {step.name}"
        policy = f"on_failure: {step.on_failure}"
        if step.max_failures:
            policy += f", max_failures: {step.max_failures}"
        where = "controller (local)" if step.local else _hosts_label(step.hosts)
        lines.append(f"{head}    hosts: {where} ({len(cmds)})    {policy}")
        extras = []
        if cmds and cmds[0].timeout is not None:
            extras.append(f"timeout: {cmds[0].timeout:g}s")
        if step.serial is not None:
            extras.append(f"serial: {step.serial} → {len(step.batches)} batches")
        if cmds and cmds[0].retries:
            extras.append(f"retries: {cmds[0].retries} every {cmds[0].delay:g}s")
        if cmds and cmds[0].until:
            extras.append(f"until: {cmds[0].until}")
        if step.run_once:
            extras.append("run_once")
        if cmds and cmds[0].become:
            extras.append(f"become: {cmds[0].become_user or 'root'}")
        if step.tags:
            extras.append("tags: " + ", ".join(step.tags))
        if extras:
            lines.append("    " + "    ".join(extras))
        if step.confirm:
            lines.append(f"    confirm: {mask(step.confirm)}")
        # Env shared by every host is shown once; each host line shows only what differs.
        common = dict(set.intersection(*(set(c.env.items()) for c in cmds))) if cmds else {}
        if common:
            lines.append(
                "    env: " + _env({k: v for k, v in cmds[0].env.items() if k in common}, mask)
            )
        if not cmds:
            lines.append("    (no hosts)")
        width = max((len(c.host.name) for c in cmds), default=0)
        for b, batch in enumerate(step.batches, 1):
            indent = "    "
            if len(step.batches) > 1:
                lines.append(f"    batch {b}/{len(step.batches)}")
                indent = "      "
            for c in batch:
                name = c.host.name.ljust(width)
                if c.skip_reason:
                    lines.append(f"{indent}{name}  (skipped: {c.skip_reason})")
                    continue
                cmd_lines = mask(c.cmd).rstrip("\n").split("\n")
                lines.append(f"{indent}{name}  $ {cmd_lines[0]}")
                lines += [f"{indent}{' ' * width}    {ln}" for ln in cmd_lines[1:]]
                own = {k: v for k, v in c.env.items() if k not in common}
                if own:
                    lines.append(f"{indent}{' ' * width}    env: {_env(own, mask)}")
    return "\n".join(lines) + "\n"


def _hosts_label(hosts: Any) -> str:
    return ", ".join(hosts) if isinstance(hosts, list) else str(hosts)


def _env(env: dict[str, str], mask: Callable[[str], str]) -> str:
    return " ".join(f"{k}={mask(shlex.quote(v))}" for k, v in env.items())


def _indent(text: str, prefix: str = "      ") -> list[str]:
    """The tail of a command's output for the console: the last 40 lines and at most
    8 KiB (one huge line must not flood a terminal); the journal keeps all of it."""
    text = text.rstrip("\n")
    total = text.count("\n") + 1
    tail = text[-FAILED_OUTPUT_CHARS:]
    lines = tail.split("\n")[-FAILED_OUTPUT_LINES:]
    dropped = total - len(lines)
    if dropped:
        lines.insert(0, f"... ({dropped} earlier lines cut; full output in the journal)")
    elif len(tail) < len(text):
        cut = len(text) - len(tail)
        lines.insert(0, f"... ({cut} earlier characters cut; full output in the journal)")
    return [prefix + ln for ln in lines]


class Console:
    """Base of what shows a run on stdout."""

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """While the operator is asked something, nothing else may draw."""
        yield


class JsonLines(Console):
    """``--output json``: one event per line on stdout (schemas/events.schema.json)."""

    def handle(self, event: Event) -> None:
        sys.stdout.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
        sys.stdout.flush()


class PlainConsole(Console):
    """One line per result; failed commands' output; a line per step."""

    def __init__(self, out: IO[str] | None = None, verbose: bool = False) -> None:
        self.out = out or sys.stdout
        self.verbose = verbose
        self.total_steps = 0
        self._index: dict[str, int] = {}
        self._started = False  # between step_started and step_finished

    def write(self, *lines: str) -> None:
        self.out.write("".join(ln + "\n" for ln in lines))
        self.out.flush()

    def handle(self, e: Event) -> None:
        d = e.data
        if e.kind == ev.RUN_STARTED:
            self.total_steps = len(d["steps"])
            self._index = {n: i for i, n in enumerate(d["steps"], 1)}
            self.write(
                f"run {d['run_id']}: {d['runbook']} ({len(d['steps'])} steps, "
                f"{counted(d['hosts'], 'host')}, {counted(d['commands'], 'command')}, "
                f"forks {d['forks']})"
            )
        elif e.kind == ev.STEP_STARTED:
            self._started = True
            self.write(
                f"[{self._index[d['step']]}/{self.total_steps}] {d['step']} "
                f"({counted(len(d['hosts']), 'host')})"
            )
        elif e.kind == ev.BATCH_STARTED:
            self.write(f"  batch {d['batch']}: {', '.join(d['hosts'])}")
        elif e.kind == ev.COMMAND_FINISHED:
            self._result(d)
        elif e.kind == ev.STEP_FINISHED and d["status"] == "cancelled" and not self._started:
            self.write(
                f"[{self._index[d['step']]}/{self.total_steps}] {d['step']}: not run (halted)"
            )
        elif e.kind == ev.STEP_FINISHED:
            counts = ", ".join(f"{n} {s}" for s, n in d["counts"].items() if n)
            self._started = False
            self.write(f"  => {d['status']}: {counts or 'nothing to do'} ({d['duration']:.2f}s)")

    def _result(self, d: dict[str, Any]) -> None:
        status = d["status"]
        if status == "cancelled" and not self.verbose:
            return
        detail = f"rc={d['rc']}" if d["rc"] is not None else ""
        if d["attempts"] > 1:
            detail += f" attempts={d['attempts']}"
        if d.get("error") and (status != "ok" or not d["attempts"]):
            detail += f" ({d['error']})"
        label = status if status == "ok" else status.upper()
        lines = [f"  {label:<11} {d['host']}  {detail.strip()}  {d['duration']:.2f}s"]
        if self.verbose or Status(status).is_failure:
            for name in ("stdout", "stderr"):
                if d[name].strip():
                    lines.append(f"    {name}:")
                    lines += _indent(d[name])
        self.write(*lines)


class LiveConsole(PlainConsole):
    """On a terminal: a live status line per running step, failures printed above it."""

    def __init__(self, verbose: bool = False) -> None:
        from rich.console import Console
        from rich.live import Live

        super().__init__(sys.stdout, verbose)
        self._lock = threading.Lock()
        self._step: dict[str, Any] | None = None
        self._counts: Counter[str] = Counter()
        self._running = 0
        self.console = Console(highlight=False)
        self.live = Live(
            console=self.console, refresh_per_second=8, transient=True, get_renderable=self._render
        )

    def write(self, *lines: str) -> None:
        for ln in lines:
            self.console.print(ln, markup=False, highlight=False)

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        with self._lock:
            was_live = self.live.is_started
            if was_live:
                self.live.stop()
        try:
            yield
        finally:
            if was_live:
                with self._lock:
                    self.live.start()

    def _render(self) -> Any:
        from rich.text import Text

        s = self._step
        if s is None:
            return Text("")
        done = sum(self._counts.values())
        parts = [f"{n} {k}" for k, n in sorted(self._counts.items()) if n]
        elapsed = time.monotonic() - s["t0"]
        return Text(
            f"  {s['name']}: {done}/{s['total']} hosts done, {self._running} running"
            f"{' · ' + ', '.join(parts) if parts else ''} · {elapsed:.1f}s",
            style="bold",
        )

    def handle(self, e: Event) -> None:
        d = e.data
        with self._lock:
            if e.kind == ev.STEP_STARTED:
                self._step = {"name": d["step"], "total": len(d["hosts"]), "t0": time.monotonic()}
                self._counts.clear()
                self._running = 0
                if not self.live.is_started:
                    self.live.start()
            elif e.kind == ev.COMMAND_STARTED:
                self._running += 1
                return
            elif e.kind == ev.COMMAND_FINISHED and self._step is not None:
                self._counts[d["status"]] += 1
                self._running = (
                    max(0, self._running - 1) if d["status"] != "cancelled" else self._running
                )
                if d["status"] == "ok" and not self.verbose:
                    return
            elif e.kind == ev.STEP_FINISHED:
                self._step = None
            elif e.kind == ev.RUN_FINISHED and self.live.is_started:
                self.live.stop()
        super().handle(e)


def recap(result: Any, journal: str | None, out: IO[str] | None = None) -> None:
    """Per-host counts per status, the steps that never ran, the run id, the journal path."""
    stream = out or sys.stdout
    if not stream.isatty():
        stream.write(recap_text(result, journal))
        stream.flush()
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out or sys.stdout, highlight=False, width=120)
    per_host = _per_host(result)
    table = Table(title=f"RECAP · run {result.run_id} · {result.status}", title_justify="left")
    table.add_column("host")
    for s in Status:
        table.add_column(s.value, justify="right")
    for host in sorted(per_host):
        c = per_host[host]
        table.add_row(host, *[_cell(c.get(s.value, 0), s) for s in Status])
    console.print(table)
    for line in _recap_footer(result, journal):
        console.print(line, markup=False)


def _recap_footer(result: Any, journal: str | None) -> list[str]:
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


def _cell(n: int, status: Status) -> str:
    if not n:
        return "."
    if status.is_failure:
        return f"[red]{n}[/red]"
    return f"[green]{n}[/green]" if status is Status.OK else str(n)


def _per_host(result: Any) -> dict[str, Counter[str]]:
    per_host: dict[str, Counter[str]] = {}
    for r in result.results:
        per_host.setdefault(r.host, Counter())[r.status.value] += 1
    return per_host


def recap_text(result: Any, journal: str | None) -> str:
    """The recap for logs, CI and files: the same table drawn with ``|``, no rich.

    rich lays out a ``Table`` in O(hosts) Python work (1.1 s for 1,000 hosts) and costs
    ~130 ms to import; this is string padding.
    """
    per_host = _per_host(result)
    names = [s.value for s in Status]
    width = max([4, *map(len, per_host)])

    def row(first: str, cells: list[str]) -> str:
        return (
            "| "
            + first.ljust(width)
            + "".join(f" | {c:>{len(n)}}" for c, n in zip(cells, names, strict=True))
            + " |"
        )

    lines = [f"RECAP · run {result.run_id} · {result.status}", row("host", names)]
    for host in sorted(per_host):
        c = per_host[host]
        lines.append(row(host, [str(c.get(n, 0) or ".") for n in names]))
    lines += _recap_footer(result, journal)
    return "\n".join(lines) + "\n"
