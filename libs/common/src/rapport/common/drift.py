"""Drift and exposure statistics, and the training-time references they compare against.

Pure numpy/scipy: no I/O. The models package writes the references when it trains a
model (``metadata.json``'s ``reference``, gathered into ``references.json`` by an
export); recommend and profile compare their live windows against them; the offline
bias audit uses the same exposure statistics.

Statistics, and why:

- **PSI** (population stability index), ``sum((o - e) * ln(o / e))`` over the bins of a
  distribution: the symmetric KL divergence, so it has one value whichever side is the
  reference, and a customary reading (0.1 a small shift, 0.25 a significant one). An
  empty bin would make it infinite: a share under ``EMPTY_BIN_SHARE`` counts as that
  share (both sides, then renormalised).
- **Jensen-Shannon distance** (base 2, so in [0, 1]): bounded and finite with empty bins,
  a metric; a second reading that no epsilon decides.
- Categorical signals (the predicted intent, an item event's category) are binned by
  category, with the categories that the reference never saw pooled in ``OTHER``.
  Continuous ones (the top probability, a message vector's distance to the nearest
  training centroid) by the reference sample's deciles, so each reference bin holds a
  tenth and no bin is empty by construction.

Windows are count-based (the last N observations), not time buckets. The noise of PSI
and JS on an unshifted sample falls with its size (PSI over K bins of a sample of N from
the reference itself is about (K - 1) / N), so a threshold is only meaningful for a
known N: a time bucket holds what the traffic brought, and a quiet hour would read as
drift. A score is therefore published only once the window holds ``minimum``
observations (by default the window's size); the alert thresholds are measured for that
size. The cost: on little traffic a window spans a long time, so a shift shows late.

Exposure (popularity bias, no demographics needed): over a set of rankings,
``coverage`` is the share of the catalogue served at least once, ``gini`` the Gini
coefficient of the exposure counts over the whole catalogue (0 every item served alike,
near 1 everything on one item) and ``long_tail_share`` the share of served slots that
went to items outside the popular head: the most interacted-with items that together
make ``HEAD_SHARE`` of the training interactions.
"""

from __future__ import annotations

import base64
from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field
from scipy.spatial.distance import jensenshannon

# A share under this counts as this (PSI's log needs no zero): one in ten thousand, so an
# empty bin weighs like a category seen once in 10,000 observations.
EMPTY_BIN_SHARE = 1e-4
OTHER = "(other)"  # the categories a reference never saw, pooled
HEAD_SHARE = 0.5  # the popular head: the top items that make half the training interactions
DECILES = tuple(q / 10 for q in range(1, 10))

T = TypeVar("T")


# ---- distributions ----------------------------------------------------------------------


def shares(counts: ArrayLike) -> np.ndarray:
    """Counts (or weights) as shares summing to 1; all zeros stay zeros."""
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    return values / total if total > 0 else values


def psi(reference: ArrayLike, observed: ArrayLike, *, epsilon: float = EMPTY_BIN_SHARE) -> float:
    """Population stability index between two distributions over the same bins (counts
    or shares); a share under ``epsilon`` counts as ``epsilon``."""
    expected = shares(np.maximum(shares(reference), epsilon))
    found = shares(np.maximum(shares(observed), epsilon))
    return float(np.sum((found - expected) * np.log(found / expected)))


def js_distance(reference: ArrayLike, observed: ArrayLike) -> float:
    """Jensen-Shannon distance in bits (0 same, 1 disjoint), over the same bins."""
    expected, found = shares(reference), shares(observed)
    if not (expected.sum() > 0 and found.sum() > 0):
        return 0.0
    return float(jensenshannon(expected, found, base=2))


def category_counts(observed: Iterable[str], categories: Sequence[str]) -> np.ndarray:
    """Counts per category in ``categories`` order, then one for all the others (``OTHER``)."""
    found = Counter(observed)
    known = [found.pop(c, 0) for c in categories]
    return np.array([*known, sum(found.values())], dtype=np.float64)


def decile_edges(values: ArrayLike) -> list[float]:
    """The sample's inner decile edges, each once (a sample with ties has fewer)."""
    sample = np.asarray(values, dtype=np.float64)
    return sorted({float(e) for e in np.quantile(sample, DECILES)})


