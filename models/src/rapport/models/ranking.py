"""Item scorer training and evaluation on MovieLens-100K (implicit feedback).

Protocol (documented in models/README.md): every rating is a positive; per user,
a random 20% of their ratings (seeded) is held out as test. Hyper-parameters are
chosen on a validation split carved the same way from the 80% train part, never
on test; the chosen models are then refit on the whole train part and scored on
test. Training items are excluded from each user's top 10.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans
from tqdm import tqdm

from rapport.models import runtime_files
from rapport.models.metrics import mean_metrics
from rapport.models.movielens import MovieLens
from rapport.models.runtime.item_runtime import ARTEFACT, ItemScorer

RUNTIME_MODULE = "item_runtime"
K = 10
SEED = 42
TEST_FRACTION = 0.2
EASE_LAMBDAS = (50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0, 2000.0)
KNN_NEIGHBOURS = (25, 50, 100, 200, 400)
KNN_SHRINKS = (0.0, 10.0, 100.0)
# k-means users by genre profile; 6 gave the best silhouette among 4..10 with
# distinct names (all were ~0.2: tastes overlap). See models/README.md.
N_SEGMENTS = 6
# Runtime blend constants (see item_runtime): a small popularity prior that
# orders cold starts and breaks ties, and how much a category affinity lifts it.
POPULARITY_WEIGHT = 0.01
AFFINITY_WEIGHT = 0.1

Scorer = Callable[[sp.csr_matrix], np.ndarray]


@dataclass(frozen=True)
class Split:
    train: sp.csr_matrix  # users x items, 1 where the user rated the item
    held_out: list[set[int]]


def interaction_matrix(
    users: np.ndarray, items: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    data = np.ones(len(users), np.float32)
    matrix = sp.csr_matrix((data, (users, items)), shape=shape, dtype=np.float32)
    matrix.data[:] = 1.0  # repeated pairs count once
    return matrix


def holdout_split(matrix: sp.csr_matrix, fraction: float, seed: int) -> Split:
    """Per user, hold out round(fraction * n) of their items at random (at least one)."""
    rng = np.random.default_rng(seed)
    rows, cols, held = [], [], []
    for u in range(matrix.shape[0]):
        items = matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]].copy()
        rng.shuffle(items)
        n_out = max(1, round(fraction * len(items))) if len(items) > 1 else 0
        held.append({int(i) for i in items[:n_out]})
        kept = items[n_out:]
        rows.extend([u] * len(kept))
        cols.extend(kept.tolist())
    train = interaction_matrix(np.array(rows), np.array(cols), matrix.shape)
    return Split(train=train, held_out=held)


# ---- models: each fits on a train matrix and returns an item-item matrix or scores -----


def popularity(train: sp.csr_matrix) -> np.ndarray:
    counts = np.asarray(train.sum(axis=0)).ravel().astype(np.float32)
    return counts / max(float(counts.max()), 1.0)


def ease(train: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE (Steck 2019): closed-form item-item regression with a zero diagonal."""
    gram = (train.T @ train).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    weights[np.diag_indices_from(weights)] = 0.0
    result: np.ndarray = weights.astype(np.float32)
    return result


def item_knn(train: sp.csr_matrix, neighbours: int, shrink: float) -> np.ndarray:
    """Item-based kNN: cosine similarity with shrinkage, top `neighbours` per item."""
    gram = (train.T @ train).toarray().astype(np.float32)
    norms = np.sqrt(np.diag(gram))
    sim = gram / (np.outer(norms, norms) + shrink + 1e-9)
    sim[np.diag_indices_from(sim)] = 0.0
    if neighbours < sim.shape[0]:
        # keep, for each target item (column), its `neighbours` most similar items
        cut = np.partition(sim, -neighbours, axis=0)[-neighbours]
        sim[sim < cut[None, :]] = 0.0
    result: np.ndarray = sim
    return result


