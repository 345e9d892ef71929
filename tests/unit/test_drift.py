"""Drift and exposure statistics on known values, the windows, the references file and the
gauges, and recommend's and profile's monitors on hand-made observations."""

from __future__ import annotations

import asyncio
import json
import math
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from rapport.common.contracts import Reason, ReasonKind, Recommendations, RecommendedItem
from rapport.common.drift import (
    EMPTY_BIN_SHARE,
    OTHER,
    Binned,
    ExposureReference,
    Float16Rows,
    IntentReference,
    ItemReference,
    MessageObservation,
    Window,
    bin_counts,
    categorical_drift,
    category_counts,
    coverage,
    decile_edges,
    exposure,
    exposure_gini,
    gini,
    intent_drift,
    js_distance,
    long_tail_share,
    nearest_cosine_distance,
    popular_head,
    psi,
)
from rapport.common.drift_monitor import DriftGauges, ReferenceFile
from rapport.common.events import Event, parse_event
from rapport.models import export, intents, movielens, ranking, references, textdata
from rapport.models.runtime.intent_runtime import IntentModel
from rapport.profile.drift import CategoryDrift
from rapport.recommend.adapters.triton import Intent
from rapport.recommend.drift import DriftMonitor, observation
from rapport.recommend.metrics import RecommendMetrics

pytestmark = pytest.mark.unit


# ---- statistics on known values ---------------------------------------------------------


def test_psi_of_a_known_shift() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert psi([1, 1], [1, 3]) == pytest.approx(expected)  # counts or shares alike
    assert psi([1, 3], [1, 1]) == pytest.approx(expected)  # symmetric
    assert psi([2, 5, 3], [20, 50, 30]) == pytest.approx(0.0)


def test_psi_counts_an_empty_bin_as_the_stated_epsilon() -> None:
    eps = EMPTY_BIN_SHARE
    e = np.array([1.0, eps]) / (1 + eps)
    o = np.array([0.5, 0.5])
    assert psi([10, 0], [5, 5]) == pytest.approx(float(np.sum((o - e) * np.log(o / e))))
    assert math.isfinite(psi([1, 0], [0, 1]))


def test_js_distance_in_bits() -> None:
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert js_distance([3, 1], [6, 2]) == pytest.approx(0.0)
    # m = (0.75, 0.25): KL(p||m) = 0.5 log2(2/3) + 0.5 log2(2), KL(q||m) = log2(4/3)
    divergence = (0.5 * math.log2(2 / 3) + 0.5 + math.log2(4 / 3)) / 2
    assert js_distance([0.5, 0.5], [1, 0]) == pytest.approx(math.sqrt(divergence))
    assert js_distance([1, 1], [0, 0]) == 0.0  # nothing observed: nothing to say


def test_categories_unknown_to_the_reference_are_pooled() -> None:
    counts = category_counts(["a", "b", "a", "z", "y"], ["a", "b", "c"])
    assert counts.tolist() == [2, 1, 0, 2]
    drift = categorical_drift("mix", {"a": 0.5, "b": 0.5}, ["a", "b"] * 50 + [OTHER])
    assert drift.observations == 101
    assert 0 < drift.psi < 0.1


def test_deciles_and_bins() -> None:
    assert bin_counts([0, 1, 1.5, 2, 3], [1, 2]).tolist() == [2, 2, 1]
    binned = Binned.of_sample(np.arange(100.0))
    assert len(binned.edges) == 9
    assert binned.shares == pytest.approx([0.1] * 10)
    assert binned.mean == pytest.approx(49.5)
    assert decile_edges([1.0] * 50 + [2.0] * 50) == [1.0, 1.5, 2.0]  # ties: each edge once


def test_psi_noise_of_an_unshifted_sample_is_about_bins_over_size() -> None:
    """The docstring's reason for count-based windows, on 20 equal bins and N = 1000."""
    rng = np.random.default_rng(7)
    scores = [psi(np.ones(20), rng.multinomial(1000, np.full(20, 0.05))) for _ in range(300)]
    assert np.mean(scores) == pytest.approx(19 / 1000, rel=0.2)


