"""Retraining the item scorer from Rapport's own interactions, behind a gate.

1. **Interactions**: one tenant's positives from the events topic, less erased and
   opted-out users (:mod:`rapport.models.interactions`).
2. **Time split**: the newest ``holdout_fraction`` of the interactions by
   ``occurred_at`` (or the last ``holdout_days``) is the holdout; the cutoff is the
   first held-out time. Evaluated users: those with a positive on both sides. Each is
   ranked from their history before the cutoff (as profile would hand it to the model);
   their relevant items are the held-out items they had not seen before it.
3. **Candidate**: EASE and the runtime's blend (:func:`ranking.build_artefacts`) trained
   on the interactions before the cutoff, optionally with the public data
   (MovieLens-100K): the union of both sets of positives (MovieLens users are rows of
   their own) over the union of the catalogues. Its catalogue is the served one, plus
   the public items, the items posted on the catalogue topic (titles and categories) and
   the items seen in events, less the items the catalogue topic deleted. EASE's lambda
   is the served model's, or with ``tune_lambda`` the best NDCG@10 on a second time
   split carved the same way from the pre-cutoff interactions (never the holdout).
4. **Served**: the item_scorer version Triton serves now (the highest in the
   repository), through its own runtime file.
5. Both are scored on the same users with the same histories (NDCG@10, recall@10),
   through the runtime code. An item a model does not know can be neither a history
   item it reads nor an item it ranks: a held-out item outside its catalogue is a miss
   for it. That is part of the comparison (a model that knows new items can rank them).
   Both are audited (:mod:`rapport.models.bias`) with the same denominators: coverage
   over the union of both catalogues, the popular head from the pre-cutoff
   interactions, activity groups from the users' pre-cutoff counts, and segments as the
   served runtime assigns them (so both models' groups are the same users).
6. **Gate** (:func:`gate`): export only when the candidate is better by a margin and
   no less fair and no narrower (see :class:`Margins`).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal
from urllib.request import urlopen

import numpy as np
import scipy.sparse as sp
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile
from prometheus_client import Counter as PromCounter
from prometheus_client.parser import text_string_to_metric_families

from rapport.models import bias, export, ranking, references
from rapport.models.interactions import CatalogLog, Interaction, Interactions
from rapport.models.metrics import mean_metrics
from rapport.models.movielens import MovieLens
from rapport.models.runtime.item_runtime import ItemScorer

log = logging.getLogger(__name__)

K = ranking.K
DEFAULT_HOLDOUT_FRACTION = 0.2
# Fewer evaluated users than this in the inner split: lambda is the served model's.
MIN_VALIDATION_USERS = 10
# When the served model's metadata does not say: what ranking's validation chose on all of
# MovieLens-100K (models/reports/evaluation.md).
DEFAULT_LAMBDA = 500.0
BOOTSTRAP_SAMPLES = 1000
PUBLIC_PREFIX = "public:"  # labels only: public users are rows of their own whatever their ids
SCORE_BATCH = 512  # users scored at once: a dense (users x items) block
Outcome = Literal["exported", "kept"]


class RetrainError(RuntimeError):
    """The run cannot go on (no served model, an unreadable repository)."""


class NotEnoughData(RuntimeError):
    """Too little to train or compare on: the served model is kept."""


@dataclass(frozen=True)
class Margins:
    """The gate's margins, absolute.

    ``ndcg`` 0.005: the smallest gain worth a rollout, about 2-3% of the ~0.2 NDCG@10 a
    time holdout gives (a rollout has a cost: caches of the old model's answers, a new
    version to watch). It is not a significance test: the report carries the paired
    bootstrap interval of the difference, wide on a small holdout. ``gap`` 0.02 and
    ``coverage`` 0.02: the candidate may not widen the largest NDCG@10 gap between user
    groups, nor serve less of the catalogue, by more than two points; a group's mean
    NDCG@10 moves by more than that between samples (30 users: a standard error of
    about 0.04), so a tighter margin would refuse on noise.
    """

    ndcg: float = 0.005
    gap: float = 0.02
    coverage: float = 0.02


@dataclass(frozen=True)
class GateFigures:
    ndcg: float
    largest_gap: float
    coverage: float


@dataclass(frozen=True)
class Decision:
    export: bool
    refusals: tuple[str, ...]
    deltas: dict[str, float]


def gate(candidate: GateFigures, served: GateFigures, margins: Margins) -> Decision:
    """Export only if the candidate's NDCG@10 >= served + ``ndcg``, its largest gap <=
    served's + ``gap``, and its coverage >= served's - ``coverage``; a reason per refusal."""
    deltas = {
        "ndcg@10": candidate.ndcg - served.ndcg,
        "largest_gap": candidate.largest_gap - served.largest_gap,
        "coverage": candidate.coverage - served.coverage,
    }
    refusals = []
    if candidate.ndcg < served.ndcg + margins.ndcg:
        refusals.append(
            f"NDCG@10 {candidate.ndcg:.4f} is not at least the served {served.ndcg:.4f} "
            f"+ {margins.ndcg:g} (delta {deltas['ndcg@10']:+.4f})"
        )
    if candidate.largest_gap > served.largest_gap + margins.gap:
        refusals.append(
            f"largest NDCG@10 gap between user groups {candidate.largest_gap:.4f} is wider "
            f"than the served {served.largest_gap:.4f} + {margins.gap:g}"
        )
    if candidate.coverage < served.coverage - margins.coverage:
        refusals.append(
            f"catalogue coverage {candidate.coverage:.4f} is below the served "
            f"{served.coverage:.4f} - {margins.coverage:g}"
        )
    return Decision(export=not refusals, refusals=tuple(refusals), deltas=deltas)


# ---- the catalogue --------------------------------------------------------------------------


@dataclass(frozen=True)
class Catalogue:
    item_ids: list[str]
    titles: list[str]
    categories: list[tuple[str, ...]]

    def genre_names(self) -> list[str]:
        return sorted({c for cs in self.categories for c in cs})

    def genre_matrix(self, names: Sequence[str]) -> np.ndarray:
        column = {name: c for c, name in enumerate(names)}
        genres = np.zeros((len(self.item_ids), len(names)), np.float32)
        for i, cs in enumerate(self.categories):
            genres[i, [column[c] for c in cs]] = 1.0
        return genres

    def as_json(self) -> list[dict[str, object]]:
        return [
            {"item_id": i, "title": t, "categories": list(c)}
            for i, t, c in zip(self.item_ids, self.titles, self.categories, strict=True)
        ]


def scorer_catalogue(scorer: ItemScorer) -> Catalogue:
    return Catalogue(
        item_ids=list(scorer.item_ids),
        titles=list(scorer.titles),
        categories=[
            tuple(scorer.genre_names[c] for c in np.flatnonzero(row)) for row in scorer.genres
        ],
    )


def merged_catalogue(
    served: Catalogue,
    *,
    public: MovieLens | None,
    posted: CatalogLog | None,
    seen: Iterable[str],
    seen_categories: dict[str, str],
) -> Catalogue:
    """The served catalogue, then the public items, the posted ones and the items seen in
    events (in that order, each item once); a posted item's title and categories win, an
    event's category names an item nothing else describes; deleted items are dropped."""
    entries: dict[str, tuple[str, tuple[str, ...]]] = {}
    for item, title, cs in zip(served.item_ids, served.titles, served.categories, strict=True):
        entries[item] = (title, cs)
    if public is not None:
        for i, item in enumerate(public.item_ids):
            names = tuple(public.genre_names[c] for c in np.flatnonzero(public.genres[i]))
            entries.setdefault(item, (public.titles[i], names))
    if posted is not None:
        for item, entry in posted.items.items():
            entries[item] = (entry.title, entry.categories)
    for item in seen:
        category = seen_categories.get(item)
        entries.setdefault(item, (item, (category,) if category else ()))
    deleted = posted.deleted if posted is not None else set()
    kept = [(item, entry) for item, entry in entries.items() if item not in deleted]
    return Catalogue(
        item_ids=[item for item, _ in kept],
        titles=[title for _, (title, _) in kept],
        categories=[cs for _, (_, cs) in kept],
    )