def top_k(scores: np.ndarray, train: sp.csr_matrix, k: int = K) -> list[list[int]]:
    scores = scores.astype(np.float32, copy=True)
    scores[train.nonzero()] = -np.inf
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1).tolist()  # type: ignore[no-any-return]


def evaluate_scores(scores: np.ndarray, split: Split, k: int = K) -> dict[str, float]:
    return mean_metrics(top_k(scores, split.train, k), split.held_out, k)


# ---- the runtime's artefacts -------------------------------------------------------------


def user_genre_profiles(train: sp.csr_matrix, genres: np.ndarray) -> np.ndarray:
    """Each user's genre distribution, as the runtime computes it (weights 1)."""
    share = genres / np.maximum(genres.sum(axis=1, keepdims=True), 1.0)
    profiles = np.asarray(train @ share, dtype=np.float32)
    totals = profiles.sum(axis=1, keepdims=True)
    return np.where(totals > 0, profiles / np.maximum(totals, 1e-9), 0.0).astype(np.float32)


def segment_names(
    centroids: np.ndarray, global_profile: np.ndarray, genre_names: list[str]
) -> list[str]:
    """Name a segment by its characteristic genres: share x lift over all users.

    Lift alone would name a mixed segment after a rare genre it barely watches.
    """
    names: list[str] = []
    seen: list[set[int]] = []
    for centroid in centroids:
        share = np.maximum(centroid, 0.0)
        characteristic = share * share / np.maximum(global_profile, 1e-9)
        order = [int(c) for c in np.argsort(-characteristic)]
        for width in (2, 3, 4):
            if set(order[:width]) not in seen:
                break
        seen.append(set(order[:width]))
        names.append(" & ".join(genre_names[c] for c in order[:width]))
    return names


def build_artefacts(
    data: MovieLens, train: sp.csr_matrix, lam: float, seed: int = SEED
) -> dict[str, np.ndarray]:
    profiles = user_genre_profiles(train, data.genres)
    kmeans = KMeans(n_clusters=N_SEGMENTS, n_init=10, random_state=seed).fit(profiles)
    centroids = kmeans.cluster_centers_.astype(np.float32)
    global_profile = profiles.mean(axis=0).astype(np.float32)
    return {
        "item_ids": np.array(data.item_ids),
        "titles": np.array(data.titles),
        "genre_names": np.array(data.genre_names),
        "genres": data.genres,
        "similarity": ease(train, lam),
        "popularity": popularity(train),
        "centroids": centroids,
        "segment_names": np.array(segment_names(centroids, global_profile, data.genre_names)),
        "global_profile": global_profile,
        "affinity_weight": np.array(AFFINITY_WEIGHT, np.float32),
        "popularity_weight": np.array(POPULARITY_WEIGHT, np.float32),
        "ease_lambda": np.array(lam, np.float32),
    }


# ---- model selection and the evaluation table --------------------------------------------


def _ease_scorer(lam: float) -> Scorer:
    def scores(train: sp.csr_matrix) -> np.ndarray:
        result: np.ndarray = train.toarray() @ ease(train, lam)
        return result

    return scores


def _knn_scorer(neighbours: int, shrink: float) -> Scorer:
    def scores(train: sp.csr_matrix) -> np.ndarray:
        return np.asarray(train @ item_knn(train, neighbours, shrink))

    return scores


@dataclass
class RankingEvaluation:
    protocol: dict[str, Any]
    validation: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    chosen: dict[str, Any] = field(default_factory=dict)
    test: list[dict[str, Any]] = field(default_factory=list)


def full_matrix(data: MovieLens) -> sp.csr_matrix:
    return interaction_matrix(data.users, data.items, (data.n_users, data.n_items))


