"""Contact history: one row per touchpoint, newest first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from projections.base import Projection
from projections.contacts import fold, store


class Contacts(Projection):
    name = "contacts"
    tables = ("contacts",)
    ddl = store.DDL

    def read(self, event: dict[str, Any], partition: int, offset: int) -> str:
        """The touchpoint's row as a COPY line."""
        return store.copy_line(fold.row(event, partition, offset))

    async def write(self, conn: psycopg.AsyncConnection,
                    readings: list[str]) -> Callable[[], None] | None:
        await store.write_lines(conn, readings)
        return None