# ---- the time split ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeSplit:
    cutoff: float  # the first held-out time (seconds since the epoch)
    train: list[Interaction]
    holdout: list[Interaction]


def time_split(
    rows: Sequence[Interaction],
    *,
    fraction: float = DEFAULT_HOLDOUT_FRACTION,
    days: float | None = None,
) -> TimeSplit:
    """The newest ``fraction`` of ``rows`` by time (or those in the last ``days``) held out;
    rows at the cutoff time are held out with it."""
    if not rows:
        raise NotEnoughData("no interactions to split")
    if not 0.0 < fraction < 1.0:
        raise ValueError("the holdout fraction is between 0 and 1")
    times = np.sort(np.array([r.at for r in rows], np.float64))
    if days is not None:
        cutoff = float(times[-1] - days * 86400.0)
    else:
        cutoff = float(times[min(len(times) - 1, math.floor(len(times) * (1.0 - fraction)))])
    return TimeSplit(
        cutoff=cutoff,
        train=[r for r in rows if r.at < cutoff],
        holdout=[r for r in rows if r.at >= cutoff],
    )


@dataclass(frozen=True)
class Holdout:
    """The evaluated users: a history before the cutoff and new items after it."""

    users: list[str]
    history: list[list[str]]  # distinct items before the cutoff, oldest first
    relevant: list[set[str]]  # held-out items not in the history
    cold_users: int  # held-out users with no history (not evaluated: nothing to rank from)

    def activity(self) -> list[int]:
        return [len(h) for h in self.history]


