"""Item scorer at serve time: numpy only (runs in Triton's Python backend).

Score of item i for a user (relative, higher is better; not a probability)::

    score_i = sum_j w_j * S[j, i]                      collaborative: history item j, weight w_j
            + pop_i * (beta + alpha * sum_c a_c G[i, c])   popularity, lifted by category affinity

``S`` is the item-item matrix the training pipeline chose (EASE, see
models/README.md), ``pop_i`` the item's popularity scaled to [0, 1], ``a_c``
the user's category affinities divided by the largest one (of every name sent,
whether the model knows it or not), ``G`` the item's genres (0/1), ``alpha`` and
``beta`` small constants stored with the model. With no history and no
affinities the order is popularity (cold start). History and excluded items are
never returned.

New items (``NEW_ITEM_*``: in the catalogue, not in the training data) have no
interactions, so no collaborative part and no popularity of their own::

    score_n = prior_n * (beta + alpha * sum_{c in categories(n)} a_c)

where the categories are matched by name (one the model never saw still counts)
and ``prior_n`` is the ``NEW_ITEM_PRIOR_QUANTILE`` quantile of the popularity of
the known items sharing one of its categories (of every known item when none
does). Why the 0.9 quantile: popularity is long-tailed (the median MovieLens item
has 0.05 of the top item's ratings). At its category's median, half the category
would rank above a new item even for a user who loves it (362 Dramas), so it would
seldom be shown and never earn interactions of its own. At 0.9 it ranks with its
category's top tenth: for a user whose one affinity is its category, the lift
(11 times at full affinity) brings it to the category's hits (with the served
model: 4th for a Western, 10th for a Documentary, 75th of 725 Dramas, a broad
genre), while for a user without that affinity it ranks 34th to 650th (by
genre), never in the top 10 everyone is shown. A category the model never saw
takes the 0.9 quantile of every item, so a user whose interest is only in it
gets the new item first: nothing the model knows matches that interest better.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARTEFACT = "item_scorer.npz"
NEG_INF = np.float32(-np.inf)
NEW_ITEM_PRIOR_QUANTILE = 0.9  # why: the module's docstring
CATEGORY_SEPARATOR = "|"  # NEW_ITEM_CATEGORIES and the CATEGORIES output join with it
_PRIOR_CACHE_SIZE = 4096  # category sets remembered; new items mostly share a few


@dataclass(frozen=True)
class NewItem:
    """An item the model was not trained on (recommend's catalogue overlay)."""

    item_id: str
    title: str
    categories: tuple[str, ...]


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
            CATEGORY_SEPARATOR.join(self.genre_names[c] for c in np.flatnonzero(row))
            for row in self.genres
        ]
        self.global_prior = self._quantile(self.popularity)
        self._priors: dict[tuple[int, ...], float] = {}

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
        return self.affinities_by_name(names, weights)[0]

    def affinities_by_name(
        self, names: list[str], weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, float]]:
        """The known genres' affinities as a vector, and every name's (repeats add up)."""
        if len(names) != len(weights):
            raise ValueError(
                f"CATEGORY_NAMES has {len(names)} names but CATEGORY_WEIGHTS {len(weights)}"
            )
        vec = np.zeros(len(self.genre_names), np.float32)
        by_name: dict[str, float] = {}
        for name, w in zip(names, weights, strict=True):
            if not np.isfinite(w):
                continue
            by_name[name] = by_name.get(name, 0.0) + float(w)
            c = self.genre_index.get(name)
            if c is not None:
                vec[c] += float(w)
        return vec, by_name

    # ---- scoring ----------------------------------------------------------------------

    def collaborative(self, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
        if len(idx) == 0:
            return np.zeros(len(self.item_ids), np.float32)
        # Elementwise, not `@`: BLAS threads add millisecond tails on 2 shared cores.
        return np.asarray((self.similarity[idx] * vals[:, None]).sum(axis=0), np.float32)

    def side_scores(self, affinity: np.ndarray, scale: float | None = None) -> np.ndarray:
        """The part of every score that does not come from the history; affinities are
        divided by ``scale`` (default: the largest of them)."""
        lift = np.full(len(self.item_ids), self.popularity_weight, np.float32)
        if scale is None:
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
        new_items: list[NewItem] | None = None,
    ) -> Ranked:
        idx, vals = self.history_vector(history_items, history_weights)
        affinity, by_name = self.affinities_by_name(category_names, category_weights)
        # One scale for known and new items: a category's lift is the same whichever knows it.
        scale = max((abs(w) for w in by_name.values()), default=0.0)
        side = self.side_scores(affinity, scale)
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
        fresh = self.unknown_items(
            new_items or [], {*history_items, *exclude_items}, category_filter
        )
        fresh_scores = self.new_item_scores(fresh, by_name, scale)
        every = np.concatenate([scores, fresh_scores]) if fresh else scores
        valid = int(np.isfinite(every).sum())
        k = max(0, min(int(k), valid))
        if k == 0:
            top = np.zeros(0, np.int64)
        else:
            part = np.argpartition(-every, k - 1)[:k]
            # best first; ties by catalogue order, new items after known ones
            top = part[np.lexsort((part, -every[part]))]
        known = top[top < len(self.item_ids)]
        known_because = iter(self._because(idx, vals, known, side))
        segment = self.segment(idx, vals, affinity)
        rows = [
            (self.item_ids[i], self.titles[i], self.joined_categories[i], next(known_because))
            if i < len(self.item_ids)
            else self._new_row(fresh[i - len(self.item_ids)])
            for i in top
        ]
        return Ranked(
            item_ids=[row[0] for row in rows],
            scores=every[top].astype(np.float32),
            titles=[row[1] for row in rows],
            categories=[row[2] for row in rows],
            because=[row[3] for row in rows],
            segment=segment,
            segment_name=self.segment_names[segment],
        )

    # ---- new items: in the catalogue, not in the training data ---------------------------

    # model.py and the reply runtime look this method up before passing new items: a
    # version folder exported before them carries a runtime without it, which ranks as it
    # always did.
    @staticmethod
    def new_items(ids: list[str], titles: list[str], categories: list[str]) -> list[NewItem]:
        """``NEW_ITEM_IDS``, ``NEW_ITEM_TITLES`` and ``NEW_ITEM_CATEGORIES`` (each ``|``-joined)
        as items; the three lists must be of one length."""
        if not (len(ids) == len(titles) == len(categories)):
            raise ValueError(
                f"NEW_ITEM_IDS has {len(ids)} ids, NEW_ITEM_TITLES {len(titles)} titles and "
                f"NEW_ITEM_CATEGORIES {len(categories)} entries: one each per item"
            )
        return [
            NewItem(item_id, title, tuple(c for c in joined.split(CATEGORY_SEPARATOR) if c))
            for item_id, title, joined in zip(ids, titles, categories, strict=True)
        ]

    def unknown_items(
        self, items: list[NewItem], unseen: set[str], category_filter: list[str]
    ) -> list[NewItem]:
        """The new items that may be returned: each id once (its first entry), none the model
        knows (its own data wins), none seen or excluded, only the filter's categories."""
        wanted = set(category_filter)
        taken = set(unseen)
        kept = []
        for item in items:
            if item.item_id in self.index or item.item_id in taken:
                continue
            if wanted and not wanted.intersection(item.categories):
                continue
            taken.add(item.item_id)
            kept.append(item)
        return kept

    def new_item_scores(
        self, items: list[NewItem], affinities: dict[str, float], scale: float
    ) -> np.ndarray:
        """Each new item's prior popularity, lifted by the user's affinity for its categories
        (by name) as a known item's popularity is."""
        scores = np.zeros(len(items), np.float32)
        for n, item in enumerate(items):
            match = sum(affinities.get(c, 0.0) for c in item.categories) / scale if scale else 0.0
            lift = self.popularity_weight + self.affinity_weight * match
            scores[n] = self.prior_popularity(item.categories) * lift
        return scores

    def prior_popularity(self, categories: tuple[str, ...]) -> float:
        """The quantile of the popularity of the known items sharing one of ``categories``;
        of every known item when none does (or none is known to the model)."""
        cols = tuple(sorted({self.genre_index[c] for c in categories if c in self.genre_index}))
        if not cols:
            return self.global_prior
        prior = self._priors.get(cols)
        if prior is None:
            if len(self._priors) >= _PRIOR_CACHE_SIZE:
                self._priors.clear()
            sharing = self.genres[:, list(cols)].any(axis=1)
            prior = self._priors[cols] = self._quantile(self.popularity[sharing])
        return prior

    @staticmethod
    def _quantile(popularity: np.ndarray) -> float:
        if not len(popularity):
            return 0.0
        return float(np.quantile(popularity, NEW_ITEM_PRIOR_QUANTILE))

    @staticmethod
    def _new_row(item: NewItem) -> tuple[str, str, str, str]:
        return item.item_id, item.title, CATEGORY_SEPARATOR.join(item.categories), ""

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
