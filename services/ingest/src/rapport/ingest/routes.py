"""``POST /v1/events``: one event, or a batch ``{"events": [...]}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import ValidationError

from rapport.common.app import state_dependency
from rapport.common.auth import SCOPE_EVENTS_WRITE, SCOPE_KNOWLEDGE_WRITE, ApiKey, require_scope
from rapport.common.events import NO_SPACE_OR_CONTROL
from rapport.common.problems import ProblemError, problem_responses
from rapport.ingest.domain import (
    BODY,
    KNOWLEDGE_BODY,
    KNOWLEDGE_REQUEST_SCHEMA,
    REQUEST_SCHEMA,
    DeletionResult,
    EventBatch,
    IngestResult,
    KnowledgeBatch,
    KnowledgeResult,
    item_error,
    submitted_items,
)
from rapport.ingest.service import IngestService

Caller = Annotated[ApiKey, Depends(require_scope(SCOPE_EVENTS_WRITE))]
Publisher = Annotated[ApiKey, Depends(require_scope(SCOPE_KNOWLEDGE_WRITE))]
DocId = Annotated[str, Path(min_length=1, max_length=128, pattern=NO_SPACE_OR_CONTROL)]
Service = Annotated[IngestService, Depends(state_dependency("service", IngestService))]

router = APIRouter(tags=["events"])


def refused(title: str, exc: ValidationError) -> ProblemError:
    """422 naming each bad item by index and field: nothing from the request is produced."""
    return ProblemError(
        422,
        title=title,
        detail="Nothing from this request was accepted; see `errors`.",
        slug="validation",
        errors=[item_error(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()],
    )


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
        raise refused("Invalid events", exc) from None
    events = body.events if isinstance(body, EventBatch) else [body]
    return await service.ingest(events, caller)


@router.post(
    "/v1/knowledge",
    status_code=202,
    tags=["knowledge"],
    summary="Publish company knowledge: one document or a batch",
    description=(
        "Produces each document to `rapport.knowledge.v1` (keyed by tenant and `doc_id`, "
        "`acks=all`); `202` means the broker has them all. The knowledge service then "
        "chunks and embeds them; a new version of a `doc_id` replaces the old one "
        "everywhere, within milliseconds.\n\n"
        "**All or nothing:** an invalid document refuses the whole request (`422`, naming "
        "`index` and `field`). Publishing the same version twice is harmless.\n\n"
        "The tenant comes from the API key (scope `knowledge:write`)."
    ),
    response_model=KnowledgeResult,
    responses=problem_responses(401, 403, 413, 422, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{KNOWLEDGE_REQUEST_SCHEMA}"}
                }
            },
        }
    },
)
async def post_knowledge(request: Request, caller: Publisher, service: Service) -> KnowledgeResult:
    raw = await request.body()
    try:
        body = KNOWLEDGE_BODY.validate_json(raw, strict=True)
    except ValidationError as exc:
        service.count_rejected_documents(len(submitted_items(raw, "documents")))
        raise refused("Invalid documents", exc) from None
    documents = body.documents if isinstance(body, KnowledgeBatch) else [body]
    return await service.publish_documents(documents, caller)


@router.delete(
    "/v1/knowledge/{doc_id}",
    status_code=202,
    tags=["knowledge"],
    summary="Retract a document",
    description="Publishes the document's deletion; the knowledge service removes every "
    "chunk of it, and replies stop citing it. Deleting an unknown `doc_id` is accepted.",
    response_model=DeletionResult,
    responses=problem_responses(401, 403, 422, 429, 503),
)
async def delete_knowledge(doc_id: DocId, caller: Publisher, service: Service) -> DeletionResult:
    return await service.delete_document(doc_id, caller)
