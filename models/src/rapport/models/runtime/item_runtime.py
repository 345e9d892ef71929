"""Item scorer at serve time: numpy only (runs in Triton's Python backend).

Score of item i for a user (relative, higher is better; not a probability)::

    score_i = sum_j w_j * S[j, i]                      collaborative: history item j, weight w_j
            + pop_i * (beta + alpha * sum_c a_c G[i, c])   popularity, lifted by category affinity

``S`` is the item-item matrix the training pipeline chose (EASE, see
models/README.md), ``pop_i`` the item's popularity scaled to [0, 1], ``a_c``
the user's category affinities divided by the largest one, ``G`` the item's
genres (0/1), ``alpha`` and ``beta`` small constants stored with the model.
With no history and no affinities the order is popularity (cold start).
History and excluded items are never returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARTEFACT = "item_scorer.npz"
NEG_INF = np.float32(-np.inf)


@dataclass(frozen=True)
class Ranked:
    item_ids: list[str]
    scores: np.ndarray
    titles: list[str]
    categories: list[str]
    because: list[str]
    segment: int
    segment_name: str


class ItemScorer:
    """Loaded once per Triton model instance; ``recommend`` answers one request."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_ids = [str(x) for x in arrays["item_ids"]]
        self.titles = [str(x) for x in arrays["titles"]]
        self.genre_names = [str(x) for x in arrays["genre_names"]]
        self.genres = arrays["genres"].astype(np.float32)  # (items, genres) 0/1
        self.similarity = np.ascontiguousarray(arrays["similarity"], dtype=np.float32)
        self.popularity = arrays["popularity"].astype(np.float32)
        self.centroids = arrays["centroids"].astype(np.float32)
        self.segment_names = [str(x) for x in arrays["segment_names"]]
        self.global_profile = arrays["global_profile"].astype(np.float32)
        self.affinity_weight = float(arrays["affinity_weight"])
        self.popularity_weight = float(arrays["popularity_weight"])
        self.index = {item: i for i, item in enumerate(self.item_ids)}
        self.genre_index = {g: c for c, g in enumerate(self.genre_names)}
        counts = self.genres.sum(axis=1, keepdims=True)
        self.genre_share = self.genres / np.maximum(counts, 1.0)  # rows sum to 1 (or 0)
        self.joined_categories = [
            "|".join(self.genre_names[c] for c in np.flatnonzero(row)) for row in self.genres
        ]

    @classmethod
    def load(cls, directory: Path) -> ItemScorer:
        with np.load(Path(directory) / ARTEFACT, allow_pickle=False) as data:
            return cls({name: data[name] for name in data.files})

    # ---- inputs -> vectors ------------------------------------------------------------

    def history_vector(
        self, items: list[str], weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Known history items (unknown ids ignored; repeats add up) and their weights."""
        if len(items) != len(weights):
            raise ValueError(
                f"HISTORY_ITEMS has {len(items)} ids but HISTORY_WEIGHTS {len(weights)} weights"
            )
        picked = [
            (self.index[it], float(w))
            for it, w in zip(items, weights, strict=True)
            if it in self.index and np.isfinite(w)
        ]
        if not picked:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        idx = np.array([p[0] for p in picked], np.int64)
        vals = np.array([p[1] for p in picked], np.float32)
        unique, inverse = np.unique(idx, return_inverse=True)
        summed = np.zeros(len(unique), np.float32)
        np.add.at(summed, inverse, vals)
        return unique, summed

    def affinity_vector(self, names: list[str], weights: np.ndarray) -> np.ndarray:
        if len(names) != len(weights):
            raise ValueError(
                f"CATEGORY_NAMES has {len(names)} names but CATEGORY_WEIGHTS {len(weights)}"
            )
        vec = np.zeros(len(self.genre_names), np.float32)
        for name, w in zip(names, weights, strict=True):
            c = self.genre_index.get(name)
            if c is not None and np.isfinite(w):
                vec[c] += float(w)
        return vec

    # ---- scoring ----------------------------------------------------------------------

    def collaborative(self, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
        if len(idx) == 0:
            return np.zeros(len(self.item_ids), np.float32)
        # Elementwise, not `@`: BLAS threads add millisecond tails on 2 shared cores.
        return np.asarray((self.similarity[idx] * vals[:, None]).sum(axis=0), np.float32)

    def side_scores(self, affinity: np.ndarray) -> np.ndarray:
        """The part of every score that does not come from the history."""
        lift = np.full(len(self.item_ids), self.popularity_weight, np.float32)
        scale = float(np.abs(affinity).max()) if len(affinity) else 0.0
        if scale > 0:
            lift += self.affinity_weight * (self.genres * (affinity / scale)).sum(axis=1)
        return (self.popularity * lift).astype(np.float32)

    def score_users(self, history: np.ndarray) -> np.ndarray:
        """Scores for a batch of dense history rows (users x items), no affinities: evaluation."""
        side = self.side_scores(np.zeros(len(self.genre_names), np.float32))
        return np.asarray(history.astype(np.float32) @ self.similarity + side, np.float32)

    def segment(self, idx: np.ndarray, vals: np.ndarray, affinity: np.ndarray) -> int:
        """Nearest centroid of the user's genre profile (history genres plus affinities)."""
        profile = np.zeros(len(self.genre_names), np.float32)
        if len(idx):
            part = (self.genre_share[idx] * np.maximum(vals, 0.0)[:, None]).sum(axis=0)
            if part.sum() > 0:
                profile += part / part.sum()
        positive = np.maximum(affinity, 0.0)
        if positive.sum() > 0:
            profile += positive / positive.sum()
        profile = profile / profile.sum() if profile.sum() > 0 else self.global_profile
        return int(np.argmin(((self.centroids - profile) ** 2).sum(axis=1)))

    def recommend(
        self,
        *,
        history_items: list[str],
        history_weights: np.ndarray,
        category_names: list[str],
        category_weights: np.ndarray,
        exclude_items: list[str],
        category_filter: list[str],
        k: int,
    ) -> Ranked:
        idx, vals = self.history_vector(history_items, history_weights)
        affinity = self.affinity_vector(category_names, category_weights)
        side = self.side_scores(affinity)
        scores = self.collaborative(idx, vals) + side
        scores[idx] = NEG_INF
        for item in exclude_items:
            i = self.index.get(item)
            if i is not None:
                scores[i] = NEG_INF
        if category_filter:
            cols = [self.genre_index[c] for c in category_filter if c in self.genre_index]
            allowed = self.genres[:, cols].any(axis=1) if cols else np.zeros(len(scores), bool)
            scores[~allowed] = NEG_INF
        valid = int(np.isfinite(scores).sum())
        k = max(0, min(int(k), valid))
        if k == 0:
            top = np.zeros(0, np.int64)
        else:
            part = np.argpartition(-scores, k - 1)[:k]
            top = part[np.lexsort((part, -scores[part]))]  # best first, ties by catalogue order
        because = self._because(idx, vals, top, side)
        segment = self.segment(idx, vals, affinity)
        return Ranked(
            item_ids=[self.item_ids[i] for i in top],
            scores=scores[top].astype(np.float32),
            titles=[self.titles[i] for i in top],
            categories=[self.joined_categories[i] for i in top],
            because=because,
            segment=segment,
            segment_name=self.segment_names[segment],
        )

    def _because(
        self, idx: np.ndarray, vals: np.ndarray, top: np.ndarray, side: np.ndarray
    ) -> list[str]:
        """The history item that contributed most, or "" when affinity/popularity dominated."""
        if len(idx) == 0 or len(top) == 0:
            return [""] * len(top)
        contributions = vals[:, None] * self.similarity[np.ix_(idx, top)]  # (history, top)
        best = contributions.argmax(axis=0)
        strongest = contributions[best, np.arange(len(top))]
        return [
            self.item_ids[idx[b]] if s > 0 and s >= side[t] else ""
            for b, s, t in zip(best, strongest, top, strict=True)
        ]
