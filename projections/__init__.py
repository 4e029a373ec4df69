"""Read models folded from the log of record, registered here once.

The projection stage, table setup, readiness and the benchmark peers all take this list; adding
a projection is a package beside these (``base.Projection``: name, tables, pure ``read``,
``write``) and one line below. Order matters only for table setup: a view may read the tables
of projections before it.
"""

from __future__ import annotations

from projections.alerts import Alerts
from projections.base import Projection
from projections.contacts import Contacts
from projections.orders import Orders
from projections.profile import Profiles
from projections.value import Value

REGISTRY: tuple[type[Projection], ...] = (
    Contacts,
    Orders,
    Profiles,
    Value,  # after orders: it reads the ledger the batch has just written
    Alerts,  # after value: it reads the tier and P(alive) the batch has just written
)

__all__ = ["REGISTRY", "Projection"]