def bin_counts(values: ArrayLike, edges: Sequence[float]) -> np.ndarray:
    """Counts in the ``len(edges) + 1`` bins cut by ``edges``: (-inf, e0], (e0, e1], ..."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values), "left")
    return np.bincount(index, minlength=len(edges) + 1).astype(np.float64)


def unit_rows(vectors: ArrayLike) -> np.ndarray:
    rows = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)  # type: ignore[no-any-return]


def nearest_cosine_distance(vectors: ArrayLike, centroids: ArrayLike) -> np.ndarray:
    """Each vector's cosine distance (1 - cosine) to the nearest centroid."""
    similarity = unit_rows(vectors) @ unit_rows(centroids).T
    return 1.0 - similarity.max(axis=1).astype(np.float64)  # type: ignore[no-any-return]


# ---- exposure ---------------------------------------------------------------------------


def gini(counts: ArrayLike) -> float:
    """Gini coefficient of non-negative counts (include the zeros of never-served items)."""
    values = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(values), values.sum()
    if n == 0 or total <= 0:
        return 0.0
    rank = np.arange(1, n + 1)
    return float(2.0 * np.sum(rank * values) / (n * total) - (n + 1) / n)


def exposure_gini(served: Iterable[str], catalogue_size: int) -> float:
    """Gini of how often each catalogue item was served (unserved items count as 0)."""
    counts = list(Counter(served).values())
    return gini(counts + [0] * max(0, catalogue_size - len(counts)))


def coverage(served: Iterable[str], catalogue_size: int) -> float:
    """Distinct items served over the catalogue's size (capped at 1)."""
    if catalogue_size <= 0:
        return 0.0
    return min(1.0, len(set(served)) / catalogue_size)


