"""Intent classifier training: TF-IDF with a linear SVM, sentence vectors with logistic regression.

Two linear parts, either or both: a linear SVM on TF-IDF features (word 1-2
grams + char_wb 2-5 grams) and a multinomial logistic regression on the
encoder's sentence vectors. Their scores are added with two scales, so the
served model stays one linear layer over [TF-IDF, vector] and one softmax.

A message is out of scope when the best in-scope probability is under a
threshold, or when its vector lies far from every intent: the squared
Mahalanobis distance to the nearest intent's mean, under one shared covariance
shrunk by Ledoit-Wolf (Podolskiy et al., AAAI 2021), is over a floor.

Everything is chosen by stratified cross-validation on the training CSV, never
on validation data: the SVM's C and the regression's C (``search``), the two
scales (lowest out-of-fold log loss; with one part, its softmax temperature),
and the threshold and floor: the most accurate pair (out-of-fold in-scope
accuracy) whose out-of-fold out-of-scope recall is at least ``min_oos_recall``.
With no ``oos`` rows to measure recall on, the most rejecting pair that costs
at most 1% of in-scope accuracy: the floor then does the work that the absent
out-of-scope examples cannot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC
from tqdm import tqdm

from rapport.models import runtime_files
from rapport.models.runtime.intent_runtime import ARTEFACT, IntentModel
from rapport.models.textdata import OOS_LABEL, Labelled

RUNTIME_MODULE = "intent_runtime"
TEMPERATURES = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 14.0, 20.0)  # for the SVM margins
VECTOR_SCALES = (0.25, 0.5, 1.0, 2.0, 3.0)  # for the regression's logits
SEED = 13


@dataclass(frozen=True)
class IntentParams:
    word_ngram_range: tuple[int, int] = (1, 2)
    char_ngram_range: tuple[int, int] = (2, 5)
    char_min_df: int = 2
    tfidf: bool = True  # the SVM on TF-IDF features
    vectors: bool = True  # the regression on sentence vectors
    c: float = 2.0  # the SVM's; chosen by `rapport-models evaluate intents`, see the report
    vector_c: float = 20.0  # the regression's; chosen the same way
    folds: int = 5
    min_oos_recall: float = 0.5

    def __post_init__(self) -> None:
        if not (self.tfidf or self.vectors):
            raise ValueError("an intent model needs TF-IDF features, sentence vectors or both")


@dataclass
class Trained:
    arrays: dict[str, np.ndarray]
    parts: tuple[FeatureUnion | None, LinearSVC | None, LogisticRegression | None]
    scales: tuple[float, float]  # (SVM margins, regression logits)
    cv: dict[str, Any] = field(default_factory=dict)


def features(params: IntentParams) -> FeatureUnion:
    return FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=params.word_ngram_range, sublinear_tf=True)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=params.char_ngram_range,
                    sublinear_tf=True,
                    min_df=params.char_min_df,
                ),
            ),
        ]
    )


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _best_in_scope(
    probs: np.ndarray, classes: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the best in-scope class, its probability, and whether `oos` wins outright."""
    in_scope = np.array([c != OOS_LABEL for c in classes])
    best_in = np.where(in_scope[None, :], probs, -1.0).argmax(axis=1)
    return best_in, probs[np.arange(len(probs)), best_in], ~in_scope[probs.argmax(axis=1)]


