"""The order ledger: each order's state in force, by customer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from projections.base import Projection
from projections.orders import fold, store


class Orders(Projection):
    name = "orders"
    tables = ("orders",)
    unstable = {"orders": ("updated_at",)}
    ddl = store.DDL

    def read(self, event: dict[str, Any], partition: int, offset: int) -> fold.OrderState | None:
        return fold.read(event)

    async def write(self, conn: psycopg.AsyncConnection,
                    readings: list[fold.OrderState]) -> Callable[[], None] | None:
        keys = list(dict.fromkeys((s.customer_id, s.order_id) for s in readings))
        held = await store.load(conn, keys)
        for s in readings:
            key = (s.customer_id, s.order_id)
            held[key] = fold.merge(held.get(key), s)
        await store.save(conn, [held[k] for k in keys])
        return None
