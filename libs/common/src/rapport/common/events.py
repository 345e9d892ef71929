"""Event schema v1: the contract on ``rapport.events.v1``.

One discriminated union over ``type``; each variant requires the fields its
type needs, so a validation error names the missing field. The JSON Schema in
``schemas/event.v1.json`` is generated from these models (``rapport-schema``)
and a test keeps the committed file equal to the code.

``event_id`` is the client's idempotency key; ingest generates a UUIDv7 when it
is absent. ``received_at`` is set by ingest; clients do not send it. Both are
present on every record on the topic.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
)

SCHEMA_VERSION = "v1"
SCHEMA_ID = "https://rapport.dev/schemas/event.v1.json"

EventType = Literal[
    "page_view",
    "item_view",
    "click",
    "add_to_cart",
    "purchase",
    "search",
    "chat_message",
    "feedback",
    "preference",
    "consent",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

# Identifiers: printable, no whitespace, bounded.
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
Category = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Source = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\s]+$")]
Query = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
AttributeKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
AttributeValue = (
    Annotated[str, StringConstraints(max_length=256)]
    | bool
    | int
    | Annotated[float, Field(allow_inf_nan=False)]
)
Attributes = Annotated[dict[AttributeKey, AttributeValue], Field(max_length=32)]
Rating = Annotated[float, Field(ge=1, le=5, allow_inf_nan=False)]
Value = Annotated[float, Field(ge=-1e12, le=1e12, allow_inf_nan=False)]


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: UUID | None = Field(
        None, description="Client idempotency key; ingest generates a UUIDv7 when absent."
    )
    user_id: Identifier
    session_id: Identifier | None = None
    occurred_at: AwareDatetime = Field(description="Client time, RFC 3339 with an offset.")
    received_at: AwareDatetime | None = Field(
        None, description="Server time, set by ingest; clients do not send it."
    )
    source: Source | None = Field(None, description="Which system sent the event (web, app, crm).")
    item_id: Identifier | None = None
    category: Category | None = None
    value: Value | None = Field(None, description="Monetary or numeric value, e.g. order total.")
    query: Query | None = None
    text: Text | None = None
    rating: Rating | None = Field(None, description="Explicit feedback on a 1-5 scale.")
    attributes: Attributes | None = None


class PageViewEvent(_EventBase):
    type: Literal["page_view"]


class ItemEvent(_EventBase):
    """An interaction with one catalogue item."""

    type: Literal["item_view", "click", "add_to_cart", "purchase"]
    item_id: Identifier


class SearchEvent(_EventBase):
    type: Literal["search"]
    query: Query


class ChatMessageEvent(_EventBase):
    type: Literal["chat_message"]
    text: Text


class FeedbackEvent(_EventBase):
    type: Literal["feedback"]
    rating: Rating


class PreferenceEvent(_EventBase):
    """Explicit preferences, e.g. ``{"language": "fr"}`` or a liked category."""

    type: Literal["preference"]
    attributes: Attributes


class ConsentAttributes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    personalization: bool


class ConsentEvent(_EventBase):
    type: Literal["consent"]
    attributes: ConsentAttributes  # type: ignore[assignment]


Event = Annotated[
    PageViewEvent
    | ItemEvent
    | SearchEvent
    | ChatMessageEvent
    | FeedbackEvent
    | PreferenceEvent
    | ConsentEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: bytes | str | dict[str, Any]) -> Event:
    """Validate one event from JSON bytes, a JSON string or a dict."""
    if isinstance(data, dict):
        return EVENT_ADAPTER.validate_python(data)
    return EVENT_ADAPTER.validate_json(data)


def dump_event(event: Event) -> bytes:
    """Compact JSON as written to Kafka; unset optional fields are left out."""
    return event.model_dump_json(exclude_none=True).encode()


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema committed as ``schemas/event.v1.json``."""
    schema = EVENT_ADAPTER.json_schema(ref_template="#/$defs/{model}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Rapport event v1",
        **schema,
    }


def render_event_json_schema() -> str:
    return json.dumps(event_json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    """``rapport-schema``: print the event JSON Schema (redirect it into schemas/)."""
    print(render_event_json_schema(), end="")
