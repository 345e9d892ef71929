"""New items at once: the catalogue record's contract, how ingest names a bad item, the
overlay recommend keeps of the topic, and the candidates one ranking sends to Triton."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from rapport.common.catalog import (
    CATALOG_RECORD,
    CatalogDelete,
    CatalogItem,
    CatalogUpsert,
    delete_record,
    upsert_record,
)
from rapport.common.identifiers import record_key
from rapport.ingest.domain import CATALOG_BODY, CatalogBatch, check_catalog_items, item_error
from rapport.recommend.adapters.triton import RankingQuery
from rapport.recommend.domain import CatalogOverlay, NewItem

pytestmark = pytest.mark.unit

NOW = datetime.now(UTC)


# ---- the record on rapport.catalog.v1 -------------------------------------------------


def test_an_item_round_trips_through_its_record() -> None:
    item = CatalogItem(item_id="m-2001", title="A New Western", categories=[" Western ", "Drama"])
    assert item.categories == ["Western", "Drama"]  # stripped, as an event's category is
    record = CATALOG_RECORD.validate_json(upsert_record(item, tenant="acme", published_at=NOW))
    assert isinstance(record, CatalogUpsert)
    assert (record.tenant, record.item_id, record.categories) == ("acme", "m-2001", item.categories)
    gone = CATALOG_RECORD.validate_json(delete_record("m-2001", tenant="acme", published_at=NOW))
    assert isinstance(gone, CatalogDelete)
    assert record_key("acme", "m-2001") == b"acme/m-2001"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"categories": []}, "categories"),
        ({"categories": [f"c{n}" for n in range(17)]}, "categories"),
        ({"categories": ["Drama", "Drama"]}, "categories"),
        ({"categories": ["Drama|Comedy"]}, "categories.0"),
        ({"categories": ["Drama", "  "]}, "categories.1"),
        ({"categories": ["x" * 65]}, "categories.0"),
        ({"categories": ["bell\x07"]}, "categories.0"),
        ({"title": ""}, "title"),
        ({"title": "t" * 257}, "title"),
        ({"item_id": "has space"}, "item_id"),
        ({"tenant": "globex"}, "tenant"),
        ({"price": 9.99}, "price"),
    ],
)
def test_a_bad_item_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    body = {"item_id": "m-1", "title": "T", "categories": ["Drama"]} | change
    with pytest.raises(ValidationError) as refused:
        CATALOG_BODY.validate_json(json.dumps(body), strict=True)
    errors = [item_error(tuple(e["loc"]), e["msg"], e["type"]) for e in refused.value.errors()]
    assert [(e.index, e.field) for e in errors] == [(0, field)]


def test_a_batch_names_the_bad_item_by_index_and_refuses_an_id_twice() -> None:
    good = {"item_id": "m-1", "title": "T", "categories": ["Drama"]}
    with pytest.raises(ValidationError) as refused:
        CATALOG_BODY.validate_json(
            json.dumps({"items": [good, good | {"categories": ["a|b"]}]}), strict=True
        )
    (error,) = [item_error(tuple(e["loc"]), e["msg"], e["type"]) for e in refused.value.errors()]
    assert (error.index, error.field) == (1, "categories.0")
    assert "`|`" in error.reason
    batch = CATALOG_BODY.validate_json(json.dumps({"items": [good, good]}), strict=True)
    assert isinstance(batch, CatalogBatch)
    assert [(e.index, e.field) for e in check_catalog_items(batch.items)] == [(1, "item_id")]


# ---- the overlay: what recommend keeps of the topic -----------------------------------


def upsert(item_id: str, *categories: str, tenant: str = "acme", age_s: int = 0) -> CatalogUpsert:
    return CatalogUpsert(
        op="upsert",
        tenant=tenant,
        item_id=item_id,
        title=f"Title of {item_id}",
        categories=list(categories),
        published_at=NOW - timedelta(seconds=age_s),
    )


def delete(item_id: str, tenant: str = "acme") -> CatalogDelete:
    return CatalogDelete(op="delete", tenant=tenant, item_id=item_id, published_at=NOW)


def choose(
    overlay: CatalogOverlay,
    *,
    tenant: str = "acme",
    affinities: dict[str, float] | None = None,
    category: str | None = None,
    exclude: frozenset[str] = frozenset(),
    limit: int = 10,
) -> list[str]:
    found = overlay.candidates(
        tenant, affinities=affinities or {}, category=category, exclude=exclude, limit=limit
    )
    return [item.item_id for item in found]


def test_the_overlay_keeps_each_tenants_latest_version_of_new_items() -> None:
    overlay = CatalogOverlay(known=["50", "172"])
    for record in (
        upsert("n1", "Western"),
        upsert("n1", "Western", "Drama"),  # a new version replaces the old
        upsert("n2", "Drama", tenant="globex"),
        upsert("50", "Sci-Fi"),  # the model knows it: not an overlay item
        upsert("n3", "Drama"),
        delete("n3"),
        delete("never-published"),
    ):
        overlay.apply(record)
    assert len(overlay) == 2
    assert choose(overlay) == ["n1"]
    assert choose(overlay, tenant="globex") == ["n2"]
    assert choose(overlay, category="Western") == ["n1"]
    assert choose(overlay, category="Drama") == ["n1"]  # the new version's categories
    assert choose(overlay, category="Sci-Fi") == []
    assert overlay.candidates("acme", affinities={}, category=None, exclude=(), limit=1) == [
        NewItem("n1", "Title of n1", ("Western", "Drama"), NOW)
    ]


def test_a_known_item_deleted_by_its_tenant_is_retracted_until_published_again() -> None:
    overlay = CatalogOverlay(known=["50", "172"])
    overlay.apply(delete("50"))
    assert overlay.retracted("acme") == {"50"}
    assert overlay.retracted("globex") == frozenset()
    overlay.apply(upsert("50", "Sci-Fi"))
    assert overlay.retracted("acme") == frozenset()
    assert len(overlay) == 0


def test_candidates_prefer_liked_categories_then_the_newest() -> None:
    overlay = CatalogOverlay()
    for record in (
        upsert("old-western", "Western", age_s=50),
        upsert("western-drama", "Western", "Drama", age_s=40),
        upsert("comedy", "Comedy", age_s=30),
        upsert("drama", "Drama", age_s=20),
        upsert("newest", "Horror", age_s=10),
    ):
        overlay.apply(record)
    assert choose(overlay) == ["newest", "drama", "comedy", "western-drama", "old-western"]
    liked = {"Western": 1.0, "Drama": 0.5, "Comedy": -1.0}
    assert choose(overlay, affinities=liked, limit=4) == [
        "western-drama",  # 1.5: both liked
        "old-western",  # 1.0
        "drama",  # 0.5
        "newest",  # nothing liked (a dislike counts as nothing): the newest first
    ]
    assert choose(overlay, affinities=liked, category="Drama") == ["western-drama", "drama"]
    seen = frozenset({"western-drama", "newest"})
    assert choose(overlay, affinities=liked, exclude=seen, limit=3) == [
        "old-western",
        "drama",
        "comedy",
    ]
    assert choose(overlay, limit=0) == []
    assert choose(overlay, tenant="globex") == []


def test_each_request_looks_at_a_bounded_number_of_items() -> None:
    """The newest `limit` of each liked category and of the pool: an older liked item
    beyond them is not found, whatever the overlay holds."""
    overlay = CatalogOverlay()
    overlay.apply(upsert("oldest-western", "Western", age_s=1000))
    for n in range(200):
        overlay.apply(upsert(f"western-{n}", "Western", age_s=900 - n))
    chosen = choose(overlay, affinities={"Western": 1.0}, limit=5)
    assert chosen == [f"western-{n}" for n in range(199, 194, -1)]


# ---- what a ranking sends to Triton ---------------------------------------------------


def test_a_ranking_sends_the_new_items_only_when_there_are_some() -> None:
    plain = RankingQuery(
        history=[], weights=[], affinities={"Drama": 2.0}, exclude=[], categories=[], k=5
    )
    assert "NEW_ITEM_IDS" not in {tensor.name() for tensor in plain.inputs()}
    query = RankingQuery(
        history=[],
        weights=[],
        affinities={"Drama": 2.0},
        exclude=[],
        categories=[],
        k=5,
        new_items=[NewItem("n1", "New western", ("Western", "Drama"), NOW)],
    )
    sent = {tensor.name(): tensor for tensor in query.inputs()}
    assert {"NEW_ITEM_IDS", "NEW_ITEM_TITLES", "NEW_ITEM_CATEGORIES"} <= set(sent)
    assert sent["NEW_ITEM_CATEGORIES"].shape() == [1]
    assert sent["NEW_ITEM_CATEGORIES"].datatype() == "BYTES"
