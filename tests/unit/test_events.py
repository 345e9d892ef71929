from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from pydantic import TypeAdapter, ValidationError

from rapport.common.events import (
    EVENT_TYPES,
    ConsentEvent,
    EventIn,
    ExposureEvent,
    ItemEvent,
    SearchEvent,
    dump_event,
    encode_for_topic,
    parse_event,
)
from rapport.common.schemas import render_event_json_schema
from rapport.common.vectors import MessageVector

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schemas" / "event.v1.json"
INGEST_README = REPO / "services" / "ingest" / "README.md"


def event(**fields: Any) -> dict[str, Any]:
    """An event as on the topic, server fields included."""
    return {
        "event_id": str(uuid4()),
        "user_id": "u-1",
        "occurred_at": "2026-11-23T10:00:00Z",
        "received_at": "2026-11-23T10:00:01Z",
        "tenant": "acme",
        **fields,
    }


SUBMIT = TypeAdapter(EventIn)


def error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[Any, ...]]:
    return [tuple(e["loc"]) for e in exc.value.errors()]


def test_committed_schema_matches_the_code() -> None:
    assert SCHEMA_FILE.read_text() == render_event_json_schema(), (
        "schemas/event.v1.json is stale: run `.venv/bin/rapport-schema > schemas/event.v1.json`"
    )


def test_schema_lists_every_event_type() -> None:
    schema = json.loads(render_event_json_schema())
    assert set(schema["discriminator"]["mapping"]) == set(EVENT_TYPES)


def test_ingests_readme_describes_every_event_type() -> None:
    rows = [line for line in INGEST_README.read_text().splitlines() if line.startswith("|")]
    first_cells = [row.split("|")[1] for row in rows]
    described = {name for cell in first_cells for name in re.findall(r"`([a-z_]+)`", cell)}
    assert sorted(set(EVENT_TYPES) - described) == []


def test_round_trip_through_kafka_bytes() -> None:
    original = parse_event(event(type="purchase", item_id="m-50", value=12.5))
    assert isinstance(original, ItemEvent)
    assert parse_event(dump_event(original)) == original


def test_each_type_requires_its_own_field() -> None:
    required = {
        "item_view": "item_id",
        "purchase": "item_id",
        "search": "query",
        "chat_message": "text",
        "feedback": "rating",
        "preference": "attributes",
        "consent": "attributes",
        "exposure": "attributes",
    }
    for type_, field in required.items():
        with pytest.raises(ValidationError) as exc:
            parse_event(event(type=type_))
        assert (type_, field) in error_locs(exc), type_


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"type": "page_view", "colour": "red"}, "colour"),
        ({"type": "item_view", "item_id": 5}, "item_id"),
        ({"type": "search", "query": "x" * 513}, "query"),
        ({"type": "feedback", "rating": 9}, "rating"),
        ({"type": "page_view", "event_id": "not-a-uuid"}, "event_id"),
        ({"type": "page_view", "value": float("nan")}, "value"),
        ({"type": "page_view", "user_id": "has space"}, "user_id"),
        ({"type": "page_view", "attributes": {f"k{i}": i for i in range(33)}}, "attributes"),
    ],
)
def test_bad_values_are_named(fields: dict[str, Any], bad_field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_event(event(**fields))
    assert any(bad_field in loc for loc in error_locs(exc))


def test_a_topic_event_carries_the_server_fields() -> None:
    for field in ("event_id", "received_at", "tenant"):
        incomplete = event(type="page_view")
        del incomplete[field]
        with pytest.raises(ValidationError) as exc:
            parse_event(incomplete)
        assert ("page_view", field) in error_locs(exc)


def test_clients_cannot_send_server_fields() -> None:
    submitted = {"type": "page_view", "user_id": "u", "occurred_at": "2026-11-23T10:00:00Z"}
    SUBMIT.validate_python(submitted)
    for field, value in [("tenant", "other"), ("received_at", "2026-11-23T10:00:00Z")]:
        with pytest.raises(ValidationError) as exc:
            SUBMIT.validate_python({**submitted, field: value})
        assert exc.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("client_id", [None, "9b2f4a56-3f7c-4d3e-9a55-0c7f3b1d2e4f"])
def test_encode_for_topic_adds_server_fields(client_id: str | None) -> None:
    submitted = SUBMIT.validate_python(
        {
            "type": "search",
            "user_id": 'u"quoted',
            "query": "boots",
            "occurred_at": "2026-11-23T10:00:00+01:00",
            **({"event_id": client_id} if client_id else {}),
        }
    )
    event_id = uuid4()
    now = datetime(2026, 11, 23, 10, 0, 1, tzinfo=UTC)
    value = encode_for_topic(submitted, event_id=event_id, received_at=now, tenant="acme")
    on_topic = parse_event(value)
    assert isinstance(on_topic, SearchEvent)
    assert (on_topic.event_id, on_topic.received_at, on_topic.tenant) == (event_id, now, "acme")
    assert (on_topic.user_id, on_topic.query) == ('u"quoted', "boots")
    assert on_topic.occurred_at == submitted.occurred_at
    assert value.count(b'"event_id"') == 1
    assert b'"rating"' not in value


def test_unknown_type_is_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_event(event(type="teleport"))
    assert exc.value.errors()[0]["type"] == "union_tag_invalid"


def test_naive_timestamp_is_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_event(event(type="page_view", occurred_at="2026-11-23T10:00:00"))
    assert ("page_view", "occurred_at") in error_locs(exc)


def test_consent_carries_a_boolean() -> None:
    parsed = parse_event(event(type="consent", attributes={"personalization": False}))
    assert isinstance(parsed, ConsentEvent)
    assert parsed.attributes.personalization is False
    with pytest.raises(ValidationError):
        parse_event(event(type="consent", attributes={"personalization": "maybe"}))


def test_an_exposure_names_its_experiment_and_variant() -> None:
    named = {"experiment": "tone-test", "variant": "concise"}
    parsed = parse_event(event(type="exposure", attributes=named))
    assert isinstance(parsed, ExposureEvent)
    assert (parsed.attributes.experiment, parsed.attributes.variant) == ("tone-test", "concise")
    for field in named:
        others = {k: v for k, v in named.items() if k != field}
        for attributes in (others, {**others, field: ""}):
            with pytest.raises(ValidationError) as exc:
                parse_event(event(type="exposure", attributes=attributes))
            assert ("exposure", "attributes", field) in error_locs(exc), attributes
    with pytest.raises(ValidationError):
        parse_event(event(type="exposure", attributes={**named, "colour": "red"}))


def test_a_vectors_dimension_may_be_a_whole_json_number_even_in_a_strict_parse() -> None:
    """JSON (and the published JSON Schema) takes 384.0 as the integer 384; ingest parses
    strictly, and refused it until schemathesis sent one."""
    adapter: TypeAdapter[MessageVector] = TypeAdapter(MessageVector)

    def vector(dimension: str) -> str:
        """The JSON text as a client sends it (a dict would serialize 1.0 as 1.0 anyway)."""
        return f'{{"model": "encoder:1", "data": "AAAA", "dimension": {dimension}}}'

    assert adapter.validate_json(vector("1.0"), strict=True).dimension == 1
    for refused in ("1.5", '"1"', "true", "4097.0"):
        with pytest.raises(ValidationError):
            adapter.validate_json(vector(refused), strict=True)