def popular_head(interactions: Mapping[str, float], share: float = HEAD_SHARE) -> frozenset[str]:
    """The most interacted-with items that together make ``share`` of all interactions
    (the item that crosses the share included; ties broken by id)."""
    ranked = sorted(interactions.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(count for _, count in ranked)
    head: set[str] = set()
    reached = 0.0
    for item, count in ranked:
        if total <= 0 or reached >= share * total:
            break
        head.add(item)
        reached += count
    return frozenset(head)


def long_tail_share(served: Iterable[str], head: Collection[str]) -> float:
    """The share of served slots given to items outside ``head``."""
    slots = list(served)
    if not slots:
        return 0.0
    return sum(item not in head for item in slots) / len(slots)


@dataclass(frozen=True)
class Exposure:
    rankings: int
    coverage: float
    gini: float
    long_tail_share: float


def exposure(
    rankings: Sequence[Sequence[str]], catalogue_size: int, head: Collection[str]
) -> Exposure:
    """Coverage, Gini and long-tail share of what ``rankings`` served."""
    served = [item for ranking in rankings for item in ranking]
    return Exposure(
        rankings=len(rankings),
        coverage=coverage(served, catalogue_size),
        gini=exposure_gini(served, catalogue_size),
        long_tail_share=long_tail_share(served, head),
    )


# ---- references: written at training time, read by the services ------------------------


class _Reference(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Binned(_Reference):
    """A continuous signal's reference: its deciles' inner edges, each bin's share (a
    tenth unless ties merged bins), and the mean."""

    edges: list[float]
    shares: list[float]
    mean: float

    @classmethod
    def of_sample(cls, values: ArrayLike) -> Binned:
        sample = np.asarray(values, dtype=np.float64)
        edges = decile_edges(sample)
        found = shares(bin_counts(sample, edges))
        return cls(edges=edges, shares=[float(s) for s in found], mean=float(sample.mean()))


class Float16Rows(_Reference):
    """A matrix stored compactly: float16, little-endian, base64."""

    shape: tuple[int, int]
    data: str

    @classmethod
    def of(cls, matrix: ArrayLike) -> Float16Rows:
        rows = np.asarray(matrix, dtype="<f2")
        if rows.ndim != 2:
            raise ValueError("Float16Rows holds a 2-d matrix")
        return cls(
            shape=(rows.shape[0], rows.shape[1]), data=base64.b64encode(rows.tobytes()).decode()
        )

    @cached_property
    def _decoded(self) -> np.ndarray:
        flat = np.frombuffer(base64.b64decode(self.data), dtype="<f2")
        return flat.reshape(self.shape).astype(np.float32)

    def array(self) -> np.ndarray:
        """The matrix as float32 (decoded once)."""
        return self._decoded


class IntentReference(_Reference):
    """The intent model on a held-out sample, predicted as served (like for like with the
    live replies), and where its training messages sit."""

    sample: str = Field(description="What was predicted, e.g. CLINC150 val.")
    observations: int
    out_of_scope_label: str
    intents: dict[str, float] = Field(description="Share of each predicted intent.")
    out_of_scope_rate: float
    top_probability: Binned = Field(description="The best in-scope intent's probability.")
    centroid_distance: Binned | None = Field(
        None, description="Cosine distance of a message vector to the nearest centroid."
    )
    centroids: Float16Rows | None = Field(
        None, description="Each in-scope intent's mean training vector, unit length."
    )


class ExposureReference(_Reference):
    """The model's own top-k for the training users."""

    rankings: int
    k: int
    catalogue_size: int
    coverage: float
    gini: float
    long_tail_share: float
    head_share: float
    head_items: list[str]


class ItemReference(_Reference):
    categories: dict[str, float] = Field(
        description="Share of training interactions per item's primary (first) category."
    )
    exposure: ExposureReference


# ---- windows and the drift of a window --------------------------------------------------


class Window(Generic[T]):
    """The last ``size`` observations; scores are published from ``minimum`` on."""

    def __init__(self, size: int, minimum: int | None = None) -> None:
        if size < 1:
            raise ValueError("a window holds at least one observation")
        self.items: deque[T] = deque(maxlen=size)
        self.minimum = size if minimum is None else max(1, min(minimum, size))

    def append(self, item: T) -> None:
        self.items.append(item)

    def clear(self) -> None:
        self.items.clear()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ready(self) -> bool:
        return len(self.items) >= self.minimum

    def snapshot(self) -> list[T]:
        return list(self.items)


@dataclass(frozen=True)
class Drift:
    """One signal's window against its reference."""

    signal: str
    observations: int
    psi: float
    js: float
    # the window's rate or mean and the reference's, for signals that have one
    value: float | None = None
    reference_value: float | None = None


def categorical_drift(
    signal: str, reference: Mapping[str, float], observed: Sequence[str]
) -> Drift:
    categories = list(reference)
    expected = [*reference.values(), 0.0]  # the reference saw nothing in OTHER
    found = category_counts(observed, categories)
    return Drift(signal, len(observed), psi(expected, found), js_distance(expected, found))


def binned_drift(signal: str, reference: Binned, observed: Sequence[float]) -> Drift:
    found = bin_counts(observed, reference.edges)
    return Drift(
        signal,
        len(observed),
        psi(reference.shares, found),
        js_distance(reference.shares, found),
        value=float(np.mean(observed)) if len(observed) else None,
        reference_value=reference.mean,
    )


@dataclass(frozen=True)
class MessageObservation:
    """What recommend saw of one message: the intent model's answer and the vector."""

    intent: str
    out_of_scope: bool
    top_probability: float  # the best in-scope intent's probability
    vector: np.ndarray | None = None


def intent_drift(reference: IntentReference, window: Sequence[MessageObservation]) -> list[Drift]:
    """The predicted intents, the out-of-scope rate, the top probability and the vectors'
    distance to the training centroids, each against the reference."""
    oos = [o.out_of_scope for o in window]
    rate = float(np.mean(oos)) if oos else 0.0
    expected_oos = [reference.out_of_scope_rate, 1.0 - reference.out_of_scope_rate]
    found_oos = [sum(oos), len(oos) - sum(oos)]
    found = [
        categorical_drift("intent", reference.intents, [o.intent for o in window]),
        Drift(
            "out_of_scope",
            len(window),
            psi(expected_oos, found_oos),
            js_distance(expected_oos, found_oos),
            value=rate,
            reference_value=reference.out_of_scope_rate,
        ),
        binned_drift(
            "top_probability", reference.top_probability, [o.top_probability for o in window]
        ),
    ]
    if reference.centroid_distance is None or reference.centroids is None:
        return found
    centroids = reference.centroids.array()
    width = centroids.shape[1]
    # a vector of another width comes from another encoder: not comparable
    vectors = [o.vector for o in window if o.vector is not None and o.vector.shape == (width,)]
    if vectors:
        distances = nearest_cosine_distance(np.stack(vectors), centroids)
        found.append(
            binned_drift("centroid_distance", reference.centroid_distance, distances.tolist())
        )
    return found
