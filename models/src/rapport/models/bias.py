"""Offline bias audit of a ranker on a split, and a popularity-bias mitigation study.

No demographics are stored, so the audit looks at what can be measured from the data:

- **exposure** (popularity bias): catalogue coverage of the top-10s, the Gini
  coefficient of exposures over the whole catalogue, and the long tail's share of the
  served slots, beside the long tail's share of the training interactions (what users
  themselves gave the tail). The statistics and the popular head are
  :mod:`rapport.common.drift`'s, the ones the live gauges use;
- **quality across users**: NDCG@10 and recall@10 by user activity (light, medium,
  heavy: tertiles of the users' training interactions, thresholds in the audit) and by
  segment (the runtime's nearest k-means segment of the user's history), and each
  grouping's gap (the best group's NDCG@10 minus the worst's). Groups under
  ``MIN_GROUP_USERS`` users are reported but left out of the gaps: their means are noise.
  The largest gap is the larger of the two groupings'.

A ranker is popularity-biased when it gives the long tail a smaller share of its slots
than users give it in their interactions. The mitigation studied is a calibrated
popularity penalty (:func:`popularity_penalty`); it is a study, the served runtime is
unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from rapport.common.drift import HEAD_SHARE, coverage, exposure_gini, long_tail_share, popular_head
from rapport.models import ranking
from rapport.models.metrics import ndcg_at_k, recall_at_k
from rapport.models.movielens import MovieLens
from rapport.models.runtime.item_runtime import ItemScorer

K = 10
ACTIVITY_GROUPS = ("light", "medium", "heavy")
MIN_GROUP_USERS = 10
# Penalty strengths, in units of each user's score spread (see popularity_penalty).
GAMMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
# The study's summary: the strongest penalty that costs at most this share of NDCG@10.
ACCEPTABLE_NDCG_COST = 0.05


@dataclass(frozen=True)
class GroupQuality:
    users: int
    ndcg: float
    recall: float


@dataclass(frozen=True)
class Audit:
    users: int
    catalogue_size: int
    coverage: float
    gini: float
    long_tail_share: float
    # what users gave the tail (interactions outside the head), and the tail's share of items
    interactions_long_tail_share: float
    catalogue_long_tail_share: float
    popularity_biased: bool
    head_share: float
    activity_thresholds: tuple[int, int]  # light: <= first; heavy: > second
    by_activity: dict[str, GroupQuality]
    by_segment: dict[str, GroupQuality]
    activity_gap: float
    segment_gap: float
    largest_gap: float
    ndcg: float
    recall: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def activity_groups(counts: Sequence[int]) -> tuple[list[str], tuple[int, int]]:
    """Each user's activity group by the tertiles of ``counts`` (training interactions)."""
    values = np.asarray(counts, dtype=np.float64)
    if len(values) == 0:
        return [], (0, 0)
    low, high = (int(np.floor(q)) for q in np.quantile(values, (1 / 3, 2 / 3)))
    labels = [
        ACTIVITY_GROUPS[0] if c <= low else ACTIVITY_GROUPS[1] if c <= high else ACTIVITY_GROUPS[2]
        for c in values
    ]
    return labels, (low, high)


def group_quality(
    ndcg: np.ndarray, recall: np.ndarray, labels: Sequence[str]
) -> dict[str, GroupQuality]:
    column = np.asarray(labels, dtype=object)
    return {
        name: GroupQuality(
            users=int((column == name).sum()),
            ndcg=float(ndcg[column == name].mean()),
            recall=float(recall[column == name].mean()),
        )
        for name in sorted(set(labels), key=_group_order)
    }


def _group_order(name: str) -> tuple[int, str]:
    return (
        (ACTIVITY_GROUPS.index(name), "")
        if name in ACTIVITY_GROUPS
        else (len(ACTIVITY_GROUPS), name)
    )


def gap(groups: dict[str, GroupQuality], minimum: int = MIN_GROUP_USERS) -> float:
    """Best minus worst NDCG@10 over the groups of at least ``minimum`` users (0 with
    fewer than two such groups)."""
    found = [g.ndcg for g in groups.values() if g.users >= minimum]
    return float(max(found) - min(found)) if len(found) >= 2 else 0.0