def holdout_users(split: TimeSplit) -> Holdout:
    history: dict[str, dict[str, None]] = {}  # a dict keeps the first time each was seen
    for row in sorted(split.train, key=lambda r: r.at):
        history.setdefault(row.user_id, {}).setdefault(row.item_id)
    later: dict[str, set[str]] = {}
    for row in split.holdout:
        later.setdefault(row.user_id, set()).add(row.item_id)
    users, histories, relevant = [], [], []
    cold = 0
    for user in sorted(later):
        if user not in history:
            cold += 1
            continue
        new = later[user] - set(history[user])
        if new:
            users.append(user)
            histories.append(list(history[user]))
            relevant.append(new)
    return Holdout(users=users, history=histories, relevant=relevant, cold_users=cold)


# ---- training the candidate -------------------------------------------------------------------


def training_matrix(
    catalogue: Catalogue, rows: Sequence[Interaction], public: MovieLens | None
) -> tuple[sp.csr_matrix, list[str]]:
    """Users x catalogue items, 1 per positive: the public users' rows first (if any),
    then Rapport's users'; items outside the catalogue are dropped."""
    column = {item: i for i, item in enumerate(catalogue.item_ids)}
    user_ids: list[str] = []
    users: list[int] = []
    items: list[int] = []
    if public is not None:
        user_ids += [PUBLIC_PREFIX + u for u in public.user_ids]
        public_columns = np.array([column.get(item, -1) for item in public.item_ids])
        mapped = public_columns[public.items]
        users += public.users[mapped >= 0].tolist()
        items += mapped[mapped >= 0].tolist()
    # Rows in user id order, not the order the topic's partitions were read in: k-means
    # (the segments) depends on the row order, and two reads must train the same model.
    known = sorted({row.user_id for row in rows if row.item_id in column})
    row_of = {user: len(user_ids) + n for n, user in enumerate(known)}
    user_ids += known
    for row in rows:
        c = column.get(row.item_id)
        if c is not None:
            users.append(row_of[row.user_id])
            items.append(c)
    matrix = ranking.interaction_matrix(
        np.array(users, np.int64),
        np.array(items, np.int64),
        (len(user_ids), len(catalogue.item_ids)),
    )
    return matrix, user_ids


