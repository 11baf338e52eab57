"""``WorkerPool``: N long-lived worker threads, a work queue and a completed queue.

Kept to the discipline of ``concurrent.futures.thread``: a lock-guarded halt flag, one
sentinel per worker to wake it for shutdown, a check before each item starts, and workers
that store an exception with the item instead of dying. A pool cannot stop a running job:
timeouts belong to the execution context. ``halt`` drains what has not started; every
submitted item comes back on ``completed`` exactly once, run or cancelled.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_SENTINEL = None


@dataclass
class Completed:
    """One submitted item, back from the pool."""

    item: Any
    result: Any = None
    error: BaseException | None = None
    cancelled: bool = False


@dataclass
class _Work:
    fn: Callable[[Any], Any]
    item: Any


class Worker(threading.Thread):
    def __init__(self, pool: WorkerPool, index: int) -> None:
        super().__init__(name=f"runbook-worker-{index}", daemon=True)
        self.pool = pool

    def run(self) -> None:
        pool = self.pool
        while True:
            work = pool._work.get()
            if work is _SENTINEL:
                return
            if pool.halted:
                pool.completed.put(Completed(work.item, cancelled=True))
                continue
            try:
                done = Completed(work.item, result=work.fn(work.item))
            except BaseException as exc:  # stored, never lost: the runner decides
                done = Completed(work.item, error=exc)
            pool.completed.put(done)
            del work, done


class WorkerPool:
    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self.completed: queue.SimpleQueue[Completed] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._halted = False
        self._shutdown = False
        self.workers = [Worker(self, i) for i in range(workers)]
        for w in self.workers:
            w.start()

    @property
    def halted(self) -> bool:
        return self._halted

    def submit(self, fn: Callable[[Any], Any], item: Any) -> None:
        """Queue ``fn(item)``. After ``halt`` the item comes back cancelled at once."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("submit after shutdown")
            if self._halted:
                self.completed.put(Completed(item, cancelled=True))
                return
            self._work.put(_Work(fn, item))

    def halt(self) -> int:
        """Start nothing new; pending items come back cancelled. Returns how many drained."""
        with self._lock:
            self._halted = True
            drained = 0
            while True:
                try:
                    work = self._work.get_nowait()
                except queue.Empty:
                    break
                if work is _SENTINEL:  # shutdown already queued: keep it for the workers
                    self._work.put(work)
                    break
                self.completed.put(Completed(work.item, cancelled=True))
                drained += 1
            return drained

    def reopen(self) -> None:
        """Take work again after ``halt`` (the always steps of a halted run); after
        ``shutdown`` nothing is taken."""
        with self._lock:
            self._halted = False

    def get(self, timeout: float | None = None) -> Completed | None:
        """Next completed item, or ``None`` after ``timeout`` seconds."""
        try:
            return self.completed.get(timeout=timeout)
        except queue.Empty:
            return None

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop the workers once their current item is done. True if all joined in time."""
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                for _ in self.workers:
                    self._work.put(_SENTINEL)
        for w in self.workers:
            w.join(timeout)
        return not any(w.is_alive() for w in self.workers)

    def join(self, expected: int, timeout: float | None = None) -> list[Completed]:
        """Collect ``expected`` completions, or as many as arrive within ``timeout``."""

        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[Completed] = []
        while len(out) < expected:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            done = self.get(left)
            if done is not None:
                out.append(done)
        return out
