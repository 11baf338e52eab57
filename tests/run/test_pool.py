"""``runbook.run.pool.WorkerPool``: every item back exactly once, halt drains, workers survive.

Timing: jobs that must still be "running" while the test acts block on an ``Event`` the
test controls, never on a sleep, so nothing here depends on machine speed. The only
timeouts are generous "no hang" bounds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook.run.pool import Completed, WorkerPool

HANG = 10.0  # seconds: a bound that only a hang can exceed


@pytest.fixture
def pools():
    """Pools created by a test; shut down afterwards even when the test failed."""
    made: list[WorkerPool] = []

    def make(workers: int) -> WorkerPool:
        pool = WorkerPool(workers)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.halt()
        pool.shutdown(timeout=HANG)


def _wait_for(predicate, timeout: float = HANG) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def test_every_item_comes_back_exactly_once(pools):
    pool = pools(4)
    items = list(range(200))
    for i in items:
        pool.submit(lambda x: x * x, i)
    done = pool.join(len(items), timeout=HANG)
    assert sorted(d.item for d in done) == items
    assert all(d.result == d.item * d.item for d in done)
    assert not any(d.cancelled or d.error for d in done)
    # Nothing extra is waiting on the completed queue.
    assert pool.get(timeout=0.05) is None


def test_halt_drains_pending_items_without_running_them(pools):
    pool = pools(1)
    ran: list[int] = []
    started = threading.Event()
    release = threading.Event()

    def blocker(item: int) -> int:
        ran.append(item)
        started.set()
        release.wait(HANG)
        return item

    def job(item: int) -> int:
        ran.append(item)
        return item

    pool.submit(blocker, 0)
    assert started.wait(HANG)
    for i in range(1, 6):
        pool.submit(job, i)
    drained = pool.halt()
    release.set()
    done = pool.join(6, timeout=HANG)

    assert drained == 5
    by_item = {d.item: d for d in done}
    assert sorted(by_item) == [0, 1, 2, 3, 4, 5]
    # The in-flight item finished normally; the queued ones came back cancelled, unrun.
    assert by_item[0].result == 0 and not by_item[0].cancelled
    assert all(by_item[i].cancelled and by_item[i].result is None for i in range(1, 6))
    assert ran == [0]


def test_submit_after_halt_comes_back_cancelled(pools):
    pool = pools(2)
    ran: list[str] = []
    pool.halt()
    pool.submit(ran.append, "late")
    done = pool.join(1, timeout=HANG)
    assert [(d.item, d.cancelled) for d in done] == [("late", True)]
    # Give a worker every chance to (wrongly) pick it up.
    pool.shutdown(timeout=HANG)
    assert ran == []


def test_submit_after_shutdown_is_refused(pools):
    pool = pools(1)
    assert pool.shutdown(timeout=HANG)
    with pytest.raises(RuntimeError):
        pool.submit(lambda x: x, 1)


def test_join_with_timeout_returns_partial_results(pools):
    pool = pools(2)
    release = threading.Event()
    pool.submit(lambda x: release.wait(HANG) and x, "slow")
    pool.submit(lambda x: x, "fast")
    _wait_for(lambda: pool.completed.qsize() >= 1)  # "fast" is back; "slow" is blocked
    done = pool.join(2, timeout=0.3)
    assert [d.item for d in done] == ["fast"]
    # Nothing more arrives while "slow" is blocked: an empty, not a hanging, join.
    assert pool.join(1, timeout=0.1) == []
    release.set()
    rest = pool.join(1, timeout=HANG)
    assert [d.item for d in rest] == ["slow"]


def test_exception_in_job_is_stored_and_worker_survives(pools):
    pool = pools(1)  # one worker: if it died, the later jobs would never run
    boom = ValueError("boom")

    def explode(_: object) -> None:
        raise boom

    def interrupt(_: object) -> None:
        raise KeyboardInterrupt  # BaseException too: a worker must never die silently

    pool.submit(explode, "a")
    pool.submit(interrupt, "b")
    pool.submit(lambda x: x.upper(), "c")
    done = {d.item: d for d in pool.join(3, timeout=HANG)}
    assert done["a"].error is boom and done["a"].result is None
    assert isinstance(done["b"].error, KeyboardInterrupt)
    assert done["c"].error is None and done["c"].result == "C"
    assert pool.workers[0].is_alive()


def _alive(pool: WorkerPool) -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t in pool.workers}


def test_shutdown_joins_all_threads():
    before = threading.active_count()
    pool = WorkerPool(5)
    assert len(_alive(pool)) == 5
    for i in range(20):
        pool.submit(lambda x: x, i)
    assert len(pool.join(20, timeout=HANG)) == 20
    assert pool.shutdown(timeout=HANG) is True
    assert _alive(pool) == set()
    assert threading.active_count() <= before
    # A second shutdown is harmless.
    assert pool.shutdown(timeout=HANG) is True


def test_shutdown_lets_queued_work_finish_unless_halted():
    pool = WorkerPool(1)
    release = threading.Event()
    pool.submit(lambda x: release.wait(HANG) and x, 0)
    for i in range(1, 4):
        pool.submit(lambda x: x, i)
    # Shutdown with a job still blocked: it cannot join in time, and says so.
    assert pool.shutdown(timeout=0.05) is False
    release.set()
    assert pool.shutdown(timeout=HANG) is True
    done = pool.join(4, timeout=HANG)
    assert sorted(d.item for d in done) == [0, 1, 2, 3]
    assert not any(d.cancelled for d in done)


def test_halt_after_shutdown_keeps_sentinels_so_workers_still_exit():
    pool = WorkerPool(2)
    release = threading.Event()
    pool.submit(lambda x: release.wait(HANG) and x, "a")
    pool.submit(lambda x: release.wait(HANG) and x, "b")
    pool.submit(lambda x: x, "queued")
    assert pool.shutdown(timeout=0.05) is False  # sentinels queued behind "queued"
    assert pool.halt() == 1
    release.set()
    assert pool.shutdown(timeout=HANG) is True
    assert _alive(pool) == set()
    done = {d.item: d for d in pool.join(3, timeout=HANG)}
    assert done["queued"].cancelled
    assert not done["a"].cancelled and not done["b"].cancelled


def test_pool_needs_a_worker():
    with pytest.raises(ValueError):
        WorkerPool(0)


def test_halt_racing_with_running_workers_loses_nothing(pools):
    """Halt while 4 workers are busy with a long queue: each item once, run or cancelled."""
    pool = pools(4)
    ran: list[int] = []
    lock = threading.Lock()

    def job(i: int) -> int:
        with lock:
            ran.append(i)
        time.sleep(0.001)
        return i

    n = 400
    for i in range(n):
        pool.submit(job, i)
    _wait_for(lambda: len(ran) >= 20)
    pool.halt()
    for i in range(n, n + 10):
        pool.submit(job, i)
    done = pool.join(n + 10, timeout=HANG)
    counts = Counter(d.item for d in done)
    assert sorted(counts) == list(range(n + 10)) and set(counts.values()) == {1}
    run_items = {d.item for d in done if not d.cancelled}
    cancelled = {d.item for d in done if d.cancelled}
    assert run_items == set(ran)  # what ran is exactly what came back not cancelled
    assert cancelled.isdisjoint(ran)
    assert set(range(n, n + 10)) <= cancelled


@settings(max_examples=25, deadline=None)
@given(
    workers=st.integers(min_value=1, max_value=4),
    n_items=st.integers(min_value=0, max_value=40),
    halt_at=st.one_of(st.none(), st.integers(min_value=0, max_value=40)),
    failing=st.sets(st.integers(min_value=0, max_value=40), max_size=10),
)
def test_property_each_item_once_with_random_halts_and_errors(workers, n_items, halt_at, failing):
    pool = WorkerPool(workers)
    try:

        def job(i: int) -> int:
            if i in failing:
                raise RuntimeError(i)
            return -i

        for i in range(n_items):
            if halt_at == i:
                pool.halt()
            pool.submit(job, i)
        done: list[Completed] = pool.join(n_items, timeout=HANG)
        assert sorted(d.item for d in done) == list(range(n_items))
        for d in done:
            if d.cancelled:
                assert d.result is None and d.error is None
                # Only a halt cancels: without one, everything runs.
                assert halt_at is not None
            elif d.item in failing:
                assert isinstance(d.error, RuntimeError) and d.error.args == (d.item,)
            else:
                assert d.result == -d.item and d.error is None
        if halt_at is not None:
            # Everything submitted after the halt came back cancelled.
            assert all(d.cancelled for d in done if d.item >= halt_at)
    finally:
        pool.halt()
        assert pool.shutdown(timeout=HANG)