def as_movielens(catalogue: Catalogue, matrix: sp.csr_matrix, user_ids: list[str]) -> MovieLens:
    """The catalogue and positives in the shape ranking and references read."""
    names = catalogue.genre_names()
    coo = matrix.tocoo()
    return MovieLens(
        item_ids=catalogue.item_ids,
        titles=catalogue.titles,
        genre_names=names,
        genres=catalogue.genre_matrix(names),
        users=coo.row.astype(np.int64),
        items=coo.col.astype(np.int64),
        timestamps=np.zeros(coo.nnz, np.float64),
        user_ids=user_ids,
    )


def choose_lambda(
    catalogue: Catalogue,
    rows: Sequence[Interaction],
    public: MovieLens | None,
    *,
    fraction: float,
    fallback: float,
) -> tuple[float, dict[str, float]]:
    """EASE's lambda by NDCG@10 on a time split of ``rows`` (the pre-cutoff interactions)
    carved like the outer one; ``fallback`` when that split has too few users."""
    try:
        inner = time_split(rows, fraction=fraction)
    except NotEnoughData:
        return fallback, {}
    users = holdout_users(inner)
    if len(users.users) < MIN_VALIDATION_USERS:
        return fallback, {}
    matrix, _ = training_matrix(catalogue, inner.train, public)
    column = {item: i for i, item in enumerate(catalogue.item_ids)}
    history = _history_matrix(users.history, column)
    relevant = [{column[i] for i in r if i in column} for r in users.relevant]
    dense = history.toarray()
    found = {}
    for lam in ranking.EASE_LAMBDAS:
        ranked = bias.top_items(dense @ ranking.ease(matrix, lam), history)
        found[lam] = mean_metrics(ranked, relevant, K)[f"ndcg@{K}"]
    return float(max(found, key=lambda lam: found[lam])), {str(k): v for k, v in found.items()}


def _history_matrix(histories: Sequence[Sequence[str]], column: dict[str, int]) -> sp.csr_matrix:
    rows = [r for r, h in enumerate(histories) for item in h if item in column]
    cols = [column[item] for h in histories for item in h if item in column]
    return ranking.interaction_matrix(
        np.array(rows, np.int64), np.array(cols, np.int64), (len(histories), len(column))
    )


# ---- scoring both models ------------------------------------------------------------------------


def rank(scorer: ItemScorer, histories: Sequence[Sequence[str]], k: int = K) -> list[list[str]]:
    """Each user's top ``k`` item ids from ``scorer``, as the runtime scores a history
    (weights 1, no affinities), history excluded; unknown history items are ignored."""
    ranked: list[list[str]] = []
    for start in range(0, len(histories), SCORE_BATCH):
        history = _history_matrix(histories[start : start + SCORE_BATCH], scorer.index)
        scores = scorer.score_users(history.toarray())
        ranked += [[scorer.item_ids[i] for i in row] for row in bias.top_items(scores, history, k)]
    return ranked


@dataclass(frozen=True)
class ModelResult:
    name: str
    version: str | None
    items: int
    metrics: dict[str, float]
    audit: bias.Audit
    unknown_relevant_share: float  # held-out items the model cannot rank
    per_user_ndcg: list[float] = field(repr=False)

    def figures(self) -> GateFigures:
        return GateFigures(self.audit.ndcg, self.audit.largest_gap, self.audit.coverage)

    def as_json(self) -> dict[str, Any]:
        found = asdict(self)
        found.pop("per_user_ndcg")
        return found


