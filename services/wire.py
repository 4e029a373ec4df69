"""How a touchpoint travels on touchpoints.raw: key, value and the mark of our own doors.

The gateway and the SDK validate every event with the models in ``events/`` before they publish
it, and mark the record with the ``ts-validated`` header. The identity stage reads a marked
record as the normalised JSON it is, and validates everything else in full (producers in other
languages, or anything that fails to read as marked). Whoever may write touchpoints.raw is
decided by the broker's ACLs, as for every other topic.
"""

from __future__ import annotations

from collections.abc import Iterable

from events import TouchpointEvent, dump_touchpoint, routing_key

VALIDATED = ("ts-validated", b"touchpoint/1")


def raw_record(event: TouchpointEvent) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of a validated event, as our doors publish it."""
    return routing_key(event), dump_touchpoint(event), [VALIDATED]


def is_validated(headers: Iterable[tuple[str, bytes]] | None) -> bool:
    return bool(headers) and VALIDATED in tuple(headers)
