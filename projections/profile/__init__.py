"""The unified customer profile."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
import psycopg

from projections.base import Projection
from projections.profile import fold, store


class Profiles(Projection):
    """A worker is the only writer of the profiles of the partitions it holds (touchpoints are
    keyed by customer id), so it keeps the state documents it last committed in a bounded cache
    and reads back only those it does not hold. The cache keeps them as JSON text (strings are not
    scanned by the garbage collector; parsed documents were, BENCHMARKS.md), takes documents only
    after their transaction commits, and is dropped when another worker wrote (``forget``)."""

    name = "profile"
    tables = ("profiles",)
    needs = ("orders",)  # the view customer_profiles reads the ledger
    unstable = {"profiles": ("updated_at",)}
    ddl = store.DDL

    def __init__(self, cache_size: int = 100_000):
        self.cache = StateCache(cache_size)

    @classmethod
    def build(cls, settings: Any) -> Profiles:
        return cls(settings.profile_cache_size)

    def read(self, event: dict[str, Any], partition: int, offset: int) -> fold.Touch:
        return fold.read_touch(event)

    async def write(self, conn: psycopg.AsyncConnection,
                    readings: list[fold.Touch]) -> Callable[[], None]:
        customers = list(dict.fromkeys(t.customer_id for t in readings))
        states, missing = self.cache.take(customers)
        states.update(await store.load_states(conn, missing))
        for t in readings:
            state = states.get(t.customer_id)
            if state is None:
                state = states[t.customer_id] = fold.new_state()
            fold.add_touch(state, t)
        saved = await store.save_states(conn, states)
        return lambda: self.cache.put(saved)

    def forget(self) -> None:
        self.cache.clear()


class StateCache:
    """The state documents of the most recently written profiles, at most ``size`` of them
    (least recently written go first)."""

    def __init__(self, size: int):
        self.size = size
        self._held: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def clear(self) -> None:
        self._held.clear()

    def take(self, customer_ids: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """The state documents held among ``customer_ids`` (parsed), and the ids not held."""
        held, missing = {}, []
        for cid in customer_ids:
            doc = self._held.get(cid)
            if doc is None:
                missing.append(cid)
            else:
                held[cid] = orjson.loads(doc)
        return held, missing

    def put(self, documents: dict[str, str]) -> None:
        for cid, doc in documents.items():
            self._held[cid] = doc
            self._held.move_to_end(cid)
        while len(self._held) > self.size:
            self._held.popitem(last=False)
