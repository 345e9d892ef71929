"""recommend's own Prometheus metrics, on the shared mechanism (rapport.common.metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from rapport.common.drift_monitor import DriftGauges
from rapport.common.metrics import LATENCY_BUCKETS_S, Metrics

RECOMMEND_TRITON_DURATION = "rapport_recommend_triton_duration_seconds"
RECOMMEND_TRITON_ERRORS = "rapport_recommend_triton_errors"
RECOMMEND_FALLBACKS = "rapport_recommend_fallbacks"
RECOMMEND_CIRCUIT_STATE = "rapport_recommend_circuit_state"
RECOMMEND_BANDIT_CHOICES = "rapport_recommend_bandit_choices"
RECOMMEND_PROFILE_FALLBACKS = "rapport_recommend_profile_fallbacks"
RECOMMEND_CATALOGUE_COVERAGE = "rapport_recommend_catalogue_coverage"
RECOMMEND_EXPOSURE_GINI = "rapport_recommend_exposure_gini"
RECOMMEND_LONG_TAIL_SHARE = "rapport_recommend_long_tail_share"
RECOMMEND_FALLBACK_SHARE = "rapport_recommend_fallback_share"
RECOMMEND_CATALOG_OVERLAY_ITEMS = "rapport_recommend_catalog_overlay_items"
RECOMMEND_CATALOG_RECORDS = "rapport_recommend_catalog_records"
RECOMMEND_CATALOG_LAG = "rapport_recommend_catalog_lag_records"


CIRCUIT_STATES = {"closed": 0, "half-opened": 1, "opened": 2}


@dataclass
class RecommendMetrics(Metrics):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.triton_duration = Histogram(
            RECOMMEND_TRITON_DURATION,
            "Triton inference calls (gRPC round trip), by model.",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.triton_errors = Counter(
            RECOMMEND_TRITON_ERRORS,
            "Failed Triton calls, by model and reason (timeout, unavailable, error).",
            ["model", "reason"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            RECOMMEND_FALLBACKS,
            "Responses served without a model, by reason (circuit_open, timeout, error).",
            ["reason"],
            registry=self.registry,
        )
        self.circuit_state = Gauge(
            RECOMMEND_CIRCUIT_STATE,
            "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open.",
            ["circuit"],
            registry=self.registry,
        )
        self.admission_limit = Gauge(
            "rapport_recommend_model_admission_limit",
            "Requests one process admits to Triton at once now (follows their latency, AIMD).",
            registry=self.registry,
        )
        self.profile_fallbacks = Counter(
            RECOMMEND_PROFILE_FALLBACKS,
            "Profile reads that went to the profile service's API instead of the view it "
            "publishes in Redis, by reason (not_published, redis_error, unreadable).",
            ["reason"],
            registry=self.registry,
        )
        self.admission_waiting = Gauge(
            "rapport_recommend_model_admission_waiting",
            "Requests waiting for a place at Triton now (past the admission limit).",
            registry=self.registry,
        )
        self.catalog_overlay_items = Gauge(
            RECOMMEND_CATALOG_OVERLAY_ITEMS,
            "New items in the catalogue overlay (every tenant's): candidates the model "
            "was not trained on.",
            registry=self.registry,
        )
        self.catalog_records = Counter(
            RECOMMEND_CATALOG_RECORDS,
            "Catalogue records read, by outcome (upsert, delete, invalid, tombstone).",
            ["outcome"],
            registry=self.registry,
        )
        self.catalog_lag = Gauge(
            RECOMMEND_CATALOG_LAG,
            "Records of rapport.catalog.v1 not read into the overlay yet (every partition).",
            registry=self.registry,
        )
        self.bandit_choices = Counter(
            RECOMMEND_BANDIT_CHOICES,
            "Arms chosen by the exploration bandit, by policy and arm.",
            ["policy", "arm"],
            registry=self.registry,
        )
        # Drift of message understanding (rapport_drift_*) and the exposure of what is
        # served, over the last rankings (source: served) and in the model's training-time
        # reference, its top-10 for the training users (source: reference).
        self.drift = DriftGauges(self.registry)
        self.catalogue_coverage = Gauge(
            RECOMMEND_CATALOGUE_COVERAGE,
            "Share of the catalogue served at least once in the last rankings (served) and "
            "in the reference (the model's top-10 for its training users).",
            ["source"],
            registry=self.registry,
        )
        self.exposure_gini = Gauge(
            RECOMMEND_EXPOSURE_GINI,
            "Gini coefficient of the exposure counts over the catalogue (0 even, 1 all on "
            "one item), in the last rankings (served) and in the reference.",
            ["source"],
            registry=self.registry,
        )
        self.long_tail_share = Gauge(
            RECOMMEND_LONG_TAIL_SHARE,
            "Share of served slots given to items outside the popular head (the items "
            "that make half the training interactions), served and in the reference.",
            ["source"],
            registry=self.registry,
        )
        self.fallback_share = Gauge(
            RECOMMEND_FALLBACK_SHARE,
            "Share of the last rankings served by the fallback instead of the model.",
            registry=self.registry,
        )
