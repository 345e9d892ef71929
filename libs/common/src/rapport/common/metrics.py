"""Prometheus metrics: every metric name is declared here, in one place.

Each app owns one :class:`~prometheus_client.CollectorRegistry` (built in its
factory, never at import) served at ``/metrics``. Latency histograms carry the
trace id as an exemplar, so a slow bucket in Grafana links to its trace; the
exemplars are exposed when the scraper asks for OpenMetrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Buckets dense around the 100 ms respond SLO and the 1 s freshness SLO.
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

HTTP_REQUESTS = "rapport_http_requests"
HTTP_REQUEST_DURATION = "rapport_http_request_duration_seconds"
INGEST_EVENTS = "rapport_ingest_events"
INGEST_PRODUCE_DURATION = "rapport_ingest_produce_duration_seconds"
INGEST_REQUESTS_REFUSED = "rapport_ingest_requests_refused"
INGEST_DEDUP_UNAVAILABLE = "rapport_ingest_dedup_unavailable"
PROFILE_EVENTS = "rapport_profile_events"
PROFILE_BATCH_SIZE = "rapport_profile_batch_size"
PROFILE_FRESHNESS = "rapport_profile_freshness_seconds"
PROFILE_CONSUMER_LAG = "rapport_profile_consumer_lag"
PROFILE_STORE_DURATION = "rapport_profile_store_duration_seconds"
PROFILE_WRITE_CONFLICTS = "rapport_profile_write_conflicts"
RECOMMEND_TRITON_DURATION = "rapport_recommend_triton_duration_seconds"
RECOMMEND_TRITON_ERRORS = "rapport_recommend_triton_errors"
RECOMMEND_FALLBACKS = "rapport_recommend_fallbacks"
RECOMMEND_CIRCUIT_STATE = "rapport_recommend_circuit_state"
RECOMMEND_BANDIT_CHOICES = "rapport_recommend_bandit_choices"
RESPOND_STAGE_DURATION = "rapport_respond_stage_duration_seconds"
RESPOND_DEGRADED = "rapport_respond_degraded"
RESPOND_REPLIES = "rapport_respond_replies"
RESPOND_EVENTS = "rapport_respond_events"
RESPOND_SHED = "rapport_respond_shed"
RESPOND_IN_FLIGHT = "rapport_respond_in_flight"


def trace_exemplar() -> dict[str, str] | None:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return {"trace_id": format(ctx.trace_id, "032x")}


@dataclass
class Metrics:
    """The metrics every service exports. Services extend it with their own."""

    service: str
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        self.http_requests = Counter(
            HTTP_REQUESTS,
            "HTTP requests served, by route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_request_duration = Histogram(
            HTTP_REQUEST_DURATION,
            "HTTP request latency in seconds, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )

    def asgi_app(self) -> ASGIApp:
        return make_asgi_app(self.registry)


UNMATCHED_ROUTE = "(unmatched)"


class HttpMetricsMiddleware:
    """RED metrics labelled by route template, never by raw path (bounded cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, skip: tuple[str, ...] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", UNMATCHED_ROUTE)
            method = scope["method"]
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            self.metrics.http_request_duration.labels(method, template).observe(
                time.perf_counter() - start, exemplar=trace_exemplar()
            )


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
        self.dedup_unavailable = Counter(
            INGEST_DEDUP_UNAVAILABLE,
            "Requests accepted without the Redis idempotency check (Redis unavailable).",
            registry=self.registry,
        )


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
        self.bandit_choices = Counter(
            RECOMMEND_BANDIT_CHOICES,
            "Arms chosen by the exploration bandit, by policy and arm.",
            ["policy", "arm"],
            registry=self.registry,
        )


@dataclass
class RespondMetrics(Metrics):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.stage_duration = Histogram(
            RESPOND_STAGE_DURATION,
            "Time spent in each stage of a reply: profile, recommend, event, assemble, llm.",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.degraded = Counter(
            RESPOND_DEGRADED,
            "Replies that went without a part (profile, recommendations, ranking, intent, "
            "sentiment, event, llm), by part.",
            ["part"],
            registry=self.registry,
        )
        self.replies = Counter(
            RESPOND_REPLIES,
            "Replies by endpoint, mode (template, llm) and tone.",
            ["endpoint", "mode", "tone"],
            registry=self.registry,
        )
        self.events = Counter(
            RESPOND_EVENTS,
            "chat_message events by outcome: acknowledged, failed, skipped_consent.",
            ["outcome"],
            registry=self.registry,
        )
        self.shed = Counter(
            RESPOND_SHED,
            "Replies answered without the fan-out because max_in_flight fan-outs were running.",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            RESPOND_IN_FLIGHT,
            "Fan-outs (profile and recommend calls) running now.",
            registry=self.registry,
        )
