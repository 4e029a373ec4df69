"""How a touchpoint travels on touchpoints.raw: key, value and the seal of our own doors.

The gateway and the SDK validate every event with the models in ``events/`` before they publish
it. When they hold the platform's signing key (``SIGNING_KEY``), they seal the record: the
``ts-validated`` header carries a keyed BLAKE2b MAC of the value. The identity stage reads a
record whose seal it can verify as the normalised JSON it is, and validates every other record in
full: a producer in another language, a door without the key, or anyone who copied the header
onto bytes of their own. A seal proves who validated the bytes, not who may write the topic (the
broker's ACLs decide that).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from functools import lru_cache

from events import TouchpointEvent, dump_touchpoint, routing_key

MARK = "ts-validated"
VERSION = b"touchpoint/1;"


@lru_cache(maxsize=8)
def signing_key(secret: str) -> bytes | None:
    """The MAC key for a configured secret of any length (``None``: no secret, no seals)."""
    return hashlib.blake2b(secret.encode(), digest_size=32).digest() if secret else None


def seal(value: bytes, key: bytes) -> bytes:
    return VERSION + hashlib.blake2b(value, key=key, digest_size=16).hexdigest().encode()


def raw_record(event: TouchpointEvent,
               key: bytes | None = None) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of a validated event, as our doors publish it: sealed with ``key``."""
    value = dump_touchpoint(event)
    return routing_key(event), value, [(MARK, seal(value, key))] if key else []


def is_sealed(headers: Iterable[tuple[str, bytes]] | None, value: bytes | None,
              key: bytes | None) -> bool:
    """Whether the record carries a seal made with ``key`` over exactly ``value``."""
    if not key or not headers or value is None:
        return False
    for name, mark in headers:
        if name == MARK:
            return hmac.compare_digest(mark, seal(value, key))
    return False
