"""The checked-in JSON Schemas are the models' schemas, and drift is caught."""

import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from events import VERSIONED, OrderPlaced, OrderTouchpoint
from events.schemas import SCHEMA_DIR, build_schemas, check_schemas, main, render, write_schemas

EXPECTED_FILES = {
    "touchpoint.json",
    "touchpoint.call.v1.json",
    "touchpoint.call.v2.json",
    "touchpoint.email.v1.json",
    "touchpoint.web_visit.v1.json",
    "touchpoint.order.v1.json",
    "touchpoint.complaint.v1.json",
    "touchpoint.feedback.v1.json",
    "customers_linked.v1.json",
}


def test_checked_in_schemas_match_the_models() -> None:
    assert check_schemas() == []
    assert main(["--check"]) == 0
    for name, schema in build_schemas().items():
        assert json.loads((SCHEMA_DIR / name).read_text()) == schema


def test_one_file_per_type_and_version_plus_union_and_identity() -> None:
    schemas = build_schemas()
    assert set(schemas) == EXPECTED_FILES
    assert schemas["touchpoint.order.v1.json"]["title"] == "Touchpoint: order (v1)"
    assert "type" in schemas["touchpoint.call.v1.json"]["required"]
    v2 = schemas["touchpoint.call.v2.json"]
    assert v2["title"] == "Touchpoint: call (v2)"
    assert {"type", "schema_version"} <= set(v2["required"])
    assert v2["properties"]["schema_version"]["const"] == 2
    assert "wait_s" in v2["$defs"]["CallLoggedV2"]["required"]


def test_the_union_has_one_branch_per_type_and_version_and_no_discriminator() -> None:
    """A call has two shapes: an OpenAPI discriminator maps a type to one, so there is none,
    and each branch excludes the others by its type and version."""
    union = build_schemas()["touchpoint.json"]
    assert "discriminator" not in union
    assert [b["$ref"].rsplit("/", 1)[1] for b in union["oneOf"]] == [
        model.__name__ for model in VERSIONED.values()]


def test_rendering_is_stable() -> None:
    schema = build_schemas()["touchpoint.order.v1.json"]
    text = render(schema)
    assert text == render(json.loads(text))
    assert text.endswith("}\n")
    assert text.startswith('{\n  "$defs"')


def test_missing_edited_and_stale_files_are_reported_and_regenerated(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    assert check_schemas(tmp_path) == []
    (tmp_path / "touchpoint.email.v1.json").unlink()
    (tmp_path / "touchpoint.call.v1.json").write_text("{}\n")
    (tmp_path / "touchpoint.v1.json").write_text("{}\n")  # a file the models no longer make
    assert sorted(check_schemas(tmp_path)) == [
        f"differs: {tmp_path / 'touchpoint.call.v1.json'}",
        f"missing: {tmp_path / 'touchpoint.email.v1.json'}",
        f"stale: {tmp_path / 'touchpoint.v1.json'}",
    ]
    write_schemas(tmp_path)
    assert check_schemas(tmp_path) == []
    assert {p.name for p in tmp_path.iterdir()} == EXPECTED_FILES


class OrderPlacedWithCoupon(OrderPlaced):
    coupon: str | None = Field(None, max_length=32)


class CouponOrderTouchpoint(OrderTouchpoint):
    type: Literal["order"] = "order"
    payload: OrderPlacedWithCoupon


def test_a_changed_model_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(VERSIONED, ("order", 1), CouponOrderTouchpoint)
    assert check_schemas() == [f"differs: {SCHEMA_DIR / 'touchpoint.order.v1.json'}"]
    assert main(["--check"]) == 1


def test_unknown_arguments_are_refused() -> None:
    assert main(["--frobnicate"]) == 2