def test_nearest_cosine_distance() -> None:
    centroids = np.array([[1.0, 0.0], [0.0, 2.0]])
    found = nearest_cosine_distance(np.array([[3.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]), centroids)
    assert found.tolist() == pytest.approx([0.0, 1 - math.sqrt(0.5), 1.0])


def test_float16_rows_round_trip() -> None:
    matrix = np.array([[0.5, -0.25, 1.0], [0.1, 0.2, 0.3]], np.float32)
    stored = Float16Rows.model_validate_json(Float16Rows.of(matrix).model_dump_json())
    assert stored.shape == (2, 3)
    np.testing.assert_allclose(stored.array(), matrix, atol=1e-3)


# ---- exposure -----------------------------------------------------------------------------


def test_gini_on_known_values() -> None:
    assert gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 1]) == pytest.approx(0.75)  # (n - 1) / n: all on one of n
    assert gini([4, 1, 3, 2]) == pytest.approx(0.25)  # mean |xi - xj| / (2 mean) = 1.25 / 5
    assert gini([]) == 0.0
    assert gini([0, 0]) == 0.0


def test_exposure_counts_the_never_served_items() -> None:
    assert exposure_gini(["a", "a", "a"], 4) == pytest.approx(0.75)
    assert coverage(["a", "b", "a"], 4) == 0.5
    assert coverage([], 0) == 0.0


def test_popular_head_and_long_tail() -> None:
    counts = {"a": 5, "b": 3, "c": 1, "d": 1}
    assert popular_head(counts, 0.5) == {"a"}
    assert popular_head(counts, 0.6) == {"a", "b"}
    assert popular_head({}, 0.5) == frozenset()
    assert long_tail_share(["a", "b", "c", "c"], {"a"}) == 0.75
    assert long_tail_share([], {"a"}) == 0.0
    found = exposure([["a", "b"], ["a", "c"]], 4, {"a"})
    assert (found.rankings, found.coverage, found.long_tail_share) == (2, 0.75, 0.5)
    assert found.gini == pytest.approx(gini([2, 1, 1, 0]))


# ---- windows and references -----------------------------------------------------------------


def test_window_keeps_the_last_n_and_is_ready_from_its_minimum() -> None:
    window: Window[int] = Window(3)
    for i in range(5):
        window.append(i)
    assert (window.snapshot(), window.ready) == ([2, 3, 4], True)
    window.clear()
    assert (len(window), window.ready) == (0, False)
    early: Window[int] = Window(10, minimum=2)
    early.append(1)
    assert not early.ready
    early.append(2)
    assert early.ready


def intent_reference() -> IntentReference:
    centroids = np.array([[1.0, 0.0], [0.0, 1.0]])
    rng = np.random.default_rng(3)
    near = rng.uniform(0.0, 0.05, 500)
    return IntentReference(
        sample="test",
        observations=500,
        out_of_scope_label="oos",
        intents={"greet": 0.45, "bye": 0.45, "oos": 0.1},
        out_of_scope_rate=0.1,
        top_probability=Binned.of_sample(rng.uniform(0.7, 1.0, 500)),
        centroid_distance=Binned.of_sample(near),
        centroids=Float16Rows.of(centroids),
    )


def messages(rng: np.random.Generator, n: int, *, shifted: bool) -> list[MessageObservation]:
    if shifted:  # one intent, unsure, and vectors between the centroids
        return [
            MessageObservation("bye", False, float(rng.uniform(0.2, 0.5)), np.array([1.0, 1.0]))
            for _ in range(n)
        ]
    found = []
    for intent in rng.choice(["greet", "bye", "oos"], n, p=[0.45, 0.45, 0.1]):
        angle = float(np.arccos(1 - rng.uniform(0.0, 0.05)))
        vector = np.array([np.cos(angle), np.sin(angle)])
        top = float(rng.uniform(0.7, 1.0))
        found.append(MessageObservation(str(intent), intent == "oos", top, vector))
    return found


