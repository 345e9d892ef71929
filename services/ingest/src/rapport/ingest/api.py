"""``POST /v1/events``: one event, or a batch ``{"events": [...]}``."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from rapport.common.app import state_dependency
from rapport.common.auth import SCOPE_EVENTS_WRITE, ApiKey, require_scope
from rapport.common.events import EVENT_TYPES, SERVER_FIELDS, EventIn
from rapport.common.problems import FieldError, ProblemError, problem_responses
from rapport.ingest.service import IngestResult, IngestService


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(
        min_length=1,
        description="At most `RAPPORT_INGEST_MAX_EVENTS` (500 by default) events; "
        "all are accepted or none is.",
    )


def _body_kind(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "events" in value else "single"


IngestBody = Annotated[
    Annotated[EventIn, Tag("single")] | Annotated[EventBatch, Tag("batch")],
    Discriminator(_body_kind),
]

Caller = Annotated[ApiKey, Depends(require_scope(SCOPE_EVENTS_WRITE))]
Service = Annotated[IngestService, Depends(state_dependency("ingest", IngestService))]

router = APIRouter(tags=["events"])


REQUEST_SCHEMA = "IngestRequest"
BODY: TypeAdapter[EventIn | EventBatch] = TypeAdapter(IngestBody)


@router.post(
    "/v1/events",
    status_code=202,
    summary="Accept one event or a batch",
    description=(
        "Validates every event against schema v1, then produces them to Kafka "
        "(`rapport.events.v1`, keyed by user id, `acks=all`). `202` means the broker "
        "has acknowledged every event: nothing accepted is lost.\n\n"
        "**All or nothing:** if any event of a batch is invalid, the answer is `422` "
        "naming each bad event by `index` and `field`, and nothing from the request is "
        "produced.\n\n"
        "**Idempotency:** `event_id` is the idempotency key (a UUIDv7 is generated when "
        "absent). An id seen within the dedup window (24 h by default) is answered "
        '`"status": "duplicate"` and not produced again. After a `503`, retry with the '
        "`event_ids` it returns.\n\n"
        "`tenant` and `received_at` are set by the server; sending them is an error."
    ),
    response_model=IngestResult,
    responses=problem_responses(401, 403, 413, 422, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{REQUEST_SCHEMA}"}}
            },
        }
    },
)
async def post_events(request: Request, caller: Caller, service: Service) -> IngestResult:
    # Parsed by hand in strict JSON mode: JSON types must match the schema exactly
    # (no "1.5" for a number, no 0 for a boolean, no epoch seconds for a timestamp).
    raw = await request.body()
    try:
        body = BODY.validate_json(raw, strict=True)
    except ValidationError as exc:
        service.count_rejected(_raw_items(raw))
        raise ProblemError(
            422,
            title="Invalid events",
            detail="Nothing from this request was accepted; see `errors`.",
            slug="validation",
            errors=[_item_error(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()],
        ) from None
    events = body.events if isinstance(body, EventBatch) else [body]
    return await service.ingest(events, caller)


def _raw_items(raw: bytes) -> list[Any]:
    """The submitted items, as far as they parse, for counting what was refused."""
    try:
        body = json.loads(raw)
    except ValueError:
        return [None]
    items = body.get("events") if isinstance(body, dict) and "events" in body else [body]
    return items if isinstance(items, list) else [items]


def _item_error(loc: tuple[int | str, ...], reason: str, kind: str) -> FieldError:
    """Pydantic's location (``body, batch, events, 3, item_view, item_id``) as index and field."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    if parts and parts[0] in ("single", "batch"):
        shape, parts = parts[0], parts[1:]
    else:
        shape = "single"
    index: int | None = 0 if shape == "single" else None
    if (
        shape == "batch"
        and parts[:1] == ["events"]
        and len(parts) > 1
        and isinstance(parts[1], int)
    ):
        index, parts = parts[1], parts[2:]
    if parts and parts[0] in EVENT_TYPES:
        parts = parts[1:]  # the discriminator's tag, not a field
    field = ".".join(str(p) for p in parts) or ("type" if index is not None else "(root)")
    if field in SERVER_FIELDS and kind == "extra_forbidden":
        reason = "set by the server (the tenant comes from the API key); do not send it"
    return FieldError(index=index, field=field, reason=reason)
