"""Intent classifier training: TF-IDF (word 1-2 grams + char_wb 2-5 grams) and a linear SVM.

Everything is chosen by stratified cross-validation on the training CSV, never
on validation data: the SVM's C (``search``), the softmax temperature that
turns SVM margins into probabilities (lowest out-of-fold log loss), and the
out-of-scope threshold (highest in-scope accuracy among thresholds whose
out-of-fold out-of-scope recall is at least ``min_oos_recall``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC
from tqdm import tqdm

from rapport.models import runtime_files
from rapport.models.runtime.intent_runtime import ARTEFACT, IntentModel
from rapport.models.textdata import OOS_LABEL, Labelled

RUNTIME_MODULE = "intent_runtime"
TEMPERATURES = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 14.0, 20.0)
SEED = 13


@dataclass(frozen=True)
class IntentParams:
    word_ngram_range: tuple[int, int] = (1, 2)
    char_ngram_range: tuple[int, int] = (2, 5)
    char_min_df: int = 2
    c: float = 2.0  # chosen by `rapport-models evaluate intents` (CV on train), see the report
    folds: int = 5
    min_oos_recall: float = 0.5


@dataclass
class Trained:
    arrays: dict[str, np.ndarray]
    pipeline: tuple[FeatureUnion, LinearSVC, float]
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


def decide(
    probs: np.ndarray, classes: list[str], threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized IntentModel.decide: labels and confidences."""
    in_scope = np.array([c != OOS_LABEL for c in classes])
    best = probs.argmax(axis=1)
    masked = np.where(in_scope[None, :], probs, -1.0)
    best_in = masked.argmax(axis=1)
    p_in = probs[np.arange(len(probs)), best_in]
    oos = (~in_scope[best]) | (p_in < threshold)
    labels = np.where(oos, OOS_LABEL, np.array(classes, dtype=object)[best_in])
    return labels, np.where(oos, 1.0 - p_in, p_in)


def scores(gold: list[str], predicted: np.ndarray) -> dict[str, float]:
    """Larson et al.'s figures: in-scope accuracy (oos predictions count wrong), oos recall."""
    g = np.array(gold, dtype=object)
    ins = g != OOS_LABEL
    out: dict[str, float] = {"in_scope_accuracy": float((predicted[ins] == g[ins]).mean())}
    if (~ins).any():
        out["oos_recall"] = float((predicted[~ins] == OOS_LABEL).mean())
    return out


def out_of_fold_margins(
    data: Labelled, params: IntentParams, classes: list[str], progress: bool
) -> np.ndarray:
    labels = np.array(data.intents, dtype=object)
    margins = np.zeros((len(labels), len(classes)), np.float64)
    folds = StratifiedKFold(n_splits=params.folds, shuffle=True, random_state=SEED)
    column = {c: i for i, c in enumerate(classes)}
    splits = list(folds.split(np.zeros(len(labels)), labels))
    for train_idx, test_idx in tqdm(splits, desc=f"cv C={params.c}", disable=not progress):
        feat = features(params)
        x_train = feat.fit_transform([data.texts[i] for i in train_idx])
        svm = LinearSVC(C=params.c).fit(x_train, labels[train_idx])
        found = svm.decision_function(feat.transform([data.texts[i] for i in test_idx]))
        cols = [column[c] for c in svm.classes_]
        margins[np.ix_(test_idx, cols)] = found
        missing = [i for c, i in column.items() if c not in set(svm.classes_)]
        margins[np.ix_(test_idx, missing)] = -1e3  # a label absent from this fold's train
    return margins


def choose_temperature(
    margins: np.ndarray, gold: np.ndarray
) -> tuple[float, list[dict[str, float]]]:
    rows = []
    for t in TEMPERATURES:
        p = softmax(margins * t)[np.arange(len(gold)), gold]
        rows.append({"temperature": t, "log_loss": float(-np.log(np.maximum(p, 1e-12)).mean())})
    best = min(rows, key=lambda r: r["log_loss"])
    return best["temperature"], rows


def choose_threshold(
    probs: np.ndarray, gold: list[str], classes: list[str], min_oos_recall: float
) -> tuple[float, dict[str, float]]:
    candidates = np.round(np.arange(0.0, 0.96, 0.01), 2)
    results = [(float(t), scores(gold, decide(probs, classes, float(t))[0])) for t in candidates]
    has_oos = "oos_recall" in results[0][1]
    if has_oos:
        ok = [r for r in results if r[1]["oos_recall"] >= min_oos_recall]
        pool = ok or [max(results, key=lambda r: r[1]["oos_recall"])]
        return max(pool, key=lambda r: (r[1]["in_scope_accuracy"], -r[0]))
    # No out-of-scope examples to measure recall on: reject at most 1% of in-scope messages.
    within = [
        r for r in results if r[1]["in_scope_accuracy"] >= results[0][1]["in_scope_accuracy"] - 0.01
    ]
    return max(within, key=lambda r: r[0])


