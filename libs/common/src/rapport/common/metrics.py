"""Prometheus metrics, the mechanism: a registry per app, RED histograms, exemplars.

Each service declares its own metrics (``rapport.<service>.metrics``) on a
subclass of :class:`Metrics`. Each app owns one
:class:`~prometheus_client.CollectorRegistry` (built in its factory, never at
import) served at ``/metrics``. Latency histograms carry the
trace id as an exemplar, so a slow bucket in Grafana links to its trace; the
exemplars are exposed when the scraper asks for OpenMetrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Buckets dense around the 100 ms respond SLO and the 1 s freshness SLO.
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

HTTP_REQUESTS = "rapport_http_requests"
HTTP_REQUEST_DURATION = "rapport_http_request_duration_seconds"


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
