"""Retraining's pure logic: positives and exclusions, the time split, the gate, the bias
audit, the subset export and the outcome metric."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rapport.common.events import parse_event
from rapport.models import bias, export, movielens, ranking, retrain
from rapport.models.interactions import (
    CatalogEntry,
    CatalogLog,
    EventLog,
    Exclusions,
    Interaction,
    add_event,
    apply_exclusions,
    positive,
)
from rapport.models.runtime.item_runtime import ItemScorer

pytestmark = pytest.mark.unit

NOW = datetime.now(UTC)
TENANT = "acme"


def event(user: str, type_: str, minutes_ago: float, **fields: Any) -> Any:
    at = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    return parse_event(
        {
            "event_id": "0190c7a0-0000-7000-8000-000000000001",
            "tenant": fields.pop("tenant", TENANT),
            "type": type_,
            "user_id": user,
            "occurred_at": at,
            "received_at": at,
            **fields,
        }
    )


def row(user: str, item: str, at: float) -> Interaction:
    return Interaction(user_id=user, item_id=item, at=at, kind="item_view", received_at=at)


# ---- positives and who is left out ----------------------------------------------------------


def test_item_events_and_liked_feedback_are_the_positives() -> None:
    for type_ in ("item_view", "click", "add_to_cart", "purchase"):
        assert positive(event("u", type_, 1, item_id="50")) is not None
    assert positive(event("u", "feedback", 1, item_id="50", rating=4)) is not None
    assert positive(event("u", "feedback", 1, item_id="50", rating=3)) is None
    assert positive(event("u", "feedback", 1, rating=5)) is None  # names no item
    assert positive(event("u", "page_view", 1)) is None
    assert positive(event("u", "search", 1, query="horror")) is None


def test_erased_and_opted_out_users_are_left_out() -> None:
    found = EventLog()
    for user in ("kept", "erased", "opted-out", "said-no"):
        add_event(found, event(user, "item_view", 30, item_id="1", category="Drama"), TENANT)
    add_event(found, event("other", "item_view", 30, item_id="1", tenant="beta"), TENANT)
    add_event(found, event("erased", "item_view", 1, item_id="2"), TENANT)  # after the erasure
    consent = {"personalization": False}
    add_event(found, event("said-no", "consent", 5, attributes=consent), TENANT)
    exclusions = Exclusions(
        erased_at={"erased": (NOW - timedelta(minutes=10)).timestamp()},
        opted_out=frozenset({"opted-out"}),
    )
    kept = apply_exclusions(found, exclusions)
    assert [(r.user_id, r.item_id) for r in kept.rows] == [("kept", "1"), ("erased", "2")]
    assert kept.categories == {"1": "Drama"}
    assert kept.counts["dropped_erased"] == 1  # the event received before the marker
    assert kept.counts["dropped_opted_out"] == 2  # the profile's consent, and the event's
    assert kept.counts["other_tenants"] == 1


def test_a_later_consent_event_decides() -> None:
    found = EventLog()
    add_event(found, event("u", "consent", 20, attributes={"personalization": False}), TENANT)
    add_event(found, event("u", "consent", 10, attributes={"personalization": True}), TENANT)
    add_event(found, event("u", "item_view", 5, item_id="1"), TENANT)
    kept = apply_exclusions(found, Exclusions(erased_at={}, opted_out=frozenset()))
    assert [r.user_id for r in kept.rows] == ["u"]


# ---- the time split ---------------------------------------------------------------------------


def test_the_newest_share_is_held_out() -> None:
    rows = [row("a", str(i), float(i)) for i in range(10)]
    split = retrain.time_split(rows, fraction=0.2)
    assert split.cutoff == 8.0
    assert [r.item_id for r in split.holdout] == ["8", "9"]
    assert len(split.train) == 8
    tied = [*rows, row("b", "x", 8.0)]  # a tie at the cutoff goes with it
    assert len(retrain.time_split(tied, fraction=0.2).holdout) == 3
    days = [row("a", str(i), i * 86400.0) for i in range(10)]
    assert [r.item_id for r in retrain.time_split(days, days=2).holdout] == ["7", "8", "9"]
    with pytest.raises(retrain.NotEnoughData):
        retrain.time_split([])


def test_evaluated_users_have_history_and_new_items() -> None:
    rows = [
        row("a", "1", 1),
        row("a", "2", 2),
        row("a", "1", 9),  # seen before the cutoff: not relevant
        row("a", "3", 9),
        row("b", "1", 1),
        row("b", "1", 9),  # nothing new
        row("c", "4", 9),  # no history: cold
    ]
    holdout = retrain.holdout_users(retrain.time_split(rows, fraction=0.4))
    assert holdout.users == ["a"]
    assert holdout.history == [["1", "2"]]
    assert holdout.relevant == [{"3"}]
    assert holdout.cold_users == 1


# ---- the gate ---------------------------------------------------------------------------------


SERVED = retrain.GateFigures(ndcg=0.20, largest_gap=0.10, coverage=0.30)
MARGINS = retrain.Margins(ndcg=0.005, gap=0.02, coverage=0.02)


def test_the_gate_passes_a_better_candidate_within_the_margins() -> None:
    candidate = retrain.GateFigures(ndcg=0.21, largest_gap=0.115, coverage=0.285)
    decision = retrain.gate(candidate, SERVED, MARGINS)
    assert decision.export
    assert decision.refusals == ()
    assert decision.deltas["ndcg@10"] == pytest.approx(0.01)
    assert decision.deltas["coverage"] == pytest.approx(-0.015)


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (retrain.GateFigures(0.204, 0.10, 0.30), "NDCG@10 0.2040 is not at least the served"),
        (retrain.GateFigures(0.25, 0.13, 0.30), "largest NDCG@10 gap between user groups 0.1300"),
        (retrain.GateFigures(0.25, 0.10, 0.27), "catalogue coverage 0.2700 is below the served"),
    ],
)
def test_the_gate_refuses_with_a_reason(candidate: retrain.GateFigures, reason: str) -> None:
    decision = retrain.gate(candidate, SERVED, MARGINS)
    assert not decision.export
    assert len(decision.refusals) == 1
    assert reason in decision.refusals[0]


def test_every_failed_condition_is_named() -> None:
    decision = retrain.gate(retrain.GateFigures(0.1, 0.5, 0.0), SERVED, MARGINS)
    assert len(decision.refusals) == 3


# ---- the audit ---------------------------------------------------------------------------------


def test_activity_tertiles_and_gaps_of_large_groups_only() -> None:
    labels, (low, high) = bias.activity_groups([1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert (low, high) == (3, 6)
    assert labels == ["light"] * 3 + ["medium"] * 3 + ["heavy"] * 3
    groups = {
        "a": bias.GroupQuality(users=50, ndcg=0.3, recall=0.1),
        "b": bias.GroupQuality(users=50, ndcg=0.2, recall=0.1),
        "tiny": bias.GroupQuality(users=2, ndcg=0.9, recall=0.9),  # noise: not in the gap
    }
    assert bias.gap(groups) == pytest.approx(0.1)
    assert bias.gap({"a": groups["a"]}) == 0.0


def test_an_audit_on_a_hand_example() -> None:
    found = bias.audit(
        [["1", "2"], ["1", "3"]],
        [{"1"}, {"3"}],
        activity=[1, 5],
        segments=["x", "x"],
        catalogue_size=4,
        interactions=Counter({"1": 6, "2": 2, "3": 1, "4": 1}),
        k=2,
    )
    assert found.coverage == pytest.approx(3 / 4)
    assert found.long_tail_share == pytest.approx(2 / 4)  # head: item 1 (6 of 10)
    assert found.interactions_long_tail_share == pytest.approx(0.4)
    assert not found.popularity_biased
    assert found.by_segment["x"].users == 2
    assert found.ndcg == pytest.approx((1.0 + 1 / np.log2(3)) / 2)


def test_the_penalty_is_calibrated_per_user_and_off_at_zero() -> None:
    scores = np.array([[1.0, 0.9, 0.0], [10.0, 9.0, 0.0]], np.float32)
    counts = np.array([100, 0, 0])
    assert bias.popularity_penalty(scores, counts, 0.0) is scores
    penalised = bias.popularity_penalty(scores, counts, 1.0)
    assert penalised.argmax(axis=1).tolist() == [1, 1]  # both users: the same share of spread
    assert penalised[:, 1:].tolist() == scores[:, 1:].tolist()  # unpopular items untouched


# ---- a deliberately skewed candidate ------------------------------------------------------


@pytest.fixture(scope="module")
def movielens_split() -> tuple[movielens.MovieLens, retrain.TimeSplit]:
    data = movielens.load()
    rows = [
        row(data.user_ids[u], data.item_ids[i], float(t))
        for u, i, t in zip(data.users, data.items, data.timestamps, strict=True)
    ]
    return data, retrain.time_split(rows, fraction=0.2)


def test_a_popularity_only_candidate_is_refused(
    movielens_split: tuple[movielens.MovieLens, retrain.TimeSplit],
) -> None:
    data, split = movielens_split
    catalogue = retrain.Catalogue(
        data.item_ids,
        data.titles,
        [tuple(data.genre_names[c] for c in np.flatnonzero(g)) for g in data.genres],
    )
    matrix, users = retrain.training_matrix(catalogue, split.train, None)
    arrays = ranking.build_artefacts(retrain.as_movielens(catalogue, matrix, users), matrix, 300.0)
    served = ItemScorer(arrays)
    skewed = ItemScorer({**arrays, "similarity": np.zeros_like(arrays["similarity"])})
    holdout = retrain.holdout_users(split)
    counts = Counter(r.item_id for r in split.train)
    candidate, current = retrain.compare(skewed, served, holdout, counts)
    decision = retrain.gate(candidate.figures(), current.figures(), retrain.Margins())
    assert not decision.export
    assert any("coverage" in reason for reason in decision.refusals)
    # Even were its NDCG@10 forgiven, its exposure refuses it (and its gap, on this split).
    forgiving = retrain.Margins(ndcg=-1.0)
    alone = retrain.gate(candidate.figures(), current.figures(), forgiving)
    assert not alone.export
    assert any(reason.startswith("catalogue coverage") for reason in alone.refusals)
    assert not any(reason.startswith("NDCG") for reason in alone.refusals)
    # everyone gets the most popular items they have not seen: all from the head
    assert candidate.audit.long_tail_share == 0.0
    assert candidate.audit.coverage < current.audit.coverage / 2


# ---- the subset export and the catalogue -----------------------------------------------------


def test_export_items_carries_the_served_versions(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    artefacts = tmp_path / "artefacts"
    artefacts.mkdir()
    (artefacts / "weights.bin").write_bytes(b"x")
    for name, runtime in (
        ("encoder", "encoder_runtime"),
        ("intent_classifier", "intent_runtime"),
        ("sentiment", "sentiment_runtime"),
    ):
        for _ in range(2):  # served: version 2
            export.export_model(repository, export.ModelSource(name, runtime, artefacts))
    items = tmp_path / "items"
    items.mkdir()
    (items / "item_scorer.npz").write_bytes(b"new")
    written = export.export_items(repository, items)
    assert written == {"item_scorer": 1, "reply": 1}
    components = json.loads((repository / "reply" / "1" / "components.json").read_text())
    assert components == {
        "item_scorer": "1",
        "encoder": "2",
        "intent_classifier": "2",
        "sentiment": "2",
    }
    assert (repository / "reply" / "1" / "item_scorer" / "item_scorer.npz").read_bytes() == b"new"
    assert export.versions(repository / "encoder") == [1, 2]  # untouched


def test_posted_items_join_the_catalogue_and_deleted_ones_leave() -> None:
    served = retrain.Catalogue(["1", "2"], ["One", "Two"], [("Drama",), ("Comedy",)])
    posted = CatalogLog(items={"9": CatalogEntry("9", "Nine", ("Horror", "Drama"))}, deleted={"2"})
    merged = retrain.merged_catalogue(
        served, public=None, posted=posted, seen=["1", "7"], seen_categories={"7": "Sci-Fi"}
    )
    assert merged.item_ids == ["1", "9", "7"]
    assert merged.titles == ["One", "Nine", "7"]
    assert merged.categories == [("Drama",), ("Horror", "Drama"), ("Sci-Fi",)]
    assert merged.genre_names() == ["Drama", "Horror", "Sci-Fi"]


# ---- the outcome metric ---------------------------------------------------------------------


def test_the_run_counter_goes_on_across_runs(tmp_path: Path) -> None:
    textfile = tmp_path / "retrain.prom"
    decided = retrain.RetrainResult(
        outcome="kept",
        reason="",
        tenant=TENANT,
        decision=retrain.gate(retrain.GateFigures(0.1, 0.1, 0.3), SERVED, MARGINS),
    )
    for outcome in ("kept", "kept", "exported"):
        retrain.publish_outcome(
            outcome, decided, textfile=textfile, pushgateway=None, tenant=TENANT, now=1.0
        )
    samples = {
        (s.name, s.labels.get("outcome") or s.labels.get("metric")): s.value
        for family in text_string_to_metric_families(textfile.read_text())
        for s in family.samples
    }
    assert samples[("rapport_models_retrain_total", "kept")] == 2
    assert samples[("rapport_models_retrain_total", "exported")] == 1
    assert samples[("rapport_models_retrain_total", "error")] == 0
    assert samples[("rapport_models_retrain_delta", "ndcg_at_10")] == pytest.approx(-0.1)