def cross_validate(
    data: Labelled, params: IntentParams, classes: list[str], progress: bool
) -> dict[str, Any]:
    column = {c: i for i, c in enumerate(classes)}
    gold = np.array([column[c] for c in data.intents])
    margins = out_of_fold_margins(data, params, classes, progress)
    temperature, temps = choose_temperature(margins, gold)
    probs = softmax(margins * temperature)
    threshold, at_threshold = choose_threshold(probs, data.intents, classes, params.min_oos_recall)
    return {
        "c": params.c,
        "temperature": temperature,
        "temperatures": temps,
        "threshold": threshold,
        "cv_at_threshold": at_threshold,
        "cv_raw": scores(data.intents, decide(probs, classes, 0.0)[0]),
    }


def train(
    data: Labelled,
    params: IntentParams,
    *,
    search: tuple[float, ...] = (),
    progress: bool = True,
) -> Trained:
    """Fit the final model on all of ``data``; ``search`` lists values of C to compare by CV."""
    classes = sorted(set(data.intents))
    grid = [
        cross_validate(data, IntentParams(**{**asdict(params), "c": c}), classes, progress)
        for c in search
    ]
    if grid:
        best = max(grid, key=lambda r: r["cv_at_threshold"]["in_scope_accuracy"])
        params = IntentParams(**{**asdict(params), "c": best["c"]})
        chosen = best
    else:
        chosen = cross_validate(data, params, classes, progress)
    feat = features(params)
    with tqdm(total=2, desc="fit intents", disable=not progress) as bar:
        x = feat.fit_transform(data.texts)
        bar.update()
        svm = LinearSVC(C=params.c).fit(x, np.array(data.intents, dtype=object))
        bar.update()
    word: TfidfVectorizer = feat.transformer_list[0][1]
    char: TfidfVectorizer = feat.transformer_list[1][1]
    t = float(chosen["temperature"])
    meta = {
        "word_ngram_range": list(params.word_ngram_range),
        "char_ngram_range": list(params.char_ngram_range),
        "oos_label": OOS_LABEL,
        "threshold": chosen["threshold"],
    }
    arrays = {
        "meta": np.array(json.dumps(meta)),
        "word_vocabulary": _vocabulary(word),
        "word_idf": word.idf_.astype(np.float64),
        "char_vocabulary": _vocabulary(char),
        "char_idf": char.idf_.astype(np.float64),
        # the temperature is folded into the weights: softmax(layer output) = probabilities
        "weights": (svm.coef_.T * t).astype(np.float32),
        "bias": (svm.intercept_ * t).astype(np.float64),
        "classes": np.array([str(c) for c in svm.classes_]),
    }
    if x.shape[1] != len(arrays["weights"]):
        raise AssertionError("feature count differs from the weight rows")
    return Trained(
        arrays=arrays,
        pipeline=(feat, svm, t),
        cv={"params": asdict(params), "grid": grid, "chosen": chosen},
    )


def _vocabulary(vectorizer: TfidfVectorizer) -> np.ndarray:
    vocab: dict[str, int] = vectorizer.vocabulary_
    ordered = [""] * len(vocab)
    for gram, i in vocab.items():
        ordered[i] = gram
    return np.array(ordered)


def save(trained: Trained, out: Path, *, source: str) -> Path:
    """A model folder usable directly (predict) or exported to Triton."""
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / ARTEFACT, allow_pickle=False, **trained.arrays)
    runtime_files.copy_runtime(RUNTIME_MODULE, out)
    (out / "metadata.json").write_text(
        json.dumps({"model": "intent_classifier", "source": source, **trained.cv}, indent=2) + "\n"
    )
    return out


def load(directory: Path) -> IntentModel:
    """The runtime model, imported from the module file inside ``directory``."""
    module = runtime_files.load_runtime(directory, RUNTIME_MODULE)
    model: IntentModel = module.IntentModel.load(directory)
    return model


def sklearn_probabilities(trained: Trained, texts: list[str]) -> np.ndarray:
    """The same probabilities from the scikit-learn objects (parity tests)."""
    feat, svm, temperature = trained.pipeline
    return softmax(svm.decision_function(feat.transform(texts)) * temperature)
