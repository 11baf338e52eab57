"""The console's outbox: ``put`` never waits for the terminal; past the backlog the oldest
lines go, and the note says how many where they were."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from runbook.cli.outbox import LINE_COST, Outbox


class Terminal:
    """A terminal whose first write blocks until ``gate`` opens (a pipe nobody reads)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.blocked = threading.Event()  # the writer is inside its first write
        self.resumed = threading.Event()  # ... and came out of it
        self.lines: list[str] = []

    def write(self, lines: Sequence[str]) -> None:
        if not self.blocked.is_set():
            self.blocked.set()
            self.gate.wait(30)
            self.resumed.set()
        self.lines.extend(lines)


def note(count: int) -> list[str]:
    return [f"[{count} dropped]"]


def test_put_never_waits_for_a_stalled_terminal_and_the_note_marks_the_gap() -> None:
    term = Terminal()
    box = Outbox(term.write, note, backlog=10 * (LINE_COST + 8))  # ten lines of 8
    box.put(["first"])
    assert term.blocked.wait(10)
    for i in range(1000):
        box.put([f"line {i:03d}"])
    # A thousand puts returned while the writer was still stuck in its first write.
    assert not term.resumed.is_set()
    assert box.dropped == 990
    term.gate.set()
    box.close()
    assert term.lines == ["first", "[990 dropped]", *(f"line {i:03d}" for i in range(990, 1000))]


def test_a_batch_goes_whole_and_nothing_is_dropped_below_the_backlog() -> None:
    term = Terminal()
    term.gate.set()
    box = Outbox(term.write, note)
    batches = [[f"{i}.{j}" for j in range(3)] for i in range(100)]
    for b in batches:
        box.put(b)
    box.close()
    assert term.lines == [ln for b in batches for ln in b] and box.dropped == 0


def test_held_waits_for_what_is_queued_and_holds_what_comes_after() -> None:
    term = Terminal()
    term.gate.set()
    box = Outbox(term.write, note)
    box.put(["before"])
    with box.held():
        assert term.lines == ["before"]  # written before the prompt
        box.put(["during"])
        term.lines.append("prompt")
    box.close()
    assert term.lines == ["before", "prompt", "during"]


def test_a_failed_write_stops_the_outbox_and_is_reported_once() -> None:
    errors: list[Exception] = []
    writes: list[Sequence[str]] = []

    def eio(lines: Sequence[str]) -> None:
        writes.append(lines)
        raise OSError(5, "Input/output error")

    box = Outbox(eio, note, errors.append)
    box.put(["a"])
    box.put(["b"])
    box.close()
    box.put(["after"])  # ignored, never raises
    assert box.stopped and [type(e) for e in errors] == [OSError] and len(writes) == 1
