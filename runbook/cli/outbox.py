"""The console's own writer: a bounded queue between the run and the terminal.

Observers never steer (SPEC §6). Events reach the console under the runner's emit lock,
so a console that wrote to its terminal or pipe there stopped the whole run while the
pipe was full (``apply -v | (sleep 60; cat)``). The console's ``handle`` only queues
lines here; a thread of its own writes them, all that waits in one write. ``put`` never
blocks: when more than ``BACKLOG`` waits, the oldest lines are dropped, and once the
writer can write again it first says how many (``note``) — the newest lines, the last
steps' summaries among them, are the ones kept; the journal keeps everything. 4 MiB: a
256 KiB backlog dropped lines of ``seq 1 1000000`` written to a file, which kept up.

A write that fails stops the writer: ``on_error`` hears why (a closed pipe, a hung-up
terminal, a bug) and the run goes on.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

BACKLOG = 4 << 20  # what may wait for the terminal: characters, plus LINE_COST a line
LINE_COST = 64  # what a queued line costs beyond its characters (an empty line is not free)


@dataclass(frozen=True)
class _Batch:
    lines: Sequence[str]
    cost: int


class Outbox:
    """Lines for ``write`` (called on the outbox's thread only), in order, never blocking
    the caller of ``put``. ``note(n)`` is what to write where ``n`` lines were dropped."""

    def __init__(
        self,
        write: Callable[[Sequence[str]], None],
        note: Callable[[int], Sequence[str]],
        on_error: Callable[[Exception], None] = lambda exc: None,
        backlog: int = BACKLOG,
    ) -> None:
        self._write = write
        self._note = note
        self._on_error = on_error
        self._backlog = backlog
        self._queue: deque[_Batch] = deque()
        self._cost = 0
        self._dropped = 0  # lines dropped since the writer last took a batch
        self._cond = threading.Condition()
        self._busy = False  # the writer holds batches it has not finished writing
        self._waiting = False  # the writer waits for a batch
        self._held = False  # nothing may be written (a prompt is on the terminal)
        self._closing = False
        self.stopped = False  # a write failed, or a Ctrl-C gave up on the rest
        self.dropped = 0  # lines dropped in all
        self._thread = threading.Thread(target=self._loop, name="runbook-console", daemon=True)
        self._thread.start()

    def put(self, lines: Sequence[str]) -> None:
        """Queue ``lines`` as one batch (dropped whole or written whole). Never blocks
        on the terminal: at worst it waits for another ``put`` or the writer to take a
        batch off the queue."""
        if not lines:
            return
        cost = sum(len(ln) for ln in lines) + LINE_COST * len(lines)
        with self._cond:
            if self._closing or self.stopped:
                return
            self._queue.append(_Batch(lines, cost))
            self._cost += cost
            while self._cost > self._backlog and len(self._queue) > 1:
                old = self._queue.popleft()
                self._cost -= old.cost
                self._dropped += len(old.lines)
                self.dropped += len(old.lines)
            if self._waiting:
                self._cond.notify_all()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Everything queued so far written, then nothing written while inside (a prompt
        owns the terminal); what is queued meanwhile is written after."""
        with self._cond:
            while (self._queue or self._busy) and not self.stopped:
                self._cond.wait()
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()

    def close(self) -> None:
        """Write what is queued, then stop the thread. It waits for the reader as long as
        it takes (the run is over: this is the pipeline's own pace); a Ctrl-C meanwhile
        gives up on the rest (and is raised)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        try:
            self._thread.join()
        except KeyboardInterrupt:
            self.stopped = True
            raise

    def _loop(self) -> None:
        while True:
            with self._cond:
                while (not self._queue or self._held) and not (self._closing and not self._queue):
                    self._waiting = True
                    self._cond.wait()
                    self._waiting = False
                if not self._queue:
                    return  # closing, and everything is written
                # Everything queued, in one write: a writer that took one batch at a time
                # fell behind a command streaming to a file, and dropped lines it need not.
                batches = list(self._queue)
                self._queue.clear()
                self._cost = 0
                dropped, self._dropped = self._dropped, 0
                self._busy = True
            try:
                if not self.stopped:
                    lines = [ln for b in batches for ln in b.lines]
                    self._write([*self._note(dropped), *lines] if dropped else lines)
            except Exception as exc:  # observers never steer: not even a bug of ours
                self._fail(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _fail(self, exc: Exception) -> None:
        with self._cond:
            self.stopped = True
            self._queue.clear()
            self._cost = 0
        self._on_error(exc)
