"""knowledge's own Prometheus metrics, on the shared mechanism (rapport.common.metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from rapport.common.metrics import LATENCY_BUCKETS_S, Metrics

KNOWLEDGE_RECORDS = "rapport_knowledge_records"
KNOWLEDGE_CHUNKS = "rapport_knowledge_chunks"
KNOWLEDGE_FRESHNESS = "rapport_knowledge_freshness_seconds"
KNOWLEDGE_CONSUMER_LAG = "rapport_knowledge_consumer_lag"
KNOWLEDGE_STORE_DURATION = "rapport_knowledge_store_duration_seconds"
KNOWLEDGE_SEARCH_DURATION = "rapport_knowledge_search_duration_seconds"

RECORD_OUTCOMES = (
    "indexed",
    "deleted",
    "superseded",
    "already_indexed",
    "dead_lettered",
    "tombstone",
)


@dataclass
class KnowledgeMetrics(Metrics):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.records = Counter(
            KNOWLEDGE_RECORDS,
            "Knowledge records by outcome: indexed, deleted, superseded (a later version in "
            "the same batch), already_indexed (a replay), dead_lettered, tombstone (no value).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in RECORD_OUTCOMES:  # exported at 0, so rate() sees the first one
            self.records.labels(outcome)
        self.chunks = Counter(
            KNOWLEDGE_CHUNKS, "Chunks embedded and written.", registry=self.registry
        )
        self.freshness = Histogram(
            KNOWLEDGE_FRESHNESS,
            "From a document's published_at to its chunks being searchable.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            KNOWLEDGE_CONSUMER_LAG,
            "Records behind the partition's high watermark after the last batch.",
            ["partition"],
            registry=self.registry,
        )
        self.store_duration = Histogram(
            KNOWLEDGE_STORE_DURATION,
            "Vector store and encoder calls of the indexer, by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.search_duration = Histogram(
            KNOWLEDGE_SEARCH_DURATION,
            "One vector search, as the store answered it.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