def per_user(
    rankings: Sequence[Sequence[Hashable]], relevant: Sequence[AbstractSet[Hashable]], k: int = K
) -> tuple[np.ndarray, np.ndarray]:
    ndcg = np.array([ndcg_at_k(r, h, k) for r, h in zip(rankings, relevant, strict=True)])
    recall = np.array([recall_at_k(r, h, k) for r, h in zip(rankings, relevant, strict=True)])
    return ndcg, recall


def audit(
    rankings: Sequence[Sequence[str]],
    relevant: Sequence[AbstractSet[str]],
    *,
    activity: Sequence[int],
    segments: Sequence[str],
    catalogue_size: int,
    interactions: Counter[str],
    k: int = K,
) -> Audit:
    """The audit of ``rankings`` (item ids, best first, one per user with held-out items).

    ``activity``: each user's training interactions; ``segments``: each user's segment
    name; ``interactions``: training interactions per item (the popular head's basis).
    """
    if not rankings:
        raise ValueError("an audit needs at least one user with held-out items")
    ndcg, recall = per_user(rankings, relevant, k)
    labels, thresholds = activity_groups(activity)
    by_activity = group_quality(ndcg, recall, labels)
    by_segment = group_quality(ndcg, recall, segments)
    head = popular_head(interactions, HEAD_SHARE)
    served = [item for ranking in rankings for item in ranking[:k]]
    total = sum(interactions.values())
    in_tail = sum(n for item, n in interactions.items() if item not in head)
    tail_share = long_tail_share(served, head)
    interactions_tail = in_tail / total if total else 0.0
    return Audit(
        users=len(rankings),
        catalogue_size=catalogue_size,
        coverage=coverage(served, catalogue_size),
        gini=exposure_gini(served, catalogue_size),
        long_tail_share=tail_share,
        interactions_long_tail_share=interactions_tail,
        catalogue_long_tail_share=1.0 - len(head) / catalogue_size if catalogue_size else 0.0,
        popularity_biased=tail_share < interactions_tail,
        head_share=HEAD_SHARE,
        activity_thresholds=thresholds,
        by_activity=by_activity,
        by_segment=by_segment,
        activity_gap=gap(by_activity),
        segment_gap=gap(by_segment),
        largest_gap=max(gap(by_activity), gap(by_segment)),
        ndcg=float(ndcg.mean()),
        recall=float(recall.mean()),
    )


# ---- mitigation: a calibrated popularity penalty -------------------------------------------


def popularity_penalty(scores: np.ndarray, counts: np.ndarray, gamma: float) -> np.ndarray:
    """``s'_ui = s_ui - gamma * sigma_u * p_i``.

    ``p_i = log(1 + n_i) / log(1 + max n)`` is item i's popularity in [0, 1] (log: the
    counts are heavy-tailed), ``sigma_u`` the standard deviation of user u's scores over
    the catalogue: calibrated, so one ``gamma`` moves every user's ranking by the same
    share of their own score spread, whatever the scale of their history.
    """
    if gamma == 0.0:
        return scores
    logged = np.log1p(np.asarray(counts, dtype=np.float64))
    p = logged / max(float(logged.max()), 1e-12)
    spread = scores.std(axis=1, keepdims=True)
    result: np.ndarray = (scores - gamma * spread * p[None, :]).astype(np.float32)
    return result


def top_items(scores: np.ndarray, history: sp.csr_matrix, k: int = K) -> list[list[int]]:
    """Each row's top ``k`` (best first), its history items excluded."""
    masked = np.array(scores, dtype=np.float32, copy=True)
    masked[history.nonzero()] = -np.inf
    k = min(k, masked.shape[1])
    part = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(-masked, part, axis=1).argsort(axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).tolist()  # type: ignore[no-any-return]


