"""The clock the value jobs work at, shared between a projection worker and its jobs process."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta

from projections.clock import Clock


def _batch_in_another_process(cells, at: float) -> None:
    clock = Clock(cells)
    clock.saw(datetime.fromtimestamp(at, UTC))
    clock.changed()


def test_a_backlog_sets_the_time_and_the_wall_clock_takes_over_when_idle() -> None:
    clock = Clock()
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 1  # nothing seen: wall clock
    past = datetime.now(UTC) - timedelta(days=300)
    clock.saw(past)
    clock.saw(past - timedelta(days=1))  # never goes back
    assert clock.now() == past
    clock.cells[1] -= Clock.IDLE_S + 1  # no batch for a while: caught up
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 1


def test_what_a_worker_sees_its_jobs_process_reads() -> None:
    clock = Clock.shared()
    at = (datetime.now(UTC) - timedelta(days=30)).replace(microsecond=0)
    child = multiprocessing.get_context("spawn").Process(
        target=_batch_in_another_process, args=(clock.cells, at.timestamp()))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert clock.now() == at and clock.changes == 1
