"""ingest's own Prometheus metrics, on the shared mechanism (rapport.common.metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from rapport.common.metrics import LATENCY_BUCKETS_S, Metrics

INGEST_EVENTS = "rapport_ingest_events"
INGEST_PRODUCE_DURATION = "rapport_ingest_produce_duration_seconds"
INGEST_REQUESTS_REFUSED = "rapport_ingest_requests_refused"
INGEST_DEDUP_UNAVAILABLE = "rapport_ingest_dedup_unavailable"
INGEST_DOCUMENTS = "rapport_ingest_documents"
INGEST_CATALOG_ITEMS = "rapport_ingest_catalog_items"


@dataclass
class IngestMetrics(Metrics):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.events = Counter(
            INGEST_EVENTS,
            "Events by type and outcome (accepted, duplicate, rejected).",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.produce_duration = Histogram(
            INGEST_PRODUCE_DURATION,
            "From first send to the broker acknowledging every event of a request.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.requests_refused = Counter(
            INGEST_REQUESTS_REFUSED,
            "Requests refused before producing, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.documents = Counter(
            INGEST_DOCUMENTS,
            "Knowledge documents by operation (upsert, delete) and outcome (accepted, rejected).",
            ["op", "outcome"],
            registry=self.registry,
        )
        self.catalog_items = Counter(
            INGEST_CATALOG_ITEMS,
            "Catalogue items by operation (upsert, delete) and outcome (accepted, rejected).",
            ["op", "outcome"],
            registry=self.registry,
        )
        self.dedup_unavailable = Counter(
            INGEST_DEDUP_UNAVAILABLE,
            "Requests accepted without the Redis idempotency check (Redis unavailable).",
            registry=self.registry,
        )
