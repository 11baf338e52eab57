"""What the operator sees while a run goes: off a terminal (logs, CI, benchmarks) a line
per step and per failure (every result with ``-v``), on a terminal a live status line per
running step, and with ``--output json`` one event per line. ``NO_COLOR`` is honoured.

Every console writes through an ``Outbox``: ``handle`` (called under the runner's emit
lock) only turns an event into lines and queues them; the outbox's thread writes them.
A stalled terminal or pipe therefore never pauses the run: past a bounded backlog the
oldest lines are dropped and the console says how many where they were.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from runbook.cli.outbox import Outbox
from runbook.model.command import CommandResult, Status, StepStatus, counts_text, status_counts
from runbook.model.events import (
    BatchStarted,
    CommandFinished,
    CommandOutput,
    CommandStarted,
    ConsoleDropped,
    Event,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from runbook.plan.text import compact, counted
from runbook.text import printable, printable_json

FAILED_OUTPUT_LINES = 40
FAILED_OUTPUT_CHARS = 8192


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


def _warn(exc: Exception) -> None:
    """What a console whose writes failed says (on stderr, which may work still)."""
    message = f"runbook: the console stopped ({exc!r}); the run goes on, the journal has it all"
    with contextlib.suppress(OSError, ValueError):
        print(printable(message, multiline=False), file=sys.stderr)


class Console:
    """Base of what shows a run on stdout: a listener that can be paused for a prompt, and
    detached when its terminal goes away (SIGHUP). Observers never steer: ``handle``
    never waits for the terminal (see ``Outbox``), and a console whose writes fail stops
    writing while the run goes on. ``close`` writes what is still queued: the run's last
    lines come before the recap."""

    detached = False
    outbox: Outbox

    def __init__(self, on_error: Callable[[Exception], None] = _warn) -> None:
        self._on_error = on_error
        self.outbox = Outbox(self._emit, self._dropped, self._failed)

    def detach(self) -> None:
        """Safe from a signal handler: only sets a flag."""
        self.detached = True

    def handle(self, event: Event) -> None:
        raise NotImplementedError

    def _emit(self, lines: Sequence[str]) -> None:
        """Write ``lines`` to the terminal: on the outbox's thread only."""
        raise NotImplementedError

    def _dropped(self, count: int) -> Sequence[str]:
        """What to write where ``count`` lines (or events) were dropped."""
        raise NotImplementedError

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """While the operator is asked something, nothing else may draw."""
        with self.outbox.held():
            yield

    def close(self) -> None:
        """Once the run is over: wait until everything queued is written."""
        try:
            self.outbox.close()
        except KeyboardInterrupt:  # the operator gave up on the rest of the output
            detach_stdout()

    def _failed(self, exc: Exception) -> None:
        """A write failed (on the outbox's thread): nothing more is written; a closed
        pipe (``| head``) is no news, anything else is said on stderr."""
        if isinstance(exc, OSError):
            detach_stdout()
        if not isinstance(exc, BrokenPipeError):
            self._on_error(exc)


class JsonLines(Console):
    """``--output json``: one event per line on stdout (schemas/events.schema.json); where
    events were dropped, a ``console_dropped`` event says how many."""

    run_id = ""

    def __init__(self, on_error: Callable[[Exception], None] = _warn) -> None:
        self.out = sys.stdout
        super().__init__(on_error)

    def handle(self, event: Event) -> None:
        if self.detached:
            return
        if isinstance(event, RunStarted):
            self.run_id = event.run_id
        self.outbox.put([_json(event)])

    def _emit(self, lines: Sequence[str]) -> None:
        if self.detached:
            return
        self.out.write("".join(ln + "\n" for ln in lines))
        self.out.flush()

    def _dropped(self, count: int) -> Sequence[str]:
        return [_json(ConsoleDropped(run_id=self.run_id, dropped=count))]


def _shown(lines: Sequence[str]) -> str:
    """``lines`` as written: each escaped as one line (``printable``), each ended. When
    no line holds a newline of its own, all in one pass (the fast path of ``-v``)."""
    text = "\n".join(lines)
    if text.count("\n") == len(lines) - 1:
        return printable(text) + "\n"
    return "".join(printable(ln, multiline=False) + "\n" for ln in lines)