def evaluate(
    name: str,
    scorer: ItemScorer,
    holdout: Holdout,
    *,
    version: str | None,
    segments: Sequence[str],
    catalogue_size: int,
    interactions: Counter[str],
) -> ModelResult:
    ranked = rank(scorer, holdout.history)
    found = bias.audit(
        ranked,
        holdout.relevant,
        activity=holdout.activity(),
        segments=segments,
        catalogue_size=catalogue_size,
        interactions=interactions,
    )
    relevant = [item for r in holdout.relevant for item in r]
    unknown = sum(item not in scorer.index for item in relevant) / max(1, len(relevant))
    ndcg, _ = bias.per_user(ranked, holdout.relevant)
    return ModelResult(
        name=name,
        version=version,
        items=len(scorer.item_ids),
        metrics=mean_metrics(ranked, holdout.relevant, K),
        audit=found,
        unknown_relevant_share=unknown,
        per_user_ndcg=ndcg.tolist(),
    )


def compare(
    candidate: ItemScorer,
    served: ItemScorer,
    holdout: Holdout,
    interactions: Counter[str],
    *,
    served_version: str | None = None,
) -> tuple[ModelResult, ModelResult]:
    """Both models on the same users, with the same denominators (module docstring)."""
    if not holdout.users:
        raise NotEnoughData("no held-out user has a history before the cutoff")
    segments = bias.segments_of(served, _history_matrix(holdout.history, served.index))
    size = len(set(candidate.item_ids) | set(served.item_ids))
    scored = partial(
        evaluate, holdout=holdout, segments=segments, catalogue_size=size, interactions=interactions
    )
    return (
        scored("candidate", candidate, version=None),
        scored("served", served, version=served_version),
    )


def ndcg_delta_interval(
    candidate: Sequence[float], served: Sequence[float], seed: int = ranking.SEED
) -> tuple[float, float]:
    """95% paired bootstrap interval of the mean NDCG@10 difference (users resampled)."""
    diff = np.asarray(candidate) - np.asarray(served)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (BOOTSTRAP_SAMPLES, len(diff)))].mean(axis=1)
    low, high = np.quantile(means, (0.025, 0.975))
    return float(low), float(high)


# ---- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainConfig:
    repository: Path
    catalog: Path
    tenant: str
    with_public: bool = False
    public_before: datetime | None = None  # only public ratings made before then
    since: datetime | None = None  # the candidate learns only from events since then
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION
    holdout_days: float | None = None
    margins: Margins = field(default_factory=Margins)
    # EASE's lambda: the served model's (chosen on the public data's validation split),
    # or, tuned, by a time split of the pre-cutoff interactions (models/README.md)
    tune_lambda: bool = False
    dry_run: bool = False
    keep: int = export.KEEP_VERSIONS
    seed: int = ranking.SEED


@dataclass
class RetrainResult:
    outcome: Outcome
    reason: str
    tenant: str
    protocol: dict[str, Any] = field(default_factory=dict)
    candidate: ModelResult | None = None
    served: ModelResult | None = None
    decision: Decision | None = None
    exported: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "model": "item_scorer",
            "tenant": self.tenant,
            "outcome": self.outcome,
            "reason": self.reason,
            "protocol": self.protocol,
            "candidate": self.candidate.as_json() if self.candidate else None,
            "served": self.served.as_json() if self.served else None,
            "decision": asdict(self.decision) if self.decision else None,
            "exported": self.exported,
        }

    def line(self) -> str:
        """The one log line: outcome and deltas."""
        deltas = self.decision.deltas if self.decision else {}
        shown = " ".join(f"{name} {value:+.4f}" for name, value in deltas.items())
        return f"retrain item_scorer tenant={self.tenant}: {self.outcome} ({self.reason}) {shown}"


def latest_served(repository: Path) -> tuple[Path, int]:
    try:
        version = export.served_version(repository, "item_scorer")
    except FileNotFoundError as exc:
        raise RetrainError(
            f"no item_scorer in {repository}: export a model first (rapport-models export)"
        ) from exc
    return repository / "item_scorer" / str(version), version