def test_intent_drift_separates_a_shifted_window_from_an_unshifted_one() -> None:
    reference = intent_reference()
    rng = np.random.default_rng(5)
    calm = {d.signal: d for d in intent_drift(reference, messages(rng, 500, shifted=False))}
    moved = {d.signal: d for d in intent_drift(reference, messages(rng, 500, shifted=True))}
    assert set(calm) == {"intent", "out_of_scope", "top_probability", "centroid_distance"}
    for signal, unshifted in calm.items():
        assert unshifted.psi < 0.1, signal
        assert moved[signal].psi > 0.25, signal
        assert moved[signal].js > unshifted.js
    assert moved["out_of_scope"].value == 0.0
    assert moved["out_of_scope"].reference_value == 0.1
    assert moved["centroid_distance"].value == pytest.approx(1 - math.sqrt(0.5), abs=1e-3)


def test_intent_drift_skips_vectors_of_another_encoder() -> None:
    window = [MessageObservation("greet", False, 0.9, np.ones(3))]
    signals = {d.signal for d in intent_drift(intent_reference(), window)}
    assert "centroid_distance" not in signals


def item_reference(categories: dict[str, float] | None = None) -> ItemReference:
    return ItemReference(
        categories=categories or {"Drama": 0.5, "Comedy": 0.5},
        exposure=ExposureReference(
            rankings=10,
            k=2,
            catalogue_size=4,
            coverage=0.5,
            gini=0.5,
            long_tail_share=0.25,
            head_share=0.5,
            head_items=["a"],
        ),
    )


def write_references(path: Path, references: dict[str, dict[str, BaseModel]]) -> None:
    found = {
        m: {v: r.model_dump(mode="json") for v, r in vs.items()} for m, vs in references.items()
    }
    path.write_text(json.dumps(found))


def test_reference_file_reloads_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "references.json"
    references = ReferenceFile(path)
    assert references.versions("item_scorer") == []  # absent: nothing, quietly
    write_references(path, {"item_scorer": {"2": item_reference(), "10": item_reference()}})
    assert references.versions("item_scorer") == ["2", "10"]
    found = references.reference("item_scorer", "2", ItemReference)
    assert found is not None
    assert found.categories == {"Drama": 0.5, "Comedy": 0.5}
    assert references.reference("item_scorer", "3", ItemReference) is None
    assert references.reference("item_scorer", "2", IntentReference) is None  # wrong kind
    write_references(path, {"item_scorer": {"3": item_reference({"Horror": 1.0})}})
    os.utime(path, ns=(1, 1))  # a new stamp even on a coarse clock
    found = references.reference("item_scorer", "3", ItemReference)
    assert found is not None
    assert found.categories == {"Horror": 1.0}
    path.write_text("{not json")
    os.utime(path, ns=(2, 2))
    assert references.versions("item_scorer") == ["3"]  # a broken file: the last good one
    assert ReferenceFile(None).versions("item_scorer") == []


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(s.labels.values()): s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == name
    }


def test_gauges_withdraw_the_scores_of_an_unready_window() -> None:
    registry = CollectorRegistry()
    gauges = DriftGauges(registry)
    drift = categorical_drift("category_mix", {"Drama": 1.0}, ["Drama", "Comedy"])
    gauges.publish("item_scorer", "4", [drift], ready=True)
    scores = samples(registry, "rapport_drift_score")
    assert scores[("item_scorer", "category_mix", "psi")] == pytest.approx(drift.psi)
    assert samples(registry, "rapport_drift_reference_version") == {("item_scorer",): 4.0}
    gauges.publish("item_scorer", "", [drift], ready=False)
    assert samples(registry, "rapport_drift_score") == {}
    assert samples(registry, "rapport_drift_window_observations") == {
        ("item_scorer", "category_mix"): 2.0
    }
    assert samples(registry, "rapport_drift_reference_version") == {("item_scorer",): 0.0}


# ---- the services' monitors -----------------------------------------------------------------


def reply(items: list[str], *, version: str | None, fallback: bool = False) -> Recommendations:
    why = Reason(kind=ReasonKind.POPULAR_OVERALL)
    return Recommendations(
        user_id="u",
        items=[RecommendedItem(item_id=i, title=i, score=1.0, why=why) for i in items],
        models={"item_scorer": version} if version else {},
        fallback=fallback,
    )