def _json(event: Event) -> str:
    return printable_json(json.dumps(event.to_dict(), ensure_ascii=False))


class PlainConsole(Console):
    """A line per step and per failure (ok results fold into the step's summary), failed
    commands' output for the first few failures of a step; with ``verbose``, every
    result and output streamed as ``host | line`` while commands run."""

    FAILURES_WITH_OUTPUT = 5  # per step; the journal has the rest

    def __init__(
        self,
        out: IO[str] | None = None,
        verbose: bool = False,
        on_error: Callable[[Exception], None] = _warn,
    ) -> None:
        self.out = out or sys.stdout
        self.verbose = verbose
        self.total_steps = 0
        self.run_id = ""
        self._index: dict[str, int] = {}
        self._started = False  # between step_started and step_finished
        self._shown_failures = 0
        self._hidden_failures = 0
        self._streamed: set[tuple[str, str]] = set()  # its output was shown as it came
        super().__init__(on_error)

    def write(self, *lines: str) -> None:
        """Queue ``lines``, written together (see ``Outbox``)."""
        if not self.detached:
            self.outbox.put(lines)

    def _emit(self, lines: Sequence[str]) -> None:
        if self.detached:
            return
        self.out.write(_shown(lines))
        self.out.flush()

    def _dropped(self, count: int) -> Sequence[str]:
        show = f"; runbook show {self.run_id} has them" if self.run_id else ""
        return [f"... ({counted(count, 'line')} not shown: stdout was not read in time{show})"]

    def handle(self, e: Event) -> None:
        if isinstance(e, RunStarted):
            self._run_started(e)
        elif isinstance(e, StepStarted):
            self._step_started(e)
        elif isinstance(e, BatchStarted):
            self.write(f"  batch {e.batch}: {compact(e.hosts)}")
        elif isinstance(e, CommandOutput) and self.verbose:
            self._streamed.add((e.step, e.host))
            self.write(*(f"    {e.host} | {ln}" for ln in e.data.rstrip("\n").split("\n")))
        elif isinstance(e, CommandFinished):
            self._result(e.result)
        elif isinstance(e, StepFinished):
            self._step_finished(e)

    def _run_started(self, e: RunStarted) -> None:
        self.total_steps = len(e.steps)
        self.run_id = e.run_id
        self._index = {n: i for i, n in enumerate(e.steps, 1)}
        self.write(
            f"run {e.run_id}: {e.runbook} ({counted(e.step_count or len(e.steps), 'step')}, "
            f"{counted(e.hosts, 'host')}, {counted(e.commands, 'command')}, forks {e.forks})"
        )

    def _step_started(self, e: StepStarted) -> None:
        self._started = True
        self._shown_failures = self._hidden_failures = 0
        hosts = counted(len(e.hosts), "host")
        if e.group is not None:
            self.write(f"  - {e.step} ({hosts})")
        elif e.is_group:
            self.write(
                f"[{self._label(e.step)}] {e.step} (group: {hosts}, {counted(e.batches, 'batch')})"
            )
        else:
            self.write(f"[{self._label(e.step)}] {e.step} ({hosts})")

    def _label(self, name: str) -> str:
        return f"{self._index.get(name, '?')}/{self.total_steps}"

    def _step_finished(self, e: StepFinished) -> None:
        if e.status is StepStatus.CANCELLED and not self._started:
            if e.group is None:
                self.write(f"[{self._label(e.step)}] {e.step}: not run (halted)")
            return
        counts = counts_text(e.counts)
        self._started = e.group is not None  # the group itself goes on
        lead = "    =>" if e.group is not None else "  =>"
        if self._hidden_failures:
            self.write(
                f"{lead} output of {counted(self._hidden_failures, 'more failure')}: "
                f"runbook show {self.run_id} --step {e.step!r}"
            )
        self.write(f"{lead} {e.status.value}: {counts or 'nothing to do'} ({e.duration:.2f}s)")

    def _result(self, r: CommandResult) -> None:
        status = r.status
        quiet = status in (Status.OK, Status.SKIPPED, Status.CANCELLED)
        if quiet and not self.verbose:
            return
        detail = f"rc={r.rc}" if r.rc is not None else ""
        if r.attempts > 1:
            detail += f" attempts={r.attempts}"
        if r.changed is not None and status is Status.OK:  # a copy or fetch
            detail += " changed" if r.changed else " unchanged"
        if r.error and (status is not Status.OK or not r.attempts):
            detail += f" ({r.error})"
        if r.dropped:
            detail += f" ({sum(r.dropped.values())} bytes of output dropped past the cap)"
        label = status.value if status is Status.OK else status.value.upper()
        lines = [f"  {label:<11} {r.where}  {detail.strip()}  {r.duration:.2f}s"]
        if status.is_failure and not self.verbose:
            if self._shown_failures >= self.FAILURES_WITH_OUTPUT:
                self._hidden_failures += 1
                self.write(*lines)
                return
            self._shown_failures += 1
        if (r.step, r.host) in self._streamed:
            self._streamed.discard((r.step, r.host))
        elif self.verbose or status.is_failure:
            for name, text in (("stdout", r.stdout), ("stderr", r.stderr)):
                if text.strip():
                    lines.append(f"    {name}:")
                    lines += _indent(text)
        self.write(*lines)