def _served_lambda(directory: Path) -> float:
    metadata = directory / "metadata.json"
    if metadata.is_file():
        found = json.loads(metadata.read_text()).get("ease_lambda")
        if isinstance(found, int | float):
            return float(found)
    return DEFAULT_LAMBDA


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def retrain(
    config: RetrainConfig,
    interactions: Interactions,
    posted: CatalogLog | None = None,
    public: MovieLens | None = None,
) -> RetrainResult:
    """Train, compare, gate and (unless a dry run) export; the reading is the caller's.
    ``public``: the public data to combine (with ``config.with_public``)."""
    result = RetrainResult(outcome="kept", reason="", tenant=config.tenant)
    served_dir, served_version = latest_served(config.repository)
    served = ranking.load(served_dir)
    if config.with_public and public is not None and config.public_before is not None:
        public = public.before(config.public_before.timestamp())
    public = public if config.with_public else None
    try:
        split = time_split(
            interactions.rows, fraction=config.holdout_fraction, days=config.holdout_days
        )
        holdout = holdout_users(split)
        since = config.since.timestamp() if config.since else -math.inf
        learn_from = [r for r in split.train if r.at >= since]
        catalogue = merged_catalogue(
            scorer_catalogue(served),
            public=public,
            posted=posted,
            seen=[r.item_id for r in split.train],
            seen_categories=interactions.categories,
        )
        result.protocol = {
            "cutoff": _iso(split.cutoff),
            "holdout_fraction": None if config.holdout_days else config.holdout_fraction,
            "holdout_days": config.holdout_days,
            "interactions": interactions.counts,
            "train_interactions": len(split.train),
            "learned_from": len(learn_from),
            "since": config.since.isoformat() if config.since else None,
            "holdout_interactions": len(split.holdout),
            "evaluated_users": len(holdout.users),
            "cold_holdout_users": holdout.cold_users,
            "with_public": public is not None,
            "public_before": config.public_before.isoformat() if config.public_before else None,
            "public_ratings": len(public.items) if public is not None else 0,
            "catalogue_items": len(catalogue.item_ids),
            "posted_items": len(posted.items) if posted else 0,
            "served_version": served_version,
        }
        lam = _served_lambda(served_dir)
        validation: dict[str, float] = {}
        if config.tune_lambda:
            lam, validation = choose_lambda(
                catalogue, learn_from, public, fraction=config.holdout_fraction, fallback=lam
            )
        matrix, user_ids = training_matrix(catalogue, learn_from, public)
        if matrix.shape[0] < ranking.N_SEGMENTS or matrix.nnz == 0:
            raise NotEnoughData(f"{matrix.shape[0]} users to learn from")
        data = as_movielens(catalogue, matrix, user_ids)
        arrays = ranking.build_artefacts(data, matrix, lam, config.seed)
        result.protocol |= {"ease_lambda": lam, "lambda_validation": validation}
        counts = Counter(r.item_id for r in split.train)
        candidate_result, served_result = compare(
            ItemScorer(arrays), served, holdout, counts, served_version=str(served_version)
        )
    except NotEnoughData as exc:
        result.reason = f"not enough data: {exc}"
        return result
    result.candidate, result.served = candidate_result, served_result
    result.protocol["ndcg_delta_ci95"] = ndcg_delta_interval(
        candidate_result.per_user_ndcg, served_result.per_user_ndcg
    )
    decision = gate(candidate_result.figures(), served_result.figures(), config.margins)
    result.decision = decision
    if not decision.export:
        result.reason = "; ".join(decision.refusals)
        return result
    if config.dry_run:
        result.reason = "the gate passed; dry run: nothing exported"
        return result
    metadata = {
        "source": "Rapport events"
        + (f" + {public.n_users} public users (MovieLens-100K)" if public is not None else ""),
        "tenant": config.tenant,
        "ease_lambda": lam,
        "cutoff": result.protocol["cutoff"],
        "reference": references.item_reference(data, arrays).model_dump(mode="json"),
    }
    with tempfile.TemporaryDirectory(prefix=".retrain-", dir=config.repository.parent) as tmp:
        folder = ranking.save(arrays, Path(tmp) / "item_scorer", metadata)
        result.exported = export.export_items(config.repository, folder, config.keep)
    export.write_beside_repository(config.catalog, catalogue.as_json(), config.repository)
    result.outcome = "exported"
    result.reason = f"the gate passed: item_scorer version {result.exported['item_scorer']}"
    return result


