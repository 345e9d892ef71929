"""Schemathesis over ingest's whole OpenAPI, from the ASGI app, against the real broker and Redis.

Every generated request, valid or not, must get a documented status (never a
5xx) with a body and headers that match the schema.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckContext
from schemathesis.core.transport import Response
from schemathesis.openapi import from_asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from rapport.common.auth import key_entry
from rapport.common.kafka import TopicSpec, ensure_topics
from rapport.common.settings import KafkaSettings
from rapport.devstack.servers import RunningServer
from rapport.ingest.app import create_app
from rapport.ingest.settings import IngestSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "rpk_test_schemathesis-0123456789abcdef"


@pytest.fixture(scope="module")
def ingest_schema(
    kafka_server: RunningServer, redis_server: RunningServer
) -> schemathesis.BaseSchema:
    entry = key_entry(KEY, key_id="fuzz", tenant="fuzz", scopes=["events:write"])
    topic = f"t.fuzz.{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(kafka_bootstrap_servers=kafka_server.url())
    asyncio.run(ensure_topics(kafka, [TopicSpec(topic, 3)]))
    settings = IngestSettings(
        kafka_bootstrap_servers=kafka_server.url(),
        redis_url=redis_server.url(),
        api_keys=json.dumps([entry.model_dump(mode="json")]),
        topic=topic,
    )
    return from_asgi("/openapi.json", create_app(settings))


schema = schemathesis.pytest.from_fixture("ingest_schema")


def valid_data_is_refused_only_for_the_clock(
    ctx: CheckContext, response: Response, case: schemathesis.Case[Any]
) -> bool | None:
    """Schema-valid events are accepted, except one dated beyond the allowed clock skew.

    That rule depends on the server's clock, which JSON Schema cannot express,
    so it replaces schemathesis's positive_data_acceptance check.
    """
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code == 422:
        fields = {error["field"] for error in response.json()["errors"]}
        assert fields == {"occurred_at"}, response.json()
    return None


@schema.parametrize()
# Derandomized: CI sees the same cases every run; widen max_examples locally to explore.
@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {KEY}"},
        excluded_checks=[positive_data_acceptance],
        additional_checks=[valid_data_is_refused_only_for_the_clock],
    )