class LiveConsole(PlainConsole):
    """On a terminal: a live status line per running step, failures printed above it.

    The status line is drawn by rich's own thread from state ``handle`` keeps under
    ``_lock``; it is started and stopped on the outbox's thread (or, for a prompt, with
    the outbox held), never in ``handle``."""

    def __init__(
        self, verbose: bool = False, on_error: Callable[[Exception], None] = _warn
    ) -> None:
        from rich.console import Console
        from rich.live import Live

        self._lock = threading.Lock()
        self._step: dict[str, Any] | None = None
        self._counts: Counter[Status] = Counter()
        self._running = 0
        self._want_live = False  # a step is running: the status line should show
        self.console = Console(highlight=False)
        self.live = Live(
            console=self.console, refresh_per_second=8, transient=True, get_renderable=self._render
        )
        super().__init__(sys.stdout, verbose, on_error)

    def _emit(self, lines: Sequence[str]) -> None:
        if self.detached:
            self._stop_live()
            return
        if self._want_live and not self.live.is_started:
            self.live.start()
        for ln in lines:
            self.console.print(printable(ln, multiline=False), markup=False, highlight=False)

    def _stop_live(self) -> None:
        if self.live.is_started:
            with contextlib.suppress(OSError):
                self.live.stop()

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        with self.outbox.held():
            was_live = self.live.is_started
            if was_live:
                self.live.stop()
            try:
                yield
            finally:
                if was_live:
                    self.live.start()

    def close(self) -> None:
        super().close()
        self._stop_live()

    def _render(self) -> Any:
        from rich.text import Text

        with self._lock:
            s = self._step
            if s is None:
                return Text("")
            done = sum(self._counts.values())
            parts = counts_text(status_counts(self._counts.elements()))
            running = self._running
        elapsed = time.monotonic() - s["t0"]
        name = printable(s["name"], multiline=False)
        return Text(
            f"  {name}: {done}/{s['total']} hosts done, {running} running"
            f"{' · ' + parts if parts else ''} · {elapsed:.1f}s",
            style="bold",
        )

    def handle(self, e: Event) -> None:
        with self._lock:
            if isinstance(e, StepStarted):
                self._step = {"name": e.step, "total": len(e.hosts), "t0": time.monotonic()}
                self._counts.clear()
                self._running = 0
                self._want_live = True
            elif isinstance(e, CommandStarted):
                self._running += 1
                return
            elif isinstance(e, CommandFinished) and self._step is not None:
                status = e.result.status
                self._counts[status] += 1
                if status is not Status.CANCELLED:
                    self._running = max(0, self._running - 1)
                if status is Status.OK and not self.verbose:
                    return
            elif isinstance(e, StepFinished):
                self._step = None
            elif isinstance(e, RunFinished):
                self._want_live = False
            super().handle(e)


def detach_stdout() -> None:
    """Point stdout at /dev/null after its reader went away (``| head``), so nothing later
    (interpreter shutdown's flush included) fails on it again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
