"""The time a projection worker's jobs work at: shared between the worker, its jobs process and a
replay (value re-ages, alerts fall due)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import MutableSequence
from datetime import UTC, datetime


class Clock:
    """The time the jobs work at: the wall clock once the worker has caught up with the log (no
    batch for IDLE_S), else the latest event time it has seen, so that a backlog being worked
    off (a first load, a replay, a worker catching up) is not overtaken: a stage that changes with
    time changes when the log says that time has come.

    The batches write, the jobs read: three numbers (the latest event time seen, in epoch
    seconds, 0 for none; when a batch last saw one, on the system's monotonic clock, which all
    processes share; how many batches committed changes), in shared memory when the jobs run in
    their own process (``shared``)."""

    IDLE_S = 2.0

    def __init__(self, cells: MutableSequence[float] | None = None,
                 event_time: bool = False) -> None:
        self.cells = cells if cells is not None else [0.0, 0.0, 0.0]
        self.event_time = event_time  # a replay: the log's time only, however long a chunk takes

    @classmethod
    def shared(cls) -> Clock:
        return cls(multiprocessing.get_context("spawn").RawArray("d", 3))

    def saw(self, latest: datetime) -> None:
        self.cells[0] = max(self.cells[0], latest.timestamp())
        self.cells[1] = time.monotonic()

    def now(self) -> datetime:
        wall = datetime.now(UTC)
        front, busy = self.cells[0], self.cells[1]
        if self.event_time and front:
            return min(wall, datetime.fromtimestamp(front, UTC))
        if not front or time.monotonic() - busy > self.IDLE_S:
            return wall
        return min(wall, datetime.fromtimestamp(front, UTC))

    def changed(self) -> None:
        """A batch committed changes (the relay publishes them)."""
        self.cells[2] += 1

    @property
    def changes(self) -> float:
        return self.cells[2]