def decide(
    probs: np.ndarray,
    classes: list[str],
    threshold: float,
    distances: np.ndarray | None = None,
    floor: float = np.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized IntentModel.decide: labels and confidences."""
    best_in, p_in, oos_first = _best_in_scope(probs, classes)
    oos = oos_first | (p_in < threshold)
    if distances is not None:
        oos |= distances > floor
    labels = np.where(oos, OOS_LABEL, np.array(classes, dtype=object)[best_in])
    return labels, np.where(oos, 1.0 - p_in, p_in)


def fit_distance(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whitened intent means and the whitening matrix: z = v @ whiten makes the shared
    (Ledoit-Wolf) covariance's Mahalanobis distance Euclidean."""
    inside = labels != OOS_LABEL
    names, rows = np.unique(labels[inside], return_inverse=True)
    means = np.zeros((len(names), vectors.shape[1]), np.float64)
    np.add.at(means, rows, vectors[inside])
    means /= np.bincount(rows)[:, None]
    centred = vectors[inside] - means[rows]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    whiten = np.linalg.cholesky(precision)
    return means @ whiten, whiten


def nearest_distances(vectors: np.ndarray, centroids: np.ndarray, whiten: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance from each vector to the nearest intent mean."""
    z = vectors.astype(np.float64) @ whiten
    squared = (z**2).sum(1)[:, None] - 2 * z @ centroids.T + (centroids**2).sum(1)[None, :]
    return np.maximum(squared.min(axis=1), 0.0)  # type: ignore[no-any-return]


def scores(gold: list[str], predicted: np.ndarray) -> dict[str, float]:
    """Larson et al.'s figures: in-scope accuracy (oos predictions count wrong), oos recall."""
    g = np.array(gold, dtype=object)
    ins = g != OOS_LABEL
    out: dict[str, float] = {"in_scope_accuracy": float((predicted[ins] == g[ins]).mean())}
    if (~ins).any():
        out["oos_recall"] = float((predicted[~ins] == OOS_LABEL).mean())
    return out


def _check_vectors(data: Labelled, params: IntentParams, vectors: np.ndarray | None) -> None:
    if params.vectors and (vectors is None or len(vectors) != len(data.texts)):
        raise ValueError("params.vectors needs one sentence vector per training text")


def _fit_parts(
    texts: list[str],
    vectors: np.ndarray | None,
    labels: np.ndarray,
    params: IntentParams,
) -> tuple[FeatureUnion | None, LinearSVC | None, LogisticRegression | None]:
    feat = svm = regression = None
    if params.tfidf:
        feat = features(params)
        svm = LinearSVC(C=params.c).fit(feat.fit_transform(texts), labels)
    if params.vectors and vectors is not None:
        regression = LogisticRegression(C=params.vector_c, max_iter=1000).fit(vectors, labels)
    return feat, svm, regression


def _part_scores(
    parts: tuple[FeatureUnion | None, LinearSVC | None, LogisticRegression | None],
    texts: list[str],
    vectors: np.ndarray | None,
    classes: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """SVM margins and regression logits over ``classes`` (zeros for a part not used)."""
    feat, svm, regression = parts
    column = {c: i for i, c in enumerate(classes)}
    out = []
    for model, x in ((svm, feat.transform(texts) if feat else None), (regression, vectors)):
        found = np.zeros((len(texts), len(classes)), np.float64)
        if model is not None and x is not None:
            found -= 1e3  # a label absent from this fold's train
            found[:, [column[c] for c in model.classes_]] = model.decision_function(x)
        out.append(found)
    return out[0], out[1]


def out_of_fold_scores(
    data: Labelled,
    vectors: np.ndarray | None,
    params: IntentParams,
    classes: list[str],
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Out-of-fold SVM margins, regression logits and distances (None without vectors)."""
    labels = np.array(data.intents, dtype=object)
    margins = np.zeros((len(labels), len(classes)), np.float64)
    logits = np.zeros_like(margins)
    distances = None if vectors is None or not params.vectors else np.zeros(len(labels))
    folds = StratifiedKFold(n_splits=params.folds, shuffle=True, random_state=SEED)
    splits = list(folds.split(np.zeros(len(labels)), labels))
    desc = f"cv C={params.c}/{params.vector_c}"
    for train_idx, test_idx in tqdm(splits, desc=desc, disable=not progress):
        parts = _fit_parts(
            [data.texts[i] for i in train_idx],
            None if vectors is None else vectors[train_idx],
            labels[train_idx],
            params,
        )
        m, lg = _part_scores(
            parts,
            [data.texts[i] for i in test_idx],
            None if vectors is None else vectors[test_idx],
            classes,
        )
        margins[test_idx], logits[test_idx] = m, lg
        if distances is not None and vectors is not None:
            centroids, whiten = fit_distance(vectors[train_idx], labels[train_idx])
            distances[test_idx] = nearest_distances(vectors[test_idx], centroids, whiten)
    return margins, logits, distances


def choose_scales(
    margins: np.ndarray, logits: np.ndarray, gold: np.ndarray, params: IntentParams
) -> tuple[tuple[float, float], list[dict[str, float]]]:
    """The two scales with the lowest out-of-fold log loss (0 for a part not used)."""
    rows = []
    for a, b in product(
        TEMPERATURES if params.tfidf else (0.0,), VECTOR_SCALES if params.vectors else (0.0,)
    ):
        p = softmax(margins * a + logits * b)[np.arange(len(gold)), gold]
        loss = float(-np.log(np.maximum(p, 1e-12)).mean())
        rows.append({"svm_scale": a, "vector_scale": b, "log_loss": loss})
    best = min(rows, key=lambda r: r["log_loss"])
    return (best["svm_scale"], best["vector_scale"]), rows


def choose_threshold(
    probs: np.ndarray,
    gold: list[str],
    classes: list[str],
    params: IntentParams,
    distances: np.ndarray | None = None,
) -> tuple[float, float, dict[str, float]]:
    """The probability threshold and the distance floor (module docstring)."""
    thresholds = [float(t) for t in np.round(np.arange(0.0, 0.96, 0.01), 2)]
    floors = [float(np.inf)]
    inside = np.array(gold, dtype=object) != OOS_LABEL
    if distances is not None:
        # the floor that keeps 90%, 90.5%, ..., 100% of in-scope messages
        floors += [float(f) for f in np.percentile(distances[inside], np.arange(90.0, 100.01, 0.5))]
    # decide() for every pair, with the argmax work done once
    best_in, p_in, oos_first = _best_in_scope(probs, classes)
    correct = np.array(classes, dtype=object)[best_in] == np.array(gold, dtype=object)
    far = distances if distances is not None else np.zeros(len(probs))
    results = []
    for t in thresholds:
        for f in floors:
            oos = oos_first | (p_in < t) | (far > f)
            found = {"in_scope_accuracy": float((correct & ~oos)[inside].mean())}
            if (~inside).any():
                found["oos_recall"] = float(oos[~inside].mean())
            results.append((t, f, found))
    if "oos_recall" not in results[0][2]:
        # no out-of-scope rows: the most rejecting pair within 1% of the best accuracy
        top = max(r[2]["in_scope_accuracy"] for r in results)
        within = [r for r in results if r[2]["in_scope_accuracy"] >= top - 0.01]
        return min(within, key=lambda r: (r[2]["in_scope_accuracy"], -r[0], r[1]))
    ok = [r for r in results if r[2]["oos_recall"] >= params.min_oos_recall]
    pool = ok or [max(results, key=lambda r: r[2]["oos_recall"])]
    return max(pool, key=lambda r: (r[2]["in_scope_accuracy"], -r[0], r[1]))


def cross_validate(
    data: Labelled,
    vectors: np.ndarray | None,
    params: IntentParams,
    classes: list[str],
    progress: bool,
) -> dict[str, Any]:
    column = {c: i for i, c in enumerate(classes)}
    gold = np.array([column[c] for c in data.intents])
    margins, logits, distances = out_of_fold_scores(data, vectors, params, classes, progress)
    (a, b), grid = choose_scales(margins, logits, gold, params)
    probs = softmax(margins * a + logits * b)
    threshold, floor, at_threshold = choose_threshold(
        probs, data.intents, classes, params, distances
    )
    return {
        "c": params.c,
        "vector_c": params.vector_c,
        "svm_scale": a,
        "vector_scale": b,
        "scales": grid,
        "threshold": threshold,
        "distance_floor": floor if np.isfinite(floor) else None,
        "cv_at_threshold": at_threshold,
        "cv_raw": scores(data.intents, decide(probs, classes, 0.0)[0]),
    }


def train(
    data: Labelled,
    params: IntentParams,
    *,
    vectors: np.ndarray | None = None,
    encoder: str = "",
    search: tuple[tuple[float, float], ...] = (),
    progress: bool = True,
) -> Trained:
    """Fit the final model on all of ``data``.

    ``vectors`` holds the vector of each text from the encoder named
    ``encoder`` (needed when ``params.vectors``); ``search`` lists
    (SVM C, regression C) pairs to compare by CV.
    """
    _check_vectors(data, params, vectors)
    classes = sorted(set(data.intents))
    grid = [
        cross_validate(data, vectors, replace(params, c=c, vector_c=vc), classes, progress)
        for c, vc in search
    ]
    if grid:
        chosen = max(grid, key=lambda r: r["cv_at_threshold"]["in_scope_accuracy"])
        params = replace(params, c=chosen["c"], vector_c=chosen["vector_c"])
    else:
        chosen = cross_validate(data, vectors, params, classes, progress)
    with tqdm(total=1, desc="fit intents", disable=not progress) as bar:
        parts = _fit_parts(data.texts, vectors, np.array(data.intents, dtype=object), params)
        bar.update()
    feat, svm, regression = parts
    a, b = float(chosen["svm_scale"]), float(chosen["vector_scale"])
    meta = {
        "word_ngram_range": list(params.word_ngram_range),
        "char_ngram_range": list(params.char_ngram_range),
        "oos_label": OOS_LABEL,
        "threshold": chosen["threshold"],
        # served vectors must come from the encoder the regression was fit on
        "encoder": encoder if regression is not None else "",
        "distance_floor": chosen["distance_floor"],  # None: no floor
    }
    # The scales are folded into the weights: softmax(layer output) = probabilities.
    dimension = 0 if vectors is None or regression is None else vectors.shape[1]
    sparse = np.zeros((0, len(classes)), np.float32)
    dense = np.zeros((dimension, len(classes)), np.float32)
    bias = np.zeros(len(classes), np.float64)
    vocabularies: dict[str, np.ndarray] = {
        "word_vocabulary": np.array([], str),
        "word_idf": np.zeros(0),
        "char_vocabulary": np.array([], str),
        "char_idf": np.zeros(0),
    }
    for model in (svm, regression):
        if model is not None and list(model.classes_) != classes:
            raise AssertionError("a part's classes differ from the training labels")
    if feat is not None and svm is not None:
        word: TfidfVectorizer = feat.transformer_list[0][1]
        char: TfidfVectorizer = feat.transformer_list[1][1]
        vocabularies = {
            "word_vocabulary": _vocabulary(word),
            "word_idf": word.idf_.astype(np.float64),
            "char_vocabulary": _vocabulary(char),
            "char_idf": char.idf_.astype(np.float64),
        }
        sparse = (svm.coef_.T * a).astype(np.float32)
        bias += svm.intercept_ * a
        if len(word.idf_) + len(char.idf_) != len(sparse):
            raise AssertionError("feature count differs from the weight rows")
    if regression is not None:
        dense = (regression.coef_.T * b).astype(np.float32)
        bias += regression.intercept_ * b
    centroids = np.zeros((0, dimension))
    whiten = np.zeros((dimension, dimension))
    if regression is not None and vectors is not None:
        centroids, whiten = fit_distance(vectors, np.array(data.intents, dtype=object))
    arrays = {
        "meta": np.array(json.dumps(meta)),
        **vocabularies,
        "weights": sparse,
        "vector_weights": dense,
        "centroids": centroids,
        "whiten": whiten,
        "bias": bias,
        "classes": np.array(classes),
    }
    return Trained(
        arrays=arrays,
        parts=parts,
        scales=(a, b),
        cv={"params": asdict(params), "grid": grid, "chosen": chosen},
    )


def _vocabulary(vectorizer: TfidfVectorizer) -> np.ndarray:
    vocab: dict[str, int] = vectorizer.vocabulary_
    ordered = [""] * len(vocab)
    for gram, i in vocab.items():
        ordered[i] = gram
    return np.array(ordered)


def save(
    trained: Trained, out: Path, *, source: str, reference: dict[str, Any] | None = None
) -> Path:
    """A model folder usable directly (predict) or exported to Triton; ``reference``: what
    drift is measured against (rapport.models.references), in ``metadata.json``."""
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / ARTEFACT, allow_pickle=False, **trained.arrays)
    runtime_files.copy_runtime(RUNTIME_MODULE, out)
    found = {"model": "intent_classifier", "source": source, **trained.cv}
    if reference is not None:
        found["reference"] = reference
    (out / "metadata.json").write_text(json.dumps(found, indent=2) + "\n")
    return out


def load(directory: Path) -> IntentModel:
    """The runtime model, imported from the module file inside ``directory``."""
    module = runtime_files.load_runtime(directory, RUNTIME_MODULE)
    model: IntentModel = module.IntentModel.load(directory)
    return model


def sklearn_probabilities(
    trained: Trained, texts: list[str], vectors: np.ndarray | None = None
) -> np.ndarray:
    """The same probabilities from the scikit-learn objects (parity tests)."""
    classes = [str(c) for c in trained.arrays["classes"]]
    margins, logits = _part_scores(trained.parts, texts, vectors, classes)
    a, b = trained.scales
    return softmax(margins * a + logits * b)
