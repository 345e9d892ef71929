"""recommend's own Prometheus metrics, on the shared mechanism (rapport.common.metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from rapport.common.metrics import LATENCY_BUCKETS_S, Metrics

RECOMMEND_TRITON_DURATION = "rapport_recommend_triton_duration_seconds"
RECOMMEND_TRITON_ERRORS = "rapport_recommend_triton_errors"
RECOMMEND_FALLBACKS = "rapport_recommend_fallbacks"
RECOMMEND_CIRCUIT_STATE = "rapport_recommend_circuit_state"
RECOMMEND_BANDIT_CHOICES = "rapport_recommend_bandit_choices"
RECOMMEND_PROFILE_FALLBACKS = "rapport_recommend_profile_fallbacks"


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
        self.bandit_choices = Counter(
            RECOMMEND_BANDIT_CHOICES,
            "Arms chosen by the exploration bandit, by policy and arm.",
            ["policy", "arm"],
            registry=self.registry,
        )
