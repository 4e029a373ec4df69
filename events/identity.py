"""Identity resolution: the keys a customer is known by, and the fact that two became one."""

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.envelope import Customer
from events.identifiers import UuidStr
from events.strings import LINE, non_blank, text_field

IdentityKey = Annotated[str, Field(pattern=non_blank(LINE).replace("^", "^(id|email|phone|ext):", 1))]


def identity_keys(customer: Customer | Mapping[str, Any]) -> list[str]:
    """The identity-graph keys of `customer` (a model, or its normalised JSON form): id, email,
    phone, then external ids by system."""
    c = customer if isinstance(customer, Mapping) else customer.__dict__
    keys = [
        f"{kind}:{c[field]}"
        for kind, field in (("id", "customer_id"), ("email", "email"), ("phone", "phone"))
        if c.get(field)
    ]
    return keys + [
        f"ext:{system}:{ident}" for system, ident in sorted((c.get("external_ids") or {}).items())
    ]


class CustomersLinked(BaseModel):
    """Identity resolution merged customers: every id in `merged_ids` now means `customer_id`.

    Checked beyond the JSON Schema: `customer_id` (the survivor) is not among `merged_ids`."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    customer_id: UuidStr
    merged_ids: tuple[UuidStr, ...] = Field(min_length=1)
    reason: str = text_field(200, min_length=1)
    keys: tuple[IdentityKey, ...] = ()

    @model_validator(mode="after")
    def _survivor_not_merged(self) -> "CustomersLinked":
        if self.customer_id in self.merged_ids:
            raise ValueError("customer_id (the survivor) must not be among merged_ids")
        return self
