"""The item catalogue: the record on ``rapport.catalog.v1``.

An item (a film, a product) is published onto the topic when it is new or changes,
keyed by ``tenant/item_id`` so that every version of an item lands on one partition,
in order. The record names its tenant and ``item_id`` in its value; the key only
orders. ``op: "delete"`` retracts an item. The topic is compacted, so it keeps the
latest record of every item and a replay from offset 0 rebuilds the catalogue.

recommend reads the whole topic into every replica (an overlay on the catalogue its
model was trained on), so an item is recommendable the moment its record is read,
without a retrain. Anything may produce onto the topic (ingest's ``POST /v1/catalog``,
a Kafka Connect source, a CDC feed); recommend validates every record against these
models and counts and skips what does not parse. The JSON Schema in
``schemas/catalog.v1.json`` is generated from them (``rapport-schema catalog``,
:mod:`rapport.common.schemas`) and a test keeps the committed file equal to the code.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
)

from rapport.common.identifiers import WHITESPACE, Identifier

CATALOG_SCHEMA_ID = "https://rapport.dev/schemas/catalog.v1.json"
CATALOG_SCHEMA_HEADER: tuple[str, bytes] = ("rapport-schema", b"catalog.v1")

MAX_CATEGORIES = 16
# `|` joins an item's categories on the way to the model (models/README.md), so a
# category cannot hold one; stripped like an event's category, so affinities built
# from events (`Drama`) match an item's (` Drama `).
CATEGORY_SEPARATOR = "|"
_CATEGORY_CHAR = r"[^|\u0000-\u001f\u007f]"
_CATEGORY_MARK = rf"[^|\u0000-\u001f\u007f{WHITESPACE}]"  # not blank: JSON Schema does not strip
_CATEGORY_PATTERN = rf"^{_CATEGORY_CHAR}*{_CATEGORY_MARK}{_CATEGORY_CHAR}*$"


def _plain(category: str) -> str:
    # The pattern as a sentence: pydantic's own message would quote the regex.
    if not re.match(_CATEGORY_PATTERN, category):
        raise ValueError("no `|` and no control characters")
    return category


Category = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, strip_whitespace=True),
    AfterValidator(_plain),
    Field(json_schema_extra={"pattern": _CATEGORY_PATTERN}),
]
ItemTitle = Annotated[str, StringConstraints(min_length=1, max_length=256)]


def _each_once(categories: list[str]) -> list[str]:
    if len(set(categories)) != len(categories):
        raise ValueError("each category at most once")
    return categories


Categories = Annotated[
    list[Category],
    Field(min_length=1, max_length=MAX_CATEGORIES, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_each_once),
]


class CatalogItem(BaseModel):
    """One item as a client submits it; the tenant comes from the API key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: Identifier = Field(
        description="Stable id, as events name it: a new version with it replaces the old."
    )
    title: ItemTitle
    categories: Categories = Field(
        description="What the item is (genres, departments): affinities rank it by these."
    )


class _RecordFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: Identifier
    item_id: Identifier
    published_at: AwareDatetime = Field(
        description="When it was published (ingest's clock); the newest items are preferred."
    )


class CatalogUpsert(_RecordFields):
    op: Literal["upsert"]
    title: ItemTitle
    categories: Categories


class CatalogDelete(_RecordFields):
    op: Literal["delete"]


CatalogRecord = Annotated[CatalogUpsert | CatalogDelete, Field(discriminator="op")]
CATALOG_RECORD: TypeAdapter[CatalogUpsert | CatalogDelete] = TypeAdapter(CatalogRecord)


def upsert_record(item: CatalogItem, *, tenant: str, published_at: datetime) -> bytes:
    record = CatalogUpsert(
        op="upsert", tenant=tenant, published_at=published_at, **item.model_dump()
    )
    return record.model_dump_json().encode()


def delete_record(item_id: str, *, tenant: str, published_at: datetime) -> bytes:
    record = CatalogDelete(op="delete", tenant=tenant, item_id=item_id, published_at=published_at)
    return record.model_dump_json().encode()
