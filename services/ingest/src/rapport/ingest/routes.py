"""``POST /v1/events`` (one event, or a batch ``{"events": [...]}``), the knowledge
routes and the catalogue routes.

``POST /v1/events`` is served by :class:`EventsHotPath`, ahead of FastAPI's middleware
and router: for a single-event request, those layers cost about as much CPU as
validating, deduplicating and producing the event (a request through them costs about
twice as much, measured in process).
The FastAPI route below stays its contract (OpenAPI) and serves it when the hot path
is off (``RAPPORT_INGEST_EVENTS_HOT_PATH=false``); both run :func:`accept_events`.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response
from opentelemetry import propagate, trace
from pydantic import ValidationError
from starlette.requests import HTTPConnection
from starlette.responses import Response as StarletteResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from rapport.common.app import json_body, link, state_dependency
from rapport.common.auth import (
    SCOPE_CATALOG_WRITE,
    SCOPE_EVENTS_WRITE,
    SCOPE_KNOWLEDGE_WRITE,
    ApiKey,
    authenticate,
    bearer_credentials,
    require_scope,
)
from rapport.common.identifiers import NO_SPACE_OR_CONTROL
from rapport.common.metrics import Metrics, trace_exemplar
from rapport.common.problems import (
    ProblemError,
    problem_error_response,
    problem_responses,
    unexpected_error_response,
)
from rapport.ingest.body_limit import body_too_large
from rapport.ingest.domain import (
    BODY,
    CATALOG_BODY,
    CATALOG_REQUEST_SCHEMA,
    KNOWLEDGE_BODY,
    KNOWLEDGE_REQUEST_SCHEMA,
    REQUEST_SCHEMA,
    CatalogBatch,
    CatalogResult,
    DeletionResult,
    EventBatch,
    IngestResult,
    ItemDeletionResult,
    KnowledgeBatch,
    KnowledgeResult,
    item_error,
    submitted_items,
)
from rapport.ingest.service import IngestService

Caller = Annotated[ApiKey, Depends(require_scope(SCOPE_EVENTS_WRITE))]
Publisher = Annotated[ApiKey, Depends(require_scope(SCOPE_KNOWLEDGE_WRITE))]
Cataloguer = Annotated[ApiKey, Depends(require_scope(SCOPE_CATALOG_WRITE))]
DocId = Annotated[str, Path(min_length=1, max_length=128, pattern=NO_SPACE_OR_CONTROL)]
ItemId = Annotated[str, Path(min_length=1, max_length=128, pattern=NO_SPACE_OR_CONTROL)]
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
    openapi_extra=json_body(REQUEST_SCHEMA),
)
async def post_events(request: Request, caller: Caller, service: Service) -> Response:
    result = await accept_events(await request.body(), caller, service)
    # Serialized here, once: through response_model, FastAPI would validate it again first.
    return Response(result, status_code=202, media_type="application/json")


async def accept_events(raw: bytes, caller: ApiKey, service: IngestService) -> bytes:
    """Validate, deduplicate and produce a request's events; the 202 body."""
    # Parsed by hand in strict JSON mode: JSON types must match the schema exactly
    # (no "1.5" for a number, no 0 for a boolean, no epoch seconds for a timestamp).
    try:
        body = BODY.validate_json(raw, strict=True)
    except ValidationError as exc:
        service.count_rejected(submitted_items(raw))
        raise refused("Invalid events", exc) from None
    events = body.events if isinstance(body, EventBatch) else [body]
    result = await service.ingest(events, caller)
    return result.model_dump_json().encode()