def mitigation_study(
    scores: np.ndarray,
    history: sp.csr_matrix,
    held_out: Sequence[set[int]],
    item_ids: Sequence[str],
    *,
    segments: Sequence[str],
    gammas: Iterable[float] = GAMMAS,
) -> dict[str, Any]:
    """The audit of the penalised ranker at each ``gamma`` (users with held-out items),
    and the strongest penalty whose NDCG@10 cost is at most ``ACCEPTABLE_NDCG_COST``."""
    counts = np.asarray(history.sum(axis=0)).ravel()
    interactions = Counter({item_ids[i]: int(n) for i, n in enumerate(counts) if n})
    activity = np.diff(history.indptr)
    rows = [u for u, h in enumerate(held_out) if h]
    relevant = [{item_ids[i] for i in held_out[u]} for u in rows]
    study = []
    for gamma in sorted({0.0, *gammas}):  # 0 first: the unpenalised ranker is the baseline
        adjusted = popularity_penalty(scores[rows], counts, gamma)
        ranked = top_items(adjusted, history[rows])
        found = audit(
            [[item_ids[i] for i in r] for r in ranked],
            relevant,
            activity=[int(activity[u]) for u in rows],
            segments=[segments[u] for u in rows],
            catalogue_size=len(item_ids),
            interactions=interactions,
        )
        study.append(
            {
                "gamma": gamma,
                "ndcg@10": found.ndcg,
                "recall@10": found.recall,
                "coverage": found.coverage,
                "gini": found.gini,
                "long_tail_share": found.long_tail_share,
                "largest_gap": found.largest_gap,
            }
        )
    base = study[0]
    for row in study:
        row["ndcg_cost"] = (base["ndcg@10"] - row["ndcg@10"]) / base["ndcg@10"]
        row["long_tail_gain"] = row["long_tail_share"] - base["long_tail_share"]
        row["coverage_gain"] = row["coverage"] - base["coverage"]
    acceptable = [r for r in study if r["ndcg_cost"] <= ACCEPTABLE_NDCG_COST]
    return {
        "penalty": "s' = s - gamma * std(user's scores) * log(1 + n_i) / log(1 + max n)",
        "acceptable_ndcg_cost": ACCEPTABLE_NDCG_COST,
        "rows": study,
        "chosen_gamma": max(acceptable, key=lambda r: r["gamma"])["gamma"],
    }


def segments_of(scorer: ItemScorer, history: sp.csr_matrix) -> list[str]:
    """Each row's segment name, as the runtime picks it from a history alone (weights 1)."""
    no_affinity = np.zeros(len(scorer.genre_names), np.float32)
    found = []
    for u in range(history.shape[0]):
        idx = history.indices[history.indptr[u] : history.indptr[u + 1]].astype(np.int64)
        segment = scorer.segment(idx, np.ones(len(idx), np.float32), no_affinity)
        found.append(scorer.segment_names[segment])
    return found


def served_audit(data: MovieLens, lam: float, seed: int = ranking.SEED) -> dict[str, Any]:
    """The served ranker (EASE + the runtime's blend, fit to the train part of the
    evaluation's split) audited on that split's test part, and the mitigation study."""
    split = ranking.holdout_split(ranking.full_matrix(data), ranking.TEST_FRACTION, seed)
    scorer = ItemScorer(ranking.build_artefacts(data, split.train, lam, seed))
    scores = scorer.score_users(split.train.toarray())
    segments = segments_of(scorer, split.train)
    study = mitigation_study(scores, split.train, split.held_out, data.item_ids, segments=segments)
    rows = [u for u, h in enumerate(split.held_out) if h]
    ranked = top_items(scores[rows], split.train[rows])
    counts = np.asarray(split.train.sum(axis=0)).ravel()
    found = audit(
        [[data.item_ids[i] for i in r] for r in ranked],
        [{data.item_ids[i] for i in split.held_out[u]} for u in rows],
        activity=[int(n) for n in np.diff(split.train.indptr)[rows]],
        segments=[segments[u] for u in rows],
        catalogue_size=data.n_items,
        interactions=Counter({data.item_ids[i]: int(n) for i, n in enumerate(counts) if n}),
    )
    return {"model": "ease (served)", "lambda": lam, "audit": found.as_json(), "mitigation": study}
