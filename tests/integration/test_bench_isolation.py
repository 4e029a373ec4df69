"""The isolation benchmark measures what it says: each poisoned batch leaves one dead letter and
commits every other record."""

from __future__ import annotations

import pytest

from bench.isolation import measure
from tests.integration.faults import tally

pytestmark = pytest.mark.integration


async def test_isolation_bench_commits_all_but_the_poison_records(settings) -> None:
    out = await measure(settings, batch=200, rounds=2)
    found = await tally(settings)
    assert found.contacts == 200 * 5 - 2 and found.duplicates == 0
    assert [(d["kind"], d["stage"]) for d in found.dead_letters] == [("poison", "projections")] * 2
    assert out["poisoned_ms"] > 0 and out["clean_ms"] > 0 and out["ratio"] > 1
