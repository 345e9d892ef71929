"""Company knowledge: the record on ``rapport.knowledge.v1``.

A document (a policy, a product page, an FAQ answer) is published once onto the
topic, keyed by ``tenant/doc_id`` so that every version of a document lands on
one partition, in order. The record names its tenant and ``doc_id`` in its
value; the key only orders. ``op: "delete"`` retracts a document. The topic is
compacted, so it keeps the latest record of every document and a replay from
offset 0 rebuilds the index.

Anything may produce onto the topic (ingest's ``POST /v1/knowledge``, a Kafka
Connect source, a CDC feed); the knowledge service validates every record
against these models and dead-letters what does not parse. The JSON Schema in
``schemas/knowledge.v1.json`` is generated from them (``rapport-schema
knowledge``, :mod:`rapport.common.schemas`) and a test keeps the committed file equal to the code.

The search API's models (respond to knowledge) are in :mod:`rapport.common.contracts`
with every other hop's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
)

from rapport.common.identifiers import NO_SPACE_OR_CONTROL, WHITESPACE, Identifier

KNOWLEDGE_SCHEMA_ID = "https://rapport.dev/schemas/knowledge.v1.json"
KNOWLEDGE_SCHEMA_HEADER: tuple[str, bytes] = ("rapport-schema", b"knowledge.v1")

MAX_DOCUMENT_CHARS = 32_768
DocumentText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_DOCUMENT_CHARS)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_SPACE_OR_CONTROL)]
Locale = Annotated[
    str, StringConstraints(max_length=35, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
]
Url = Annotated[str, StringConstraints(max_length=2048, pattern=rf"^https?://[^{WHITESPACE}]+$")]


class KnowledgeDocument(BaseModel):
    """One document as a client submits it; the tenant comes from the API key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    doc_id: Identifier = Field(description="Stable id: a new document with it replaces the old.")
    title: Title
    text: DocumentText = Field(description="Plain text; chunked and embedded by the indexer.")
    tags: list[Tag] | None = Field(None, max_length=32)
    locale: Locale | None = Field(None, description="BCP 47 language tag, e.g. `en` or `fr-CA`.")
    url: Url | None = Field(None, description="Where the full document lives, for citing.")


class _RecordFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: Identifier
    doc_id: Identifier
    published_at: AwareDatetime = Field(
        description="When it was published (ingest's clock); freshness is measured from it."
    )


class KnowledgeUpsert(_RecordFields):
    op: Literal["upsert"]
    title: Title
    text: DocumentText
    tags: list[Tag] | None = Field(None, max_length=32)
    locale: Locale | None = None
    url: Url | None = None


class KnowledgeDelete(_RecordFields):
    op: Literal["delete"]


KnowledgeRecord = Annotated[KnowledgeUpsert | KnowledgeDelete, Field(discriminator="op")]
KNOWLEDGE_RECORD: TypeAdapter[KnowledgeUpsert | KnowledgeDelete] = TypeAdapter(KnowledgeRecord)


def upsert_record(document: KnowledgeDocument, *, tenant: str, published_at: datetime) -> bytes:
    record = KnowledgeUpsert(
        op="upsert", tenant=tenant, published_at=published_at, **document.model_dump()
    )
    return record.model_dump_json(exclude_none=True).encode()


def delete_record(doc_id: str, *, tenant: str, published_at: datetime) -> bytes:
    record = KnowledgeDelete(op="delete", tenant=tenant, doc_id=doc_id, published_at=published_at)
    return record.model_dump_json().encode()
