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
from typing import Any, ClassVar

import psycopg


class Projection:
    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    ddl: ClassVar[str]
    # projections whose tables this one reads (a replay rebuilds and swaps them together)
    needs: ClassVar[tuple[str, ...]] = ()
    # per table, columns a replay does not compare: bookkeeping, or figures as of the row's last
    # decision; "*": a history, reported by its row count only
    unstable: ClassVar[dict[str, tuple[str, ...]]] = {}

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