def intent(name: str, version: str, *, confidence: float = 0.9, oos: bool = False) -> Intent:
    return Intent(name, confidence, oos, version, "1", np.array([1.0, 0.0], np.float32))


def test_an_out_of_scope_answer_gives_back_the_best_in_scope_probability() -> None:
    assert observation(intent("greet", "1", confidence=0.8)).top_probability == 0.8
    found = observation(intent("oos", "1", confidence=0.8, oos=True))
    assert found.top_probability == pytest.approx(0.2)
    assert found.out_of_scope


def test_recommend_monitor_scores_each_version_against_its_reference(tmp_path: Path) -> None:
    path = tmp_path / "references.json"
    write_references(
        path,
        {"intent_classifier": {"7": intent_reference()}, "item_scorer": {"5": item_reference()}},
    )
    metrics = RecommendMetrics("test")
    monitor = DriftMonitor(
        intent_model="intent_classifier",
        item_model="item_scorer",
        references=ReferenceFile(path),
        metrics=metrics,
        messages=4,
        rankings=4,
        catalogue_size=100,
    )
    monitor.observe(reply(["x"], version="4"), intent("greet", "6"))
    for _ in range(3):
        monitor.observe(reply(["a", "b"], version="5"), intent("greet", "7"))
    monitor.observe(reply(["a", "c"], version=None, fallback=True), None)
    asyncio.run(monitor.refresh())
    registry = metrics.registry
    # version 6's message and version 4's ranking were dropped when 7 and 5 answered
    assert (
        samples(registry, "rapport_drift_window_observations")[("intent_classifier", "intent")]
        == 3.0
    )
    assert samples(registry, "rapport_drift_score") == {}  # 3 of 4: not yet
    assert samples(registry, "rapport_recommend_fallback_share") == {(): 0.25}
    assert samples(registry, "rapport_recommend_catalogue_coverage") == {
        ("served",): 0.75,  # a, b, c of the reference's 4 items
        ("reference",): 0.5,
    }
    assert samples(registry, "rapport_recommend_long_tail_share")[("served",)] == 0.5
    monitor.observe(reply(["a"], version="5"), intent("greet", "7"))
    asyncio.run(monitor.refresh())
    scores = samples(registry, "rapport_drift_score")
    assert scores[("intent_classifier", "intent", "psi")] > 0.25  # only "greet": shifted
    assert samples(registry, "rapport_drift_reference_version")[("intent_classifier",)] == 7.0


def item_event(category: str | None, kind: str = "item_view") -> Event:
    now = datetime.now(UTC).isoformat()
    body: dict[str, Any] = {
        "type": kind,
        "user_id": "u",
        "occurred_at": now,
        "received_at": now,
        "event_id": str(uuid.uuid4()),
        "tenant": "t",
    }
    if kind != "search":
        body["item_id"] = "1"
    else:
        body["query"] = "q"
    return parse_event(body | ({"category": category} if category else {}))


def test_profile_monitor_reads_the_latest_item_reference(tmp_path: Path) -> None:
    path = tmp_path / "references.json"
    write_references(
        path, {"item_scorer": {"2": item_reference({"Horror": 1.0}), "3": item_reference()}}
    )
    registry = CollectorRegistry()
    monitor = CategoryDrift(
        model="item_scorer", references=ReferenceFile(path), gauges=DriftGauges(registry), events=4
    )
    # a search's category and an item event without one are not item categories
    monitor.observe([item_event("Drama"), item_event(None), item_event("Drama", "search")])
    asyncio.run(monitor.refresh())
    assert samples(registry, "rapport_drift_score") == {}
    monitor.observe([item_event("Drama"), item_event("Comedy", "purchase"), item_event("Comedy")])
    asyncio.run(monitor.refresh())
    scores = samples(registry, "rapport_drift_score")
    assert scores[("item_scorer", "category_mix", "psi")] == pytest.approx(0.0)
    assert samples(registry, "rapport_drift_reference_version") == {("item_scorer",): 3.0}
    monitor.observe([item_event("Western")] * 4)
    asyncio.run(monitor.refresh())
    assert samples(registry, "rapport_drift_score")[("item_scorer", "category_mix", "psi")] > 1


