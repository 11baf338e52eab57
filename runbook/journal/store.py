"""The run journal: ``.runbook/runs/<run-id>/{meta.json,plan.json,events.jsonl}``.

Every event is appended and flushed as it arrives, so killing the controller (even with
SIGKILL) loses no finished result; a background thread fsyncs after each burst of writes
so results also survive a machine crash without making every command wait for the disk.

``load_run`` is the one reader, for ``--resume``, ``show``, ``runs`` and ``report``: a
torn last line (the controller killed mid-write) is dropped; any other line that is not
an event refuses the journal, naming file:line, because reading on past it (or stopping
there) would let ``--resume`` run again what already ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import secrets as _random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from runbook.errors import JournalError
from runbook.journal.safedir import check_dir, check_file, create_file, secure_tree
from runbook.model.command import CommandResult, Status
from runbook.model.events import (
    BatchStarted,
    CommandFinished,
    CommandOutput,
    CommandStarted,
    EssentialListener,
    Event,
    Registered,
    RunFinished,
    StepStarted,
)
from runbook.options import OUTPUT_CAP

RUNS_DIR = os.path.join(".runbook", "runs")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime()) + "-" + _random.token_hex(3)


def runs_dir(runbook_path: str | None, journal: str | None = None) -> Path:
    if journal:
        return Path(journal).absolute()
    base = Path(runbook_path).resolve().parent if runbook_path else Path.cwd()
    return base / RUNS_DIR


def trusted_root(root: Path, create: bool = False) -> Path:
    """``root`` after the StrictModes checks (``safedir``); ``create`` makes it (and the
    ``.runbook`` above the default root) 0700 when missing."""
    parents = 1 if root.name == "runs" and root.parent.name == ".runbook" else 0
    if create:
        secure_tree(root, parents)
    else:
        for d in [root, *list(root.parents)[:parents]]:
            check_dir(d)
    return root


class Journal(EssentialListener):
    """A listener that writes one run's journal. Open it before the first command runs:
    an unwritable directory or a full disk is reported then, not halfway through.

    ``handle`` only queues the event; a writer thread turns events into JSON lines and
    writes and flushes them as they come (batched when they come faster than a write),
    so the runner's emit path pays a queue put, not a JSON encoding and a system call.
    A killed controller loses at most the events of the last fraction of a millisecond;
    fsync is group-committed at most 10 times a second, so a machine crash loses at most
    0.1 s more. Before a step or a batch starts, ``handle`` waits until everything before
    it is written: a journal that failed (a full disk) halts the run before anything new
    starts, not a step later.
    """

    essential: ClassVar[Literal[True]] = True  # the runner halts if this fails
    SYNC_EVERY = 0.1  # seconds between fsyncs
    BARRIER_WAIT = 30.0  # seconds a step start waits for the writer (a hung disk)

    def __init__(self, root: Path, run_id: str, meta: dict[str, Any], plan: dict[str, Any]) -> None:
        self.path = trusted_root(root, create=True) / run_id
        try:
            self.path.mkdir(mode=0o700)
            _write_json(self.path / "meta.json", {"run_id": run_id, **meta})
            _write_json(self.path / "plan.json", plan)
            self._f = os.fdopen(create_file(self.path / "events.jsonl"), "a", encoding="utf-8")
        except OSError as exc:
            raise JournalError(f"cannot write the run journal in {root}: {exc.strerror}") from None
        self.on_error: Callable[[str], None] = lambda why: None
        self._queue: queue.SimpleQueue[Event | threading.Event | None] = queue.SimpleQueue()
        self._closed = False
        self._failed = False
        self._streamed: dict[tuple[str, str, str], int] = {}  # characters journaled live
        self._writer = threading.Thread(
            target=self._write_loop, name="runbook-journal", daemon=True
        )
        self._writer.start()

    def handle(self, event: Event) -> None:
        if self._failed:
            raise JournalError("the journal cannot be written (see the warning above)")
        if isinstance(event, CommandOutput):
            capped = self._capped(event)
            if capped is None:
                return
            event = capped
        elif isinstance(event, CommandStarted):
            for stream in ("stdout", "stderr"):
                self._streamed.pop((event.step, event.host, stream), None)
        self._queue.put(event)
        if isinstance(event, RunFinished):
            self.close()
        elif isinstance(event, StepStarted | BatchStarted):
            self._written()

    def _capped(self, event: CommandOutput) -> CommandOutput | None:
        """Streamed output as journaled: up to ``OUTPUT_CAP`` characters of each stream
        of one command, then one note and nothing more (200 MB of output made a 383 MB
        journal, issue 24); the result keeps the stream's first and last part."""
        key = (event.step, event.host, event.stream)
        done = self._streamed.get(key, 0)
        if done >= OUTPUT_CAP:
            return None
        self._streamed[key] = done + len(event.data)
        if done + len(event.data) <= OUTPUT_CAP:
            return event
        self._streamed[key] = OUTPUT_CAP
        note = (
            f"[runbook: more {event.stream} is not journaled as it streams: past "
            f"{OUTPUT_CAP} characters; the result keeps its first and last part]\n"
        )
        return replace(event, data=note)

    def _written(self) -> None:
        """Wait for the writer to have written every queued event; raise if it failed."""
        if self._closed:
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(self.BARRIER_WAIT)
        if self._failed:
            raise JournalError("the journal cannot be written (see the warning above)")

    def _write_loop(self) -> None:
        synced = time.monotonic()
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 512:
                    batch.append(self._queue.get_nowait())
            done = None in batch
            pending: list[Event] = []
            for item in batch:
                if isinstance(item, threading.Event):  # a barrier: what came before is written
                    self._write(pending)
                    pending = []
                    item.set()
                elif item is not None:
                    pending.append(item)
            self._write(pending)
            if done:
                return
            if time.monotonic() - synced >= self.SYNC_EVERY:
                with contextlib.suppress(OSError, ValueError):
                    os.fsync(self._f.fileno())
                synced = time.monotonic()

    def _write(self, events: list[Event]) -> None:
        if self._failed or not events:
            return
        try:
            self._f.write(
                "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in events)
            )
            self._f.flush()
        except (OSError, ValueError) as exc:
            self._failed = True
            print(f"runbook: WARNING: journal write failed: {exc}", file=sys.stderr)
            # Results that cannot be recorded would be lost: start nothing new.
            self.on_error(f"journal write failed: {exc}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if self._writer is not threading.current_thread():
            self._writer.join(10)
        with contextlib.suppress(OSError, ValueError):
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


def _write_json(path: Path, data: Any) -> None:
    with os.fdopen(create_file(path), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


@dataclass
class RunRecord:
    """A journaled run, read back for ``runs``, ``show``, ``report`` and ``--resume``."""

    run_id: str
    path: Path
    meta: dict[str, Any]
    events: list[Event]

    @property
    def finished(self) -> RunFinished | None:
        return next((e for e in reversed(self.events) if isinstance(e, RunFinished)), None)

    @property
    def status(self) -> str:
        f = self.finished
        return f.status.value if f else "incomplete"

    def results(self) -> list[CommandResult]:
        """Every result in order; a ``rescued`` one replaces the failure it rescued."""
        out: list[CommandResult] = []
        for e in self.events:
            if not isinstance(e, CommandFinished):
                continue
            r = e.result
            if r.status is Status.RESCUED:
                key = (r.step, r.host)
                at = next(
                    (i for i in range(len(out) - 1, -1, -1) if (out[i].step, out[i].host) == key),
                    None,
                )
                if at is not None and out[at].failed:
                    del out[at]
            out.append(r)
        return out

    def rescued_commands(self) -> frozenset[tuple[str, str]]:
        """Inner steps whose failure a rescue handled: ``--resume`` keeps them rescued."""
        return frozenset((r.step, r.host) for r in self.results() if r.status is Status.RESCUED)

    def unknown_outcomes(self) -> list[tuple[str, str]]:
        """Commands that started and have no result (the controller died), or lost their
        connection after they were sent: either may have run, wholly or in part."""
        # A loop's items each start and end (``item``): keyed by it as well.
        finished = {(r.step, r.host, r.item) for r in self.results()}
        started = [
            (e.step, e.host)
            for e in self.events
            if isinstance(e, CommandStarted) and (e.step, e.host, e.item) not in finished
        ]
        lost = [(r.step, r.host) for r in self.results() if r.maybe_ran and not r.ok]
        return list(dict.fromkeys(started + lost))

    def registrations(self) -> list[Registered]:
        """Every value the run registered (secrets as tokens), in order."""
        return [e for e in self.events if isinstance(e, Registered)]

    def ok_commands(self) -> frozenset[tuple[str, str]]:
        """``(step, host)`` of every command that ended ok (a loop's items: ``ok_items``)."""
        return frozenset(
            (r.step, r.host) for r in self.results() if r.status is Status.OK and r.item is None
        )

    def ok_items(self) -> frozenset[tuple[str, str, int]]:
        """``(step, host, item)`` of every loop item that ended ok: a resumed loop goes on
        at a host's first item not ok (SPEC §11)."""
        return frozenset(
            (r.step, r.host, r.item)
            for r in self.results()
            if r.status is Status.OK and r.item is not None
        )

    def plan(self) -> dict[str, Any]:
        """``plan.json``, read when asked (``runs`` lists many runs and needs no plan)."""
        return _read_object(self.path / "plan.json")


def read_run(root: Path, run_id: str) -> RunRecord:
    """A run read back; its directory and files must pass the StrictModes checks."""
    if not _RUN_ID.fullmatch(run_id):
        raise JournalError(f"{run_id!r} is not a run id (see `runbook runs`)")
    path = trusted_root(root) / run_id
    check_dir(path)
    if not path.is_dir():
        raise JournalError(f"no run {run_id!r} in {root} (see `runbook runs`)")
    for name in ("meta.json", "plan.json", "events.jsonl"):
        check_file(path / name)
    return load_run(path)


def load_run(path: Path) -> RunRecord:
    """The run journaled in ``path`` (trusted already: ``read_run`` checks it first).

    Raises ``JournalError`` for a missing or unreadable file, a ``meta.json`` that is not
    a JSON object, or a line of ``events.jsonl`` before its last that is not an event."""
    meta = _read_object(path / "meta.json")
    return RunRecord(path.name, path, meta, _read_events(path))


def _read_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise JournalError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise JournalError(f"{path} is not a JSON object")
    return data


def _read_events(run_dir: Path) -> list[Event]:
    """Every event, in order; a kind this version does not know is skipped (a newer
    journal). Lines end at ``\n`` only (U+2028 stays raw inside JSON strings); a line
    without its ``\n`` is the last one, torn when it is not a whole event."""
    path = run_dir / "events.jsonl"
    events = []
    try:
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    event = _event(line)
                except JournalError as exc:
                    if not line.endswith(b"\n"):
                        break  # torn by a kill mid-write: everything before it is good
                    raise JournalError(f"{path}:{n}: {exc}") from None
                if event is not None:
                    events.append(event)
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror}") from None
    return events


def _event(line: bytes) -> Event | None:
    try:
        data = json.loads(line)
    except ValueError as exc:  # UnicodeDecodeError included
        raise JournalError(f"not a JSON event: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise JournalError('not a JSON event: not an object with an "event" kind')
    try:
        return Event.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        kind = data.get("event")
        raise JournalError(f"not a valid {kind!r} event: {exc!r}") from None


def list_runs(root: Path) -> tuple[list[RunRecord], dict[str, str]]:
    """The runs journaled in ``root``, in the order they started (a run id's suffix is
    random: two runs of one second sort by it), and the runs that cannot be read, by id,
    with why (``runs`` says so rather than leave them out)."""
    trusted_root(root)
    if not root.is_dir():
        return [], {}
    runs, unreadable = [], {}
    for p in sorted(root.iterdir()):
        if (p / "meta.json").exists():
            try:
                runs.append(read_run(root, p.name))
            except JournalError as exc:
                unreadable[p.name] = str(exc)
    runs.sort(key=lambda r: (r.events[0].time if r.events else 0.0, r.run_id))
    return runs, unreadable
