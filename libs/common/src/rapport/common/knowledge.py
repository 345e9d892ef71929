"""Company knowledge: the record on ``rapport.knowledge.v1``, the search API, its client.

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
knowledge``) and a test keeps the committed file equal to the code.

The search API crosses one HTTP hop (respond to knowledge; the client is in
:mod:`rapport.common.knowledge_client`) and takes the message's vector
(:class:`~rapport.common.contracts.MessageVector`), the one the encoder
computed once when recommend read the message.
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

from rapport.common.contracts import Contract
from rapport.common.events import NO_SPACE_OR_CONTROL, Identifier, render_json_schema
from rapport.common.vectors import MessageVector

KNOWLEDGE_SCHEMA_ID = "https://rapport.dev/schemas/knowledge.v1.json"
KNOWLEDGE_SCHEMA_HEADER: tuple[str, bytes] = ("rapport-schema", b"knowledge.v1")

MAX_DOCUMENT_CHARS = 32_768
DocumentText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_DOCUMENT_CHARS)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_SPACE_OR_CONTROL)]
Locale = Annotated[
    str, StringConstraints(max_length=35, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
]
Url = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s]+$")]


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


def record_key(tenant: str, doc_id: str) -> bytes:
    """The record key: it only orders a document's versions on one partition."""
    return f"{tenant}/{doc_id}".encode()


def upsert_record(document: KnowledgeDocument, *, tenant: str, published_at: datetime) -> bytes:
    record = KnowledgeUpsert(
        op="upsert", tenant=tenant, published_at=published_at, **document.model_dump()
    )
    return record.model_dump_json(exclude_none=True).encode()


def delete_record(doc_id: str, *, tenant: str, published_at: datetime) -> bytes:
    record = KnowledgeDelete(op="delete", tenant=tenant, doc_id=doc_id, published_at=published_at)
    return record.model_dump_json().encode()


def render_knowledge_json_schema() -> str:
    """``schemas/knowledge.v1.json``."""
    return render_json_schema(
        KNOWLEDGE_RECORD, schema_id=KNOWLEDGE_SCHEMA_ID, title="Rapport knowledge record v1"
    )


# ---- the message vector, and search (respond -> knowledge) ---------------------------


class KnowledgeQuery(Contract):
    model_config = ConfigDict(extra="forbid")

    vector: MessageVector
    k: int = Field(3, ge=1, le=20, description="How many passages to return at most.")
    min_score: float | None = Field(
        None, ge=-1, le=1, description="Leave out passages below this cosine similarity."
    )


class KnowledgeHit(Contract):
    doc_id: str
    title: str
    snippet: str = Field(description="The matching passage (a chunk of the document).")
    score: float = Field(description="Cosine similarity to the message, -1..1.")
    url: str | None = None
    chunk: int = Field(0, description="Which chunk of the document the passage is.")


class KnowledgeResults(Contract):
    hits: list[KnowledgeHit] = Field(default_factory=list)
    encoder: str = Field(description="The encoder the index was built with.")