# ---- the references written at training time, and by export ---------------------------------


def test_intent_reference_predicts_the_held_out_sample_as_served() -> None:
    data = Path(__file__).resolve().parents[2] / "data" / "clinc150"
    train, val = (textdata.read_labelled(data / f"{split}.csv") for split in ("train", "val"))
    keep = set(train.in_scope_labels[:8]) | {textdata.OOS_LABEL}

    def cut(labelled: textdata.Labelled) -> textdata.Labelled:
        rows = [r for r in zip(labelled.texts, labelled.intents, strict=True) if r[1] in keep]
        return textdata.Labelled([t for t, _ in rows], [i for _, i in rows])

    train, val = cut(train), cut(val)
    rng = np.random.default_rng(11)
    centres = {name: rng.normal(size=16) for name in keep}

    def vectors(labelled: textdata.Labelled) -> np.ndarray:
        rows = np.stack([centres[i] for i in labelled.intents])
        return rows + rng.normal(scale=0.5, size=rows.shape)

    train_vectors = vectors(train)
    params = intents.IntentParams(folds=3)
    trained = intents.train(train, params, vectors=train_vectors, encoder="fake", progress=False)
    model = IntentModel(trained.arrays)
    val_vectors = vectors(val)
    reference = references.intent_reference(
        model,
        val.texts,
        val_vectors,
        sample="val",
        train_vectors=train_vectors,
        train_labels=train.intents,
    )
    assert reference.observations == len(val.texts)
    assert set(reference.intents) == keep
    assert sum(reference.intents.values()) == pytest.approx(1.0, abs=1e-5)
    assert reference.out_of_scope_rate == pytest.approx(reference.intents["oos"], abs=1e-5)
    assert reference.centroids is not None
    assert reference.centroids.shape == (8, 16)  # the in-scope intents
    # the sample against its own reference: no drift
    window = [
        MessageObservation(p.intent, p.out_of_scope, top, v)
        for text, v in zip(val.texts, val_vectors, strict=True)
        for probabilities in [model.probabilities(text, v)]
        for p in [model.decide(probabilities, model.distance(v))]
        for top in [float(np.where(model.in_scope, probabilities, 0.0).max())]
    ]
    for drift in intent_drift(reference, window):
        assert drift.psi < 0.01, drift.signal


def test_item_reference_on_movielens() -> None:
    data = movielens.load()
    arrays = ranking.train_served(data, 500.0)
    reference = references.item_reference(data, arrays)
    assert sum(reference.categories.values()) == pytest.approx(1.0, abs=1e-4)
    found = reference.exposure
    assert (found.rankings, found.k, found.catalogue_size) == (943, 10, data.n_items)
    assert 0 < found.coverage < 1
    assert 0 < found.gini < 1
    head = set(found.head_items)
    counts = np.bincount(data.items, minlength=data.n_items)
    in_head = sum(counts[i] for i, item in enumerate(data.item_ids) if item in head)
    assert in_head >= found.head_share * counts.sum()


def test_export_gathers_every_versions_reference(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    for model, version, reference in (
        ("item_scorer", "1", {"categories": {"Drama": 1.0}}),
        ("item_scorer", "2", {"categories": {"Comedy": 1.0}}),
        ("sentiment", "1", None),
    ):
        folder = repository / model / version
        folder.mkdir(parents=True)
        metadata = {"model": model} | ({"reference": reference} if reference else {})
        (folder / "metadata.json").write_text(json.dumps(metadata))
    (repository / "encoder" / "1").mkdir(parents=True)  # no metadata at all
    path = export.references_path(tmp_path / "catalog.json")
    export.write_references(path, repository)
    assert json.loads(path.read_text()) == {
        "item_scorer": {"1": {"categories": {"Drama": 1.0}}, "2": {"categories": {"Comedy": 1.0}}}
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["references.json", "repository"]