class EventsHotPath:
    """ASGI middleware serving ``POST /v1/events`` itself; everything else passes through.

    It does what the layers it skips did for this route, no more: the body-size cap,
    the API key, a SERVER span continuing the caller's W3C context, the RED metrics
    under the route's template, and problem+json for every error (the same documents
    the exception handlers write).
    """

    PATH = "/v1/events"

    def __init__(self, app: ASGIApp, *, fastapi: FastAPI, max_bytes: int) -> None:
        self.app = app
        self.fastapi = fastapi  # its state holds the key store and the service
        self.max_bytes = max_bytes
        self.metrics: Metrics = fastapi.state.metrics
        self.tracer = trace.get_tracer("rapport.ingest")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        connection = HTTPConnection(scope)
        with self.tracer.start_as_current_span(
            f"POST {self.PATH}",
            context=propagate.extract(connection.headers),
            kind=trace.SpanKind.SERVER,
            # The names the ASGI instrumentation writes for the other routes.
            attributes={"http.method": "POST", "http.route": self.PATH, "http.target": self.PATH},
        ) as span:
            response = await self._respond(connection, receive)
            span.set_attribute("http.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(trace.StatusCode.ERROR)
            await response(scope, receive, send)
            status = str(response.status_code)
            self.metrics.http_requests.labels("POST", self.PATH, status).inc()
            self.metrics.http_request_duration.labels("POST", self.PATH).observe(
                time.perf_counter() - started, exemplar=trace_exemplar()
            )

    async def _respond(self, connection: HTTPConnection, receive: Receive) -> StarletteResponse:
        state = self.fastapi.state
        try:
            credentials = await bearer_credentials(connection)
            caller = authenticate(state.api_keys, credentials, SCOPE_EVENTS_WRITE)
            raw = await self._body(connection.headers.get("content-length", ""), receive)
            result = await accept_events(raw, caller, state.service)
        except ProblemError as problem:
            return problem_error_response(None, problem, instance=self.PATH)
        except Exception as exc:  # as the app's own handler: logged, a 500 problem
            return unexpected_error_response(None, exc, instance=self.PATH)
        return StarletteResponse(result, status_code=202, media_type="application/json")

    async def _body(self, length: str, receive: Receive) -> bytes:
        too_large = ProblemError(413, detail=body_too_large(self.max_bytes))
        if length.isdigit() and int(length) > self.max_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ProblemError(400, detail="The client disconnected before the body ended.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


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
        "`index` and `field`), and so does a `doc_id` twice in one batch. Publishing the "
        "same version twice is harmless.\n\n"
        "The tenant comes from the API key (scope `knowledge:write`)."
    ),
    response_model=KnowledgeResult,
    responses={
        202: {
            "links": {
                "RetractDocument": link(
                    "DELETE",
                    "/v1/knowledge/{doc_id}",
                    "Retract the first document.",
                    doc_id="$response.body#/documents/0/doc_id",
                )
            }
        },
        **problem_responses(401, 403, 413, 422, 429, 503),
    },
    openapi_extra=json_body(KNOWLEDGE_REQUEST_SCHEMA),
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
# An id may hold a `/`, sent as %2F, which the server decodes before routing: this route
# takes the rest of the path (the id is the last segment). Not the only route, because
# `:path` matches no newline, which the one above refuses with a 422 naming the field.
@router.delete("/v1/knowledge/{doc_id:path}", status_code=202, include_in_schema=False)
async def delete_knowledge(doc_id: DocId, caller: Publisher, service: Service) -> DeletionResult:
    return await service.delete_document(doc_id, caller)


@router.post(
    "/v1/catalog",
    status_code=202,
    tags=["catalog"],
    summary="Publish catalogue items: one item or a batch",
    description=(
        "Produces each item (`item_id`, `title`, `categories`) to `rapport.catalog.v1` "
        "(keyed by tenant and `item_id`, `acks=all`); `202` means the broker has them all. "
        "recommend reads the topic into every replica: an item its model was not trained on "
        "is recommendable within a second, ranked by the popularity of its categories and "
        "the user's affinity for them, without a retrain. A new version of an `item_id` "
        "replaces the old one.\n\n"
        "**All or nothing:** an invalid item refuses the whole request (`422`, naming "
        "`index` and `field`), and so does an `item_id` twice in one batch. Publishing the "
        "same version twice is harmless.\n\n"
        "The tenant comes from the API key (scope `catalog:write`)."
    ),
    response_model=CatalogResult,
    responses={
        202: {
            "links": {
                "RetractItem": link(
                    "DELETE",
                    "/v1/catalog/{item_id}",
                    "Retract the first item.",
                    item_id="$response.body#/items/0/item_id",
                )
            }
        },
        **problem_responses(401, 403, 413, 422, 429, 503),
    },
    openapi_extra=json_body(CATALOG_REQUEST_SCHEMA),
)
async def post_catalog(request: Request, caller: Cataloguer, service: Service) -> CatalogResult:
    raw = await request.body()
    try:
        body = CATALOG_BODY.validate_json(raw, strict=True)
    except ValidationError as exc:
        service.count_rejected_catalog_items(len(submitted_items(raw, "items")))
        raise refused("Invalid catalogue items", exc) from None
    items = body.items if isinstance(body, CatalogBatch) else [body]
    return await service.publish_catalog_items(items, caller)


@router.delete(
    "/v1/catalog/{item_id}",
    status_code=202,
    tags=["catalog"],
    summary="Retract a catalogue item",
    description="Publishes the item's deletion; recommend stops offering it within a "
    "second, whether it came from the catalogue or the model was trained on it. "
    "Deleting an unknown `item_id` is accepted.",
    response_model=ItemDeletionResult,
    responses=problem_responses(401, 403, 422, 429, 503),
)
@router.delete("/v1/catalog/{item_id:path}", status_code=202, include_in_schema=False)
async def delete_catalog_item(
    item_id: ItemId, caller: Cataloguer, service: Service
) -> ItemDeletionResult:
    return await service.delete_catalog_item(item_id, caller)
