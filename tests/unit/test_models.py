"""Pure logic of the training pipeline and of the runtime code Triton runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from rapport.models import export, intents, runtime_files, textdata
from rapport.models.metrics import mean_metrics, ndcg_at_k, precision_at_k, recall_at_k
from rapport.models.runtime import intent_runtime, sentiment_runtime
from rapport.models.runtime.item_runtime import ItemScorer, NewItem, Ranked

pytestmark = pytest.mark.unit

CLINC = Path(__file__).resolve().parents[2] / "data" / "clinc150"


# ---- metrics -------------------------------------------------------------------------


def test_metrics_on_a_hand_example() -> None:
    ranked = [7, 3, 9, 1, 4]
    relevant = {3, 4, 8}
    assert precision_at_k(ranked, relevant, 5) == pytest.approx(2 / 5)
    assert recall_at_k(ranked, relevant, 5) == pytest.approx(2 / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(6)  # hits at ranks 2 and 5
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, relevant, 5) == pytest.approx(dcg / ideal)
    assert ndcg_at_k([3, 4, 8], relevant, 3) == pytest.approx(1.0)
    means = mean_metrics([ranked, [8]], [relevant, set()], 5)  # users without test items skipped
    assert means["precision@5"] == pytest.approx(2 / 5)


# ---- CSV validation ------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_errors_name_the_row_and_column(tmp_path: Path) -> None:
    with pytest.raises(textdata.CsvError, match=r"row 1 \(header\): missing column\(s\) intent"):
        textdata.read_labelled(write(tmp_path / "a.csv", "text,label\nhi,greet\n"))
    with pytest.raises(textdata.CsvError, match="row 3, column text: empty"):
        textdata.read_labelled(write(tmp_path / "b.csv", "text,intent\nhi,greet\n  ,bye\n"))
    with pytest.raises(textdata.CsvError, match="row 2, column intent: empty"):
        textdata.read_labelled(write(tmp_path / "c.csv", "text,intent\nhi,\n"))
    with pytest.raises(textdata.CsvError, match="row 2: more fields"):
        textdata.read_labelled(write(tmp_path / "d.csv", "text,intent\nhi,greet,extra\n"))
    with pytest.raises(textdata.CsvError, match="at least two in-scope intents"):
        textdata.read_labelled(write(tmp_path / "e.csv", "text,intent\nhi,greet\nyo,oos\n"))
    (tmp_path / "f.csv").write_bytes(b"text,intent\n\xff\xfe,greet\n")
    with pytest.raises(textdata.CsvError, match="not UTF-8"):
        textdata.read_labelled(tmp_path / "f.csv")
    found = textdata.read_labelled(
        write(tmp_path / "ok.csv", 'text,intent,extra\n"hi, there",greet,1\nbye,leave,2\n')
    )
    assert found.texts == ["hi, there", "bye"]
    assert textdata.read_texts(write(tmp_path / "t.csv", "id,text\n1,hello\n")) == ["hello"]


# ---- featurization parity: the numpy runtime equals scikit-learn ------------------------

AWKWARD = [
    "How do I say 'good night' in Italian?",
    "a b cd   e\tfg\n hij",
    "I",
    "",
    "Ünïcödé café — naïve résumé 42",
    "what's my credit-score???  (pls)",
    "x y",
]


@pytest.mark.parametrize("text", AWKWARD)
def test_ngrams_equal_scikit_learn(text: str) -> None:
    word = TfidfVectorizer(ngram_range=(1, 2)).build_analyzer()
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()
    assert intent_runtime.word_ngrams(text, 1, 2) == word(text)
    assert intent_runtime.char_wb_ngrams(text, 2, 5) == char(text)
    three = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)).build_analyzer()
    assert intent_runtime.char_wb_ngrams(text, 1, 3) == three(text)


@pytest.fixture(scope="module")
def small_intents() -> tuple[textdata.Labelled, textdata.Labelled]:
    """CLINC150 cut to 15 intents + oos, so a full train (CV included) takes seconds."""
    train = textdata.read_labelled(CLINC / "train.csv")
    val = textdata.read_labelled(CLINC / "val.csv")
    keep = set(train.in_scope_labels[:15]) | {textdata.OOS_LABEL}

    def cut(data: textdata.Labelled) -> textdata.Labelled:
        rows = [(t, i) for t, i in zip(data.texts, data.intents, strict=True) if i in keep]
        return textdata.Labelled([t for t, _ in rows], [i for _, i in rows])

    return cut(train), cut(val)


def fake_vectors(data: textdata.Labelled, dimension: int = 24) -> np.ndarray:
    """Unit vectors clustered by intent (a stand-in encoder: this tests the arithmetic)."""
    names = sorted(set(data.intents))
    centres = np.random.default_rng(3).normal(size=(len(names), dimension))
    noise = np.random.default_rng(len(data.texts)).normal(
        scale=0.8, size=(len(data.texts), dimension)
    )
    vectors = centres[[names.index(i) for i in data.intents]] + noise
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "parts", [{"vectors": False}, {"tfidf": False}, {}], ids=["tfidf", "vectors", "both"]
)
def test_runtime_predictions_equal_the_sklearn_pipeline(
    small_intents: tuple[textdata.Labelled, textdata.Labelled],
    tmp_path: Path,
    parts: dict[str, bool],
) -> None:
    train, val = small_intents
    params = intents.IntentParams(
        folds=3, tfidf=parts.get("tfidf", True), vectors=parts.get("vectors", True)
    )
    vectors = fake_vectors(train) if params.vectors else None
    trained = intents.train(train, params, vectors=vectors, encoder="fake", progress=False)
    model = intents.load(intents.save(trained, tmp_path, source="unit test"))
    assert model.uses_vectors == params.vectors
    texts = val.texts + AWKWARD
    val_vectors = fake_vectors(textdata.Labelled(texts, val.intents + ["oos"] * len(AWKWARD)))
    given = val_vectors if params.vectors else None
    runtime = np.array(
        [
            model.probabilities(t, None if given is None else v)
            for t, v in zip(texts, val_vectors, strict=True)
        ]
    )
    reference = intents.sklearn_probabilities(trained, texts, given)
    np.testing.assert_allclose(runtime, reference, atol=1e-6)
    classes = [str(c) for c in trained.arrays["classes"]]
    distances = None
    if given is not None:
        centroids, whiten = intents.fit_distance(vectors, np.array(train.intents, dtype=object))  # type: ignore[arg-type]
        distances = intents.nearest_distances(given, centroids, whiten)
        served_distances = [model.distance(v) for v in given]
        np.testing.assert_allclose(served_distances, distances, rtol=1e-6)
    labels, confidence = intents.decide(
        reference, classes, model.threshold, distances, model.distance_floor
    )
    served = [
        model.predict(t, None if given is None else v)
        for t, v in zip(texts, val_vectors, strict=True)
    ]
    assert [p.intent for p in served] == labels.tolist()
    np.testing.assert_allclose([p.confidence for p in served], confidence, atol=1e-6)
    if params.vectors:
        assert model.encoder == "fake"
        with pytest.raises(ValueError, match="vector"):
            model.predict(texts[0])
    # the folder carries the packaged runtime verbatim
    assert (tmp_path / "intent_runtime.py").read_bytes() == Path(
        intent_runtime.__file__
    ).read_bytes()


def test_the_distance_floor_sends_far_messages_out_of_scope() -> None:
    classes = ["a", "b", "oos"]
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05]])
    labels, _ = intents.decide(probs, classes, 0.5, np.array([1.0, 9.0]), floor=4.0)
    assert labels.tolist() == ["a", "oos"]


def test_threshold_rule() -> None:
    classes = ["a", "b", "oos"]
    probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.25, 0.45], [0.4, 0.35, 0.25]])
    labels, confidence = intents.decide(probs, classes, threshold=0.5)
    assert labels.tolist() == ["a", "oos", "oos"]  # oos wins; best in-scope under threshold
    np.testing.assert_allclose(confidence, [0.7, 0.7, 0.6])


# ---- item scorer runtime on a hand-made catalogue -------------------------------------


def tiny_scorer() -> ItemScorer:
    # items 0..3; item 0 predicts 1 strongly and 2 weakly; item 3 is the most popular
    similarity = np.zeros((4, 4), np.float32)
    similarity[0, 1] = 0.9
    similarity[0, 2] = 0.2
    similarity[1, 2] = 0.5
    return ItemScorer(
        {
            "item_ids": np.array(["10", "11", "12", "13"]),
            "titles": np.array(["A", "B", "C", "D"]),
            "genre_names": np.array(["Comedy", "Drama"]),
            "genres": np.array([[1, 0], [1, 1], [0, 1], [1, 0]], np.float32),
            "similarity": similarity,
            "popularity": np.array([0.2, 0.1, 0.3, 1.0], np.float32),
            "centroids": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32),
            "segment_names": np.array(["Comedy fans", "Drama fans"]),
            "global_profile": np.array([0.6, 0.4], np.float32),
            "affinity_weight": np.array(0.1, np.float32),
            "popularity_weight": np.array(0.01, np.float32),
        }
    )


def recommend(scorer: ItemScorer, **kwargs: object) -> Ranked:
    args: dict[str, object] = {
        "history_items": [],
        "history_weights": np.zeros(0, np.float32),
        "category_names": [],
        "category_weights": np.zeros(0, np.float32),
        "exclude_items": [],
        "category_filter": [],
        "k": 3,
    }
    args.update(kwargs)
    return scorer.recommend(**args)  # type: ignore[arg-type]


def test_item_scorer_history_exclusion_and_explanations() -> None:
    scorer = tiny_scorer()
    ranked = scorer.recommend(
        history_items=["10", "unknown"],
        history_weights=np.array([1.0, 5.0], np.float32),
        category_names=[],
        category_weights=np.zeros(0, np.float32),
        exclude_items=[],
        category_filter=[],
        k=3,
    )
    assert ranked.item_ids == ["11", "12", "13"]  # history item 10 never comes back
    assert ranked.because == ["10", "10", ""]  # 13 is there on popularity alone
    np.testing.assert_allclose(ranked.scores[:2], [0.9 + 0.001, 0.2 + 0.003], rtol=1e-5)
    assert ranked.categories[0] == "Comedy|Drama"
    assert ranked.segment_name == "Comedy fans"


def test_item_scorer_cold_start_filters_and_errors() -> None:
    scorer = tiny_scorer()
    cold = recommend(scorer, k=10)
    assert cold.item_ids == ["13", "12", "10", "11"]
    drama = recommend(scorer, category_filter=["Drama"], exclude_items=["12"])
    assert drama.item_ids == ["11"]
    liked = recommend(scorer, category_names=["Drama"], category_weights=np.ones(1, np.float32))
    assert liked.item_ids[:2] == ["12", "11"]  # popular in the liked category first
    assert liked.segment_name == "Drama fans"
    with pytest.raises(ValueError, match="HISTORY_WEIGHTS"):
        recommend(scorer, history_items=["10"])


# ---- new items (the catalogue overlay) on the same catalogue ---------------------------

# Priors at the 0.9 quantile of the known items sharing a category: Drama is items 11 and
# 12 (0.1, 0.3); Comedy 10, 11 and 13 (0.2, 0.1, 1.0); every item for a category the model
# never saw (0.1, 0.2, 0.3, 1.0).
DRAMA_PRIOR, COMEDY_PRIOR, GLOBAL_PRIOR = 0.28, 0.84, 0.79


def new_items(scorer: ItemScorer, *rows: tuple[str, str, str]) -> list[NewItem]:
    ids, titles, categories = (list(column) for column in zip(*rows, strict=True))
    return scorer.new_items(ids, titles, categories)


NEW_ROWS = [("n1", "New drama", "Drama"), ("n2", "New podcast", "Podcasts")]


def test_a_new_item_is_scored_by_its_categories_popularity_and_the_users_affinity() -> None:
    scorer = tiny_scorer()
    assert scorer.prior_popularity(("Drama",)) == pytest.approx(DRAMA_PRIOR)
    assert scorer.prior_popularity(("Comedy", "Podcasts")) == pytest.approx(COMEDY_PRIOR)
    assert scorer.prior_popularity(("Podcasts",)) == pytest.approx(GLOBAL_PRIOR)
    rows = [*NEW_ROWS, ("n3", "New sketch show", "Comedy|Podcasts")]
    ranked = recommend(
        scorer,
        category_names=["Drama"],
        category_weights=np.ones(1, np.float32),
        new_items=new_items(scorer, *rows),
        k=10,
    )
    # 12 is a popular drama (0.3 * 0.11), n1 the drama prior lifted as much (0.28 * 0.11);
    # n3 and n2 only their priors (* 0.01), below the liked 11 and the very popular 13.
    assert ranked.item_ids == ["12", "n1", "11", "13", "n3", "n2", "10"]
    at = ranked.item_ids.index("n1")
    assert ranked.scores[at] == pytest.approx(DRAMA_PRIOR * (0.01 + 0.1), rel=1e-5)
    assert (ranked.titles[at], ranked.categories[at], ranked.because[at]) == (
        "New drama",
        "Drama",
        "",
    )
    assert ranked.categories[ranked.item_ids.index("n3")] == "Comedy|Podcasts"


def test_a_category_the_model_never_saw_still_counts_on_one_scale() -> None:
    scorer = tiny_scorer()
    ranked = recommend(
        scorer,
        category_names=["Podcasts", "Drama"],
        category_weights=np.array([2.0, 1.0], np.float32),
        new_items=new_items(scorer, *NEW_ROWS),
        k=3,
    )
    # Podcasts is the strongest interest: 1.0 after scaling, Drama 0.5, for known items
    # (12) and new ones (n1) alike.
    assert ranked.item_ids == ["n2", "12", "n1"]
    np.testing.assert_allclose(
        ranked.scores,
        [GLOBAL_PRIOR * (0.01 + 0.1), 0.3 * (0.01 + 0.05), DRAMA_PRIOR * (0.01 + 0.05)],
        rtol=1e-5,
    )


def test_without_a_matching_affinity_a_new_item_stays_below_the_popular_ones() -> None:
    scorer = tiny_scorer()
    cold = recommend(scorer, new_items=new_items(scorer, *NEW_ROWS), k=10)
    # Each at its prior: below the most popular item, and the new drama below the drama hit.
    assert cold.item_ids == ["13", "n2", "12", "n1", "10", "11"]
    np.testing.assert_allclose(cold.scores[:4], [0.01, GLOBAL_PRIOR * 0.01, 0.003, 0.0028])


def test_history_exclusion_and_the_filter_apply_to_new_items() -> None:
    scorer = tiny_scorer()
    rows = [
        *NEW_ROWS,
        ("n3", "Seen", "Drama"),
        ("n4", "Excluded", "Drama"),
        ("n1", "A second n1", "Comedy"),  # the first entry of an id is the one
        ("12", "Not the model's C", "Podcasts"),  # the model knows 12: its own data wins
    ]
    ranked = recommend(
        scorer,
        history_items=["n3"],
        history_weights=np.ones(1, np.float32),
        exclude_items=["n4"],
        new_items=new_items(scorer, *rows),
        k=10,
    )
    assert sorted(ranked.item_ids) == ["10", "11", "12", "13", "n1", "n2"]
    assert ranked.titles[ranked.item_ids.index("12")] == "C"
    assert ranked.titles[ranked.item_ids.index("n1")] == "New drama"
    podcasts = recommend(scorer, category_filter=["Podcasts"], new_items=new_items(scorer, *rows))
    assert podcasts.item_ids == ["n2"]  # a filter the model does not know still finds them
    drama = recommend(scorer, category_filter=["Drama"], new_items=new_items(scorer, *rows), k=10)
    assert sorted(drama.item_ids) == ["11", "12", "n1", "n3", "n4"]


def test_new_item_inputs_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="NEW_ITEM_TITLES"):
        ItemScorer.new_items(["n1", "n2"], ["one title"], ["Drama", "Drama"])
    assert ItemScorer.new_items(["n1"], ["T"], ["|Drama||Podcasts|"])[0].categories == (
        "Drama",
        "Podcasts",
    )


def test_an_artefact_from_before_new_items_loads_and_scores_them(tmp_path: Path) -> None:
    """Nothing new is stored: the priors come from the popularity every artefact has."""
    arrays = {
        "item_ids": np.array(["10", "11", "12", "13"]),
        "titles": np.array(["A", "B", "C", "D"]),
        "genre_names": np.array(["Comedy", "Drama"]),
        "genres": np.array([[1, 0], [1, 1], [0, 1], [1, 0]], np.float32),
        "similarity": np.zeros((4, 4), np.float32),
        "popularity": np.array([0.2, 0.1, 0.3, 1.0], np.float32),
        "centroids": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32),
        "segment_names": np.array(["Comedy fans", "Drama fans"]),
        "global_profile": np.array([0.6, 0.4], np.float32),
        "affinity_weight": np.array(0.1, np.float32),
        "popularity_weight": np.array(0.01, np.float32),
    }
    np.savez(tmp_path / "item_scorer.npz", **arrays)  # type: ignore[arg-type]
    scorer = ItemScorer.load(tmp_path)
    ranked = recommend(
        scorer,
        category_names=["Drama"],
        category_weights=np.ones(1, np.float32),
        new_items=new_items(scorer, *NEW_ROWS),
        k=2,
    )
    assert ranked.item_ids == ["12", "n1"]


# ---- sentiment: a small hand-written sanity set (not a benchmark) -----------------------


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Thanks, that was really helpful!", "positive"),
        ("I absolutely love these suggestions", "positive"),
        ("This is useless and I'm fed up", "negative"),
        ("worst service ever, very disappointed", "negative"),
        ("what time is it in tokyo", "neutral"),
        ("add milk to my shopping list", "neutral"),
    ],
)
def test_sentiment_sanity(text: str, label: str) -> None:
    found = sentiment_runtime.SentimentModel().predict(text)
    assert found.label == label
    assert -1.0 <= found.score <= 1.0


# ---- export: numbered versions, atomic folders -----------------------------------------


def test_export_adds_the_next_version_and_keeps_a_few(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "weights.bin").write_bytes(b"v")
    source = export.ModelSource("sentiment", "sentiment_runtime", trained)
    found = [export.export_model(repository, source, keep=2) for _ in range(3)]
    assert found == [1, 2, 3]
    assert export.versions(repository / "sentiment") == [2, 3]
    folder = repository / "sentiment" / "3"
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.py",
        "sentiment_runtime.py",
        "weights.bin",
    ]
    assert (repository / "sentiment" / "config.pbtxt").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_a_bundle_carries_the_versions_written_in_the_same_run(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "weights.bin").write_bytes(b"v")
    sources = [
        export.ModelSource("sentiment", "sentiment_runtime", trained),
        export.ModelSource("reply", "reply_runtime", None, ("sentiment",)),
    ]
    (repository / "sentiment" / "6").mkdir(parents=True)
    for _ in range(3):
        written = export.export_repository(repository, sources, keep=2)
    assert written == {"sentiment": 9, "reply": 3}
    assert export.versions(repository / "reply") == [2, 3]
    folder = repository / "reply" / "3"
    assert json.loads((folder / "components.json").read_text()) == {"sentiment": "9"}
    assert sorted(p.name for p in (folder / "sentiment").iterdir()) == [
        "sentiment_runtime.py",  # the component's folder less its model.py
        "weights.bin",
    ]
    assert (folder / "model.py").read_bytes() == (
        runtime_files.triton_source("reply") / "model.py"
    ).read_bytes()
    with pytest.raises(ValueError, match="reply carries sentiment"):
        export.export_model(repository, sources[1])
    assert export.versions(repository / "reply") == [2, 3]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
