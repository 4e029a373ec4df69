"""The time the value jobs work at."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    """The time the jobs work at: the wall clock once the worker has caught up with the log (no
    batch for IDLE_S), else the latest event time it has seen, so that a backlog being worked
    off (a first load, a replay, a worker catching up) is not overtaken: a stage that changes with
    time changes when the log says that time has come."""

    IDLE_S = 2.0

    def __init__(self) -> None:
        self.front: datetime | None = None
        self._busy = 0.0

    def saw(self, latest: datetime) -> None:
        self.front = latest if self.front is None else max(self.front, latest)
        self._busy = time.monotonic()

    def now(self) -> datetime:
        wall = datetime.now(UTC)
        if self.front is None or time.monotonic() - self._busy > self.IDLE_S:
            return wall
        return min(wall, self.front)
