"""profile's own Prometheus metrics, on the shared mechanism (rapport.common.metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from rapport.common.metrics import LATENCY_BUCKETS_S, Metrics

PROFILE_EVENTS = "rapport_profile_events"
PROFILE_BATCH_SIZE = "rapport_profile_batch_size"
PROFILE_FRESHNESS = "rapport_profile_freshness_seconds"
PROFILE_CONSUMER_LAG = "rapport_profile_consumer_lag"
PROFILE_STORE_DURATION = "rapport_profile_store_duration_seconds"
PROFILE_WRITE_CONFLICTS = "rapport_profile_write_conflicts"
PROFILE_MEMORY = "rapport_profile_memory"
PROFILE_RECALL_DURATION = "rapport_profile_recall_duration_seconds"
PROFILE_MEMORY_WAITING = "rapport_profile_memory_waiting"
PROFILE_RECALL_FAILURES = "rapport_profile_recall_failures"


@dataclass
class ProfileMetrics(Metrics):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.events = Counter(
            PROFILE_EVENTS,
            "Events by outcome: applied, duplicate, not_consented, erased, dead_lettered.",
            ["outcome"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            PROFILE_BATCH_SIZE,
            "Records per processed batch.",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=self.registry,
        )
        self.freshness = Histogram(
            PROFILE_FRESHNESS,
            "From an event's received_at to its batch being committed.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            PROFILE_CONSUMER_LAG,
            "Records behind the partition's high watermark after the last batch.",
            ["partition"],
            registry=self.registry,
        )
        self.store_duration = Histogram(
            PROFILE_STORE_DURATION,
            "MongoDB and Redis calls of the processor, by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.write_conflicts = Counter(
            PROFILE_WRITE_CONFLICTS,
            "Profile writes that lost a version race and were applied again.",
            registry=self.registry,
        )
        self.memory = Counter(
            PROFILE_MEMORY,
            "Memory written by the processor: facts (learned or retracted), remembered "
            "messages, messages_delayed (kept waiting in MongoDB while the vector store was "
            "away); forgotten (by API).",
            ["kind"],
            registry=self.registry,
        )
        for kind in ("facts", "messages", "messages_delayed", "forgotten"):  # at 0 from the start
            self.memory.labels(kind)
        self.memory_waiting = Gauge(
            PROFILE_MEMORY_WAITING,
            "Remembered messages and deletes waiting in MongoDB for the vector store.",
            registry=self.registry,
        )
        self.recall_failures = Counter(
            PROFILE_RECALL_FAILURES,
            "Recalls that failed: the vector store was away or timed out.",
            registry=self.registry,
        )
        self.recall_duration = Histogram(
            PROFILE_RECALL_DURATION,
            "POST /v1/profiles/{user_id}/memory/recall: the profile read and the vector search.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
