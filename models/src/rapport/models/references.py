"""The references drift is measured against, written at training time (``metadata.json``'s
``reference``; ``rapport-models export`` gathers them into ``references.json``).

Intents: the trained model's predictions on a held-out sample (CLINC150 val by default),
made as Triton makes them, so they compare like for like with the live replies: the
predicted-intent shares, the out-of-scope rate, the deciles of the best in-scope
probability, and the deciles of each message vector's cosine distance to the nearest
in-scope intent's mean training vector (those means ship in the reference, float16).

Items: the category mix of the training interactions (each counted under its item's
primary category, the first it lists in the catalogue: what the demo's item events carry)
and the exposure of the model's own top-10 for every training user: coverage, Gini,
long-tail share, and the popular head those are measured against.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from rapport.common.drift import (
    HEAD_SHARE,
    Binned,
    ExposureReference,
    Float16Rows,
    IntentReference,
    ItemReference,
    exposure,
    nearest_cosine_distance,
    popular_head,
    shares,
    unit_rows,
)
from rapport.models import ranking
from rapport.models.movielens import MovieLens
from rapport.models.runtime.intent_runtime import IntentModel
from rapport.models.runtime.item_runtime import ItemScorer
from rapport.models.textdata import OOS_LABEL


def intent_centroids(vectors: np.ndarray, labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Each in-scope intent's mean training vector, unit length, rounded to float16 (as
    stored: the reference's distances are measured to the stored centroids)."""
    names = sorted({label for label in labels if label != OOS_LABEL})
    column = np.array(labels, dtype=object)
    means = np.stack([vectors[column == name].mean(axis=0) for name in names])
    return names, unit_rows(means).astype(np.float16).astype(np.float32)


def intent_reference(
    model: IntentModel,
    texts: list[str],
    vectors: np.ndarray | None,
    *,
    sample: str,
    train_vectors: np.ndarray | None = None,
    train_labels: list[str] | None = None,
) -> IntentReference:
    """``model``'s predictions on ``texts`` (their ``vectors`` when it reads them); with the
    training vectors and labels, the centroid distances too."""
    predicted: list[str] = []
    top: list[float] = []
    for i, text in enumerate(texts):
        vector = None if vectors is None else vectors[i]
        probabilities = model.probabilities(text, vector)
        found = model.decide(probabilities, model.distance(vector) if vector is not None else 0.0)
        predicted.append(found.intent)
        top.append(float(np.where(model.in_scope, probabilities, 0.0).max()))
    counts = Counter(predicted)
    labels = sorted({*model.classes, model.oos_label})
    mix = shares([counts[label] for label in labels])
    distance = centroids = None
    if vectors is not None and train_vectors is not None and train_labels is not None:
        _, means = intent_centroids(train_vectors, train_labels)
        centroids = Float16Rows.of(means)
        distance = Binned.of_sample(nearest_cosine_distance(vectors, means))
    return IntentReference(
        sample=sample,
        observations=len(texts),
        out_of_scope_label=model.oos_label,
        intents={label: round(float(s), 6) for label, s in zip(labels, mix, strict=True)},
        out_of_scope_rate=counts[model.oos_label] / max(1, len(texts)),
        top_probability=Binned.of_sample(top),
        centroid_distance=distance,
        centroids=centroids,
    )


def primary_categories(data: MovieLens) -> list[str]:
    """Each item's first category in the catalogue's order ('unknown' for none)."""
    names = data.genre_names
    return [names[int(np.flatnonzero(row)[0])] if row.any() else "unknown" for row in data.genres]


def item_reference(
    data: MovieLens, arrays: dict[str, np.ndarray], *, k: int = ranking.K
) -> ItemReference:
    """The training interactions' category mix, and the exposure of the scorer's top-``k``
    (training items excluded, as evaluation does) for every training user."""
    primary = primary_categories(data)
    mix = Counter(primary[i] for i in data.items.tolist())
    total = sum(mix.values())
    train = ranking.full_matrix(data)
    scores = ItemScorer(arrays).score_users(train.toarray())
    top = ranking.top_k(scores, train, k)
    item_ids = data.item_ids
    interactions = Counter(item_ids[i] for i in data.items.tolist())
    head = popular_head(interactions, HEAD_SHARE)
    found = exposure([[item_ids[i] for i in row] for row in top], data.n_items, head)
    return ItemReference(
        categories={c: round(n / total, 6) for c, n in sorted(mix.items())},
        exposure=ExposureReference(
            rankings=found.rankings,
            k=k,
            catalogue_size=data.n_items,
            coverage=round(found.coverage, 6),
            gini=round(found.gini, 6),
            long_tail_share=round(found.long_tail_share, 6),
            head_share=HEAD_SHARE,
            head_items=sorted(head, key=int) if all(h.isdigit() for h in head) else sorted(head),
        ),
    )
