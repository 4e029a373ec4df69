"""Identity resolution: the keys a customer is known by, and the fact that two became one."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.envelope import Customer, UuidStr

IdentityKey = Annotated[str, Field(pattern=r"^(id|email|phone|ext):.+$")]


def identity_keys(customer: Customer) -> list[str]:
    """The identity-graph keys of `customer`: id, email, phone, then external ids by system."""
    keys = [
        f"{kind}:{value}"
        for kind, value in (
            ("id", customer.customer_id),
            ("email", customer.email),
            ("phone", customer.phone),
        )
        if value
    ]
    return keys + [
        f"ext:{system}:{ident}" for system, ident in sorted(customer.external_ids.items())
    ]


class CustomersLinked(BaseModel):
    """Identity resolution merged customers: every id in `merged_ids` now means `customer_id`."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    customer_id: UuidStr
    merged_ids: tuple[UuidStr, ...] = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=200)
    keys: tuple[IdentityKey, ...] = ()

    @model_validator(mode="after")
    def _survivor_not_merged(self) -> "CustomersLinked":
        if self.customer_id in self.merged_ids:
            raise ValueError("customer_id (the survivor) must not be among merged_ids")
        return self
