"""``POST /v1/events``: one event, or a batch ``{"events": [...]}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from rapport.common.app import state_dependency
from rapport.common.auth import SCOPE_EVENTS_WRITE, ApiKey, require_scope
from rapport.common.problems import ProblemError, problem_responses
from rapport.ingest.domain import (
    BODY,
    REQUEST_SCHEMA,
    EventBatch,
    IngestResult,
    item_error,
    submitted_items,
)
from rapport.ingest.service import IngestService

Caller = Annotated[ApiKey, Depends(require_scope(SCOPE_EVENTS_WRITE))]
Service = Annotated[IngestService, Depends(state_dependency("service", IngestService))]

router = APIRouter(tags=["events"])


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
        service.count_rejected(submitted_items(raw))
        raise ProblemError(
            422,
            title="Invalid events",
            detail="Nothing from this request was accepted; see `errors`.",
            slug="validation",
            errors=[item_error(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()],
        ) from None
    events = body.events if isinstance(body, EventBatch) else [body]
    return await service.ingest(events, caller)