# ---- the outcome metric -----------------------------------------------------------------------

METRIC_JOB = "rapport-retrain"
OUTCOMES = ("exported", "kept", "error")
RUNS_METRIC = "rapport_models_retrain"  # a counter: exposed as rapport_models_retrain_total
DELTA_METRICS = {"ndcg@10": "ndcg_at_10", "largest_gap": "largest_gap", "coverage": "coverage"}


def _previous_runs(text: str, labels: dict[str, str]) -> dict[tuple[str, str], float]:
    """The run counts an exposition already holds (a textfile, a Pushgateway's /metrics),
    so the counter goes on counting across runs; ``labels``: the samples to read."""
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != f"{RUNS_METRIC}_total":
                continue
            if any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            key = (sample.labels.get("model", ""), sample.labels.get("outcome", ""))
            found[key] = found.get(key, 0.0) + sample.value
    return found


def outcome_registry(
    outcome: str,
    result: RetrainResult | None,
    previous: dict[tuple[str, str], float],
    *,
    now: float,
) -> CollectorRegistry:
    """The run counter (previous counts + this run) and the last run's deltas."""
    registry = CollectorRegistry()
    runs = PromCounter(
        RUNS_METRIC,
        "Retrain runs by outcome: exported (the gate passed), kept, or error.",
        ["model", "outcome"],
        registry=registry,
    )
    for name in OUTCOMES:
        runs.labels("item_scorer", name)  # every outcome present from the first run on
    for (model, name), value in previous.items():
        runs.labels(model, name).inc(value)
    runs.labels("item_scorer", outcome).inc()
    last = Gauge(
        "rapport_models_retrain_last_run_timestamp_seconds",
        "When the last retrain run ended.",
        ["model"],
        registry=registry,
    )
    last.labels("item_scorer").set(now)
    if result is not None and result.decision is not None:
        delta = Gauge(
            "rapport_models_retrain_delta",
            "The last run's candidate minus served, on the time holdout.",
            ["model", "metric"],
            registry=registry,
        )
        for name, value in result.decision.deltas.items():
            delta.labels("item_scorer", DELTA_METRICS[name]).set(value)
    return registry


def publish_outcome(
    outcome: str,
    result: RetrainResult | None,
    *,
    textfile: Path | None,
    pushgateway: str | None,
    tenant: str,
    now: float,
) -> None:
    """Write the node-exporter textfile and/or push to a Pushgateway (grouped by job and
    tenant). The counts continue from what the file or the gateway holds; a gateway that
    lost them restarts from 0, which Prometheus reads as a counter reset."""
    if textfile is not None:
        previous = _previous_runs(textfile.read_text(), {}) if textfile.is_file() else {}
        registry = outcome_registry(outcome, result, previous, now=now)
        textfile.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(textfile), registry)
    if pushgateway is not None:
        group = {"tenant": tenant}
        try:
            with urlopen(f"{pushgateway.rstrip('/')}/metrics", timeout=10) as answer:  # noqa: S310
                text = answer.read().decode()
        except OSError as exc:
            log.warning("could not read the previous counts from the Pushgateway: %s", exc)
            text = ""
        previous = _previous_runs(text, {"job": METRIC_JOB, **group})
        registry = outcome_registry(outcome, result, previous, now=now)
        push_to_gateway(pushgateway, job=METRIC_JOB, registry=registry, grouping_key=group)
