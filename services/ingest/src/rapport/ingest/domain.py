"""Pure decisions about a request's events: its shape, what the server's clock refuses,
and how a validation error names the event and field. No I/O here."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from rapport.common.catalog import CatalogItem
from rapport.common.events import EVENT_TYPES, SERVER_FIELDS, EventIn
from rapport.common.knowledge import KnowledgeDocument
from rapport.common.problems import FieldError

REQUEST_SCHEMA = "IngestRequest"
KNOWLEDGE_REQUEST_SCHEMA = "KnowledgeRequest"
CATALOG_REQUEST_SCHEMA = "CatalogRequest"


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(
        min_length=1,
        description="At most `RAPPORT_INGEST_MAX_EVENTS` (500 by default) events; "
        "all are accepted or none is.",
    )


def single_or_batch(single: Any, batch: type[BaseModel], key: str) -> Any:
    """A body that is one item or ``{key: [items]}``, told apart before validation, so an
    error names the fields of the shape that was sent."""

    def kind(value: Any) -> str:
        return "batch" if isinstance(value, dict) and key in value else "single"

    return Annotated[
        Annotated[single, Tag("single")] | Annotated[batch, Tag("batch")], Discriminator(kind)
    ]


BODY: TypeAdapter[EventIn | EventBatch] = TypeAdapter(
    single_or_batch(EventIn, EventBatch, "events")
)


class EventResult(BaseModel):
    index: int
    event_id: UUID
    status: Literal["accepted", "duplicate"]


class IngestResult(BaseModel):
    accepted: int
    duplicates: int
    dedup_checked: bool
    events: list[EventResult]


class KnowledgeBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[KnowledgeDocument] = Field(
        min_length=1,
        description="At most `RAPPORT_INGEST_MAX_DOCUMENTS` (100 by default); all are "
        "accepted or none is.",
    )


KNOWLEDGE_BODY: TypeAdapter[KnowledgeDocument | KnowledgeBatch] = TypeAdapter(
    single_or_batch(KnowledgeDocument, KnowledgeBatch, "documents")
)


class DocumentResult(BaseModel):
    index: int
    doc_id: str
    status: Literal["accepted"]


class KnowledgeResult(BaseModel):
    accepted: int
    documents: list[DocumentResult]


class DeletionResult(BaseModel):
    doc_id: str
    status: Literal["accepted"]


class CatalogBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[CatalogItem] = Field(
        min_length=1,
        description="At most `RAPPORT_INGEST_MAX_CATALOG_ITEMS` (100 by default); all are "
        "accepted or none is.",
    )


CATALOG_BODY: TypeAdapter[CatalogItem | CatalogBatch] = TypeAdapter(
    single_or_batch(CatalogItem, CatalogBatch, "items")
)


class CatalogItemResult(BaseModel):
    index: int
    item_id: str
    status: Literal["accepted"]


class CatalogResult(BaseModel):
    accepted: int
    items: list[CatalogItemResult]


class ItemDeletionResult(BaseModel):
    item_id: str
    status: Literal["accepted"]


def check_documents(documents: Sequence[KnowledgeDocument]) -> list[FieldError]:
    """One request, one version per document: two would race for the same key."""
    return once_per_request([d.doc_id for d in documents], "doc_id")


def check_catalog_items(items: Sequence[CatalogItem]) -> list[FieldError]:
    """One request, one version per item, as for documents."""
    return once_per_request([i.item_id for i in items], "item_id")


def once_per_request(ids: Sequence[str], field: str) -> list[FieldError]:
    first: dict[str, int] = {}
    errors = []
    for index, stable_id in enumerate(ids):
        if stable_id in first:
            errors.append(
                FieldError(
                    index=index,
                    field=field,
                    reason=f"also at index {first[stable_id]}: one version per request",
                )
            )
        first.setdefault(stable_id, index)
    return errors


def check_events(
    events: Sequence[EventIn], *, now: datetime, max_future_skew_s: int
) -> list[FieldError]:
    """What the schema cannot know: the server's clock."""
    latest = now + timedelta(seconds=max_future_skew_s)
    return [
        FieldError(
            index=index,
            field="occurred_at",
            reason=f"more than {max_future_skew_s}s ahead of server time",
        )
        for index, event in enumerate(events)
        if event.occurred_at > latest
    ]


def submitted_items(raw: bytes, batch_field: str = "events") -> list[Any]:
    """The submitted items, as far as they parse, for counting what was refused."""
    try:
        body = json.loads(raw)
    except ValueError:
        return [None]
    items = body.get(batch_field) if isinstance(body, dict) and batch_field in body else [body]
    return items if isinstance(items, list) else [items]


def item_error(loc: tuple[int | str, ...], reason: str, kind: str) -> FieldError:
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
        and parts[:1] in (["events"], ["documents"], ["items"])
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
