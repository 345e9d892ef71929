"""Top-k ranking metrics over binary relevance (one held-out set per user)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from collections.abc import Set as AbstractSet

import numpy as np

# Items are anything hashable: catalogue indices, or item ids when two models' catalogues differ.
Ranked = Sequence[Hashable]
Relevant = AbstractSet[Hashable]


def precision_at_k(ranked: Ranked, relevant: Relevant, k: int) -> float:
    """Hits in the top k divided by k."""
    return sum(1 for i in ranked[:k] if i in relevant) / k


def recall_at_k(ranked: Ranked, relevant: Relevant, k: int) -> float:
    """Hits in the top k divided by the number of held-out items."""
    if not relevant:
        return 0.0
    return sum(1 for i in ranked[:k] if i in relevant) / len(relevant)


def ndcg_at_k(ranked: Ranked, relevant: Relevant, k: int) -> float:
    """DCG of the top k (gain 1 per hit, discount log2(rank + 1)) over the ideal DCG."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / np.log2(r + 2) for r, i in enumerate(ranked[:k]) if i in relevant)
    ideal = sum(1.0 / np.log2(r + 2) for r in range(min(k, len(relevant))))
    return float(dcg / ideal)


def mean_metrics(
    rankings: Sequence[Ranked], held_out: Sequence[Relevant], k: int
) -> dict[str, float]:
    """Mean P@k, R@k and NDCG@k over users that have held-out items."""
    rows = [(r, h) for r, h in zip(rankings, held_out, strict=True) if h]
    return {
        f"precision@{k}": float(np.mean([precision_at_k(r, h, k) for r, h in rows])),
        f"recall@{k}": float(np.mean([recall_at_k(r, h, k) for r, h in rows])),
        f"ndcg@{k}": float(np.mean([ndcg_at_k(r, h, k) for r, h in rows])),
    }
