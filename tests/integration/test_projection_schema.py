"""The projections' tables live in the schema the settings name: a rebuild can fill another one."""

from __future__ import annotations

import uuid

import pytest

from services.store import migrate
from tests.conftest import eventually
from tests.integration.pipeline import api_client, count, running_stages, series

pytestmark = pytest.mark.integration


async def test_a_stage_writes_its_projections_into_the_schema_it_is_given(settings):
    shadow = settings.model_copy(update={"projection_schema": "shadow"})
    migrate(shadow.database_url, shadow.projection_schema)
    email = f"shadow.{uuid.uuid4().hex[:6]}@example.com"
    async with running_stages(shadow), api_client(settings) as client:
        assert (await client.post("/v1/touchpoints/batch",
                                  json={"events": series(email, 10)})).status_code == 202
        async def projected() -> bool:
            return await count(settings, "SELECT count(*) AS n FROM shadow.contacts") == 10
        await eventually(projected)
    assert await count(settings, "SELECT count(*) AS n FROM shadow.profiles") == 1
    assert await count(settings, "SELECT count(*) AS n FROM shadow.orders") == 2
    assert await count(settings, "SELECT count(*) AS n FROM public.contacts") == 0
