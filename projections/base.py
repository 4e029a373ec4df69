"""What a projection is: a read model folded from the log of record.

A projection has a name, its tables (created by ``ddl`` in whatever schema comes first in the
connection's search path, so that a rebuild can fill a shadow schema), a pure reading of each
touchpoint (``read``: no I/O, before the batch's transaction) and a store that writes a batch of
readings inside the caller's transaction (``write``). The projection stage runs every registered
projection over each batch, in one transaction with the tracking position; ``projections``
(this package's ``__init__``) is the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, NamedTuple

import psycopg


class Settled(NamedTuple):
    """What a replay's report says of a projection's last step (``Projection.settle``): facts for
    ``ts_replays.report`` and sentences for the operator."""

    facts: dict[str, Any]
    lines: list[str]


class Projection:
    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    ddl: ClassVar[str]
    # projections whose tables this one reads (a replay rebuilds and swaps them together)
    needs: ClassVar[tuple[str, ...]] = ()
    # per table, columns a replay does not compare: bookkeeping, or figures as of the row's last
    # decision; "*": a history, reported by its row count only
    unstable: ClassVar[dict[str, tuple[str, ...]]] = {}
    # live tables beside its own that a replay's swap locks with them (a log that readers follow)
    swap_locks: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def build(cls, settings: Any) -> Projection:
        """An instance configured from the platform's settings (``services.config.Settings``)."""
        return cls()

    def read(self, event: dict[str, Any], partition: int, offset: int) -> Any:
        """What ``write`` needs of one touchpoint of the log (``None``: nothing). Pure; raises
        (KeyError, TypeError, ValueError, ...) for an event it cannot read."""
        raise NotImplementedError

    def read_link(self, event: dict[str, Any]) -> Any:
        """What ``write`` needs of an identity event (``customers_linked``: the customers of
        ``payload.merged_ids`` are now ``customer.customer_id``); ``None`` (the default): nothing,
        the projection's reads follow the identity graph instead."""
        return None

    async def write(self, conn: psycopg.AsyncConnection,
                    readings: list[Any]) -> Callable[[], None] | None:
        """Apply a batch of readings (of new events, in log order) in the caller's transaction;
        may return a callback to run once the transaction has committed."""
        raise NotImplementedError

    def forget(self) -> None:
        """Another worker wrote since this one's last commit: drop anything cached."""

    async def start(self, producer: Any) -> None:
        """Start what the projection runs beside its batches (a worker's Kafka producer given)."""

    async def stop(self) -> None:
        """Stop it."""

    # -- in a replay, whose tables are in the schema first in the search path -------------------

    async def advance(self, conn: psycopg.AsyncConnection, now: datetime | None = None) -> None:
        """What time alone changes, up to ``now`` (by default the time the replayed log has
        reached), as the live jobs do by the clock; nothing is published. A replay calls it after
        each chunk, in the chunk's transaction."""

    async def settle(self, conn: psycopg.AsyncConnection, now: datetime, shadow: str,
                     live: Any) -> Settled:
        """A replay's last step before it compares its tables (in ``shadow``) with the live ones,
        holding the live stage's positions: time run up to ``now``, and what the rebuilt tables
        take from the live ones that the log does not hold. ``live``: the live settings."""
        return Settled({}, [])

    async def swapped(self, conn: psycopg.AsyncConnection) -> None:
        """Right after a replay has swapped the rebuilt tables in, in its transaction: tell the
        projection's live readers."""