def evaluate(data: MovieLens, *, seed: int = SEED, progress: bool = True) -> RankingEvaluation:
    outer = holdout_split(full_matrix(data), TEST_FRACTION, seed)
    inner = holdout_split(outer.train, TEST_FRACTION, seed + 1)
    result = RankingEvaluation(
        protocol={
            "dataset": "MovieLens-100K (recbole 1.2.1 copy), every rating an implicit positive",
            "split": f"per-user random holdout, {TEST_FRACTION:.0%} test, seed {seed}",
            "validation": f"per-user random {TEST_FRACTION:.0%} of train, seed {seed + 1}",
            "k": K,
            "users": data.n_users,
            "items": data.n_items,
            "train_interactions": int(outer.train.nnz),
            "test_interactions": sum(len(h) for h in outer.held_out),
        }
    )
    grid: list[tuple[str, dict[str, float], Scorer]] = [
        ("ease", {"lambda": lam}, _ease_scorer(lam)) for lam in EASE_LAMBDAS
    ]
    grid += [
        ("item_knn", {"neighbours": n, "shrink": s}, _knn_scorer(n, s))
        for n in KNN_NEIGHBOURS
        for s in KNN_SHRINKS
    ]
    for name, params, scorer in tqdm(grid, desc="validation grid", disable=not progress):
        metrics = evaluate_scores(scorer(inner.train), inner)
        result.validation.setdefault(name, []).append({**params, **metrics})
    for name, rows in result.validation.items():
        best = max(rows, key=lambda r: r[f"ndcg@{K}"])
        result.chosen[name] = {p: v for p, v in best.items() if "@" not in p}

    lam = float(result.chosen["ease"]["lambda"])
    knn = result.chosen["item_knn"]
    steps = tqdm(total=3, desc="test", disable=not progress)
    pop = popularity(outer.train)
    result.test.append(
        {"model": "popularity", **evaluate_scores(np.tile(pop, (data.n_users, 1)), outer)}
    )
    steps.update()
    knn_scores = np.asarray(
        outer.train @ item_knn(outer.train, int(knn["neighbours"]), float(knn["shrink"]))
    )
    result.test.append({"model": "item_knn", **knn, **evaluate_scores(knn_scores, outer)})
    steps.update()
    # The served scorer itself: the runtime code on artefacts fit to the train part.
    scorer = ItemScorer(build_artefacts(data, outer.train, lam, seed))
    served = scorer.score_users(outer.train.toarray())
    result.test.append({"model": "ease", "lambda": lam, **evaluate_scores(served, outer)})
    steps.update()
    steps.close()
    return result


# ---- the served model ----------------------------------------------------------------------


def choose_lambda(data: MovieLens, seed: int = SEED, progress: bool = True) -> float:
    """EASE's lambda by NDCG@10 on the validation split carved from train (never test)."""
    outer = holdout_split(full_matrix(data), TEST_FRACTION, seed)
    inner = holdout_split(outer.train, TEST_FRACTION, seed + 1)
    dense = inner.train.toarray()
    found = {
        lam: evaluate_scores(dense @ ease(inner.train, lam), inner)[f"ndcg@{K}"]
        for lam in tqdm(EASE_LAMBDAS, desc="choose lambda", disable=not progress)
    }
    return float(max(found, key=lambda lam: found[lam]))


def train_served(data: MovieLens, lam: float, seed: int = SEED) -> dict[str, np.ndarray]:
    """The exported scorer learns from every rating (evaluation used the train part only)."""
    return build_artefacts(data, full_matrix(data), lam, seed)


def save(arrays: dict[str, np.ndarray], out: Path, metadata: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / ARTEFACT, allow_pickle=False, **arrays)
    runtime_files.copy_runtime(RUNTIME_MODULE, out)
    (out / "metadata.json").write_text(
        json.dumps({"model": "item_scorer", **metadata}, indent=2) + "\n"
    )
    return out


def load(directory: Path) -> ItemScorer:
    """The runtime scorer, imported from the module file inside ``directory``."""
    module = runtime_files.load_runtime(directory, RUNTIME_MODULE)
    scorer: ItemScorer = module.ItemScorer.load(directory)
    return scorer
