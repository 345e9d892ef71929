"""Traces, logs and instrumentation, configured by the standard ``OTEL_*`` variables.

- ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` name the resource
  (the service's own name is the default).
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` are read by the SDK.
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) turns on the
  OTLP/HTTP exporter; ``OTEL_TRACES_EXPORTER=none`` turns it off again.
- ``OTEL_SDK_DISABLED=true`` leaves tracing a no-op.

What leaves the process carries no user id (DESIGN.md, "Personal data"): every
exporting processor is wrapped in :class:`RedactSpans`, so server spans give their
route's template instead of the raw path and no span keeps a Kafka record's key (a user
id); an outbound call's URL is its route's template (:func:`client_route`) and never has
its query string.

Spans are recorded only once something exports them (:class:`RecordWhenExported`):
without an exporter, the default sampler would build every span of every request
and drop it, which cost about a third of a reply's CPU. Trace ids are still made and
propagated (logs and replies carry them), by spans that record nothing.

There is one tracer provider per process (OpenTelemetry's global), built the
first time a service sets up telemetry; instrumentation of the client
libraries is global too and applied once.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from cachetools import LRUCache
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Scope
from typing_extensions import override

from rapport.common.asgi import wrap_middleware_stack
from rapport.common.settings import ServiceSettings

if TYPE_CHECKING:
    from yarl import URL  # aiohttp's, an extra of this library

log = logging.getLogger(__name__)

# Probes and scrapes would drown the traces that matter.
EXCLUDED_URLS = "livez,readyz,metrics"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def otlp_endpoint_configured(env: Mapping[str, str] = os.environ) -> bool:
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


class RecordWhenExported(Sampler):
    """The configured sampler (``OTEL_TRACES_SAMPLER``) once a span processor exports what
    is recorded (:func:`export_spans`); until then, nothing is recorded.

    A dropped span still carries its trace id (a new one, or its parent's), so the W3C
    context crosses every hop either way.
    """

    def __init__(self, configured: Sampler) -> None:
        self.configured = configured
        self.exporting = False

    @override
    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if self.exporting:
            return self.configured.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        parent = trace.get_current_span(parent_context).get_span_context()
        return SamplingResult(Decision.DROP, None, parent.trace_state if parent.is_valid else None)

    @override
    def get_description(self) -> str:
        return f"RecordWhenExported{{{self.configured.get_description()}}}"


# A Kafka record's key is a user id (events), a profile id (the changelog) or a document
# id; the partition and offset already say which record it was.
KAFKA_KEY = "messaging.kafka.message.key"
# A server span's path and URL (old and new semantic conventions), and the query string.
SERVER_PATHS = ("http.target", "url.path")
SERVER_URLS = ("http.url", "url.full")
QUERY = "url.query"
REDACTED = (KAFKA_KEY, QUERY, *SERVER_PATHS, *SERVER_URLS)


def redacted(span: ReadableSpan) -> ReadableSpan:
    """``span`` as it may leave the process: a server span names its path by the route's
    template (``http.route``; no path at all when no route matched), with no query
    string, and no span keeps a Kafka key. The span itself when nothing changes."""
    attributes = span.attributes or {}
    if not any(key in attributes for key in REDACTED):
        return span
    kept = {k: v for k, v in attributes.items() if k not in (KAFKA_KEY, QUERY)}
    if span.kind is SpanKind.SERVER:
        route = attributes.get("http.route")
        for key in SERVER_PATHS:
            if key in kept:
                if route:
                    kept[key] = route
                else:
                    del kept[key]
        for key in SERVER_URLS:
            if key in kept:
                url = urlsplit(str(kept[key]))
                kept[key] = f"{url.scheme}://{url.netloc}{route or ''}"
    if kept == attributes:
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=kept,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactSpans(SpanProcessor):
    """Hands ``processor`` each span as :func:`redacted` makes it.

    Here rather than in each instrumentation: the ASGI one records the raw path, and the
    aiokafka one sets the key after the span starts, with no hook that could remove it.
    """

    def __init__(self, processor: SpanProcessor) -> None:
        self.processor = processor

    @override
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.processor.on_start(span, parent_context=parent_context)

    @override
    def on_end(self, span: ReadableSpan) -> None:
        self.processor.on_end(redacted(span))

    @override
    def shutdown(self) -> None:
        self.processor.shutdown()

    @override
    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.processor.force_flush(timeout_millis)


def export_spans(provider: TracerProvider, processor: SpanProcessor) -> None:
    """Add ``processor`` (behind :class:`RedactSpans`); from now on the provider records
    what its sampler samples."""
    provider.add_span_processor(RedactSpans(processor))
    if isinstance(provider.sampler, RecordWhenExported):
        provider.sampler.exporting = True


def build_tracer_provider(service_name: str) -> TracerProvider:
    """A provider from the ``OTEL_*`` env, with an OTLP exporter when an endpoint is set."""
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    # The sampler the OTEL_* variables configure, read the way the SDK reads them.
    configured = TracerProvider(shutdown_on_exit=False).sampler
    provider = TracerProvider(
        resource=Resource.create(attributes), sampler=RecordWhenExported(configured)
    )
    if otlp_endpoint_configured():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        export_spans(provider, BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def tracer_provider_for(service_name: str) -> trace.TracerProvider:
    """The process-wide provider, created on first use."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider) or _env_true("OTEL_SDK_DISABLED"):
        return current
    provider = build_tracer_provider(service_name)
    trace.set_tracer_provider(provider)
    return provider


# Each client library's instrumentation, applied only where the library is installed: a
# service installs the clients it uses (rapport-common's extras), not all of them.
CLIENT_INSTRUMENTORS: dict[str, tuple[str, str]] = {
    "aiohttp": ("opentelemetry.instrumentation.aiohttp_client", "AioHttpClientInstrumentor"),
    "grpc": ("opentelemetry.instrumentation.grpc", "GrpcAioInstrumentorClient"),
    "redis": ("opentelemetry.instrumentation.redis", "RedisInstrumentor"),
    "pymongo": ("opentelemetry.instrumentation.pymongo", "PymongoInstrumentor"),
    "aiokafka": ("opentelemetry.instrumentation.aiokafka", "AIOKafkaInstrumentor"),
}


_CLIENT_ROUTE: ContextVar[str | None] = ContextVar("rapport_client_route", default=None)


@contextmanager
def client_route(template: str | None) -> Iterator[None]:
    """Outbound HTTP calls made in the block are traced with ``template`` as their path
    (``/v1/profiles/{user_id}``), not the path they request, which may hold an id."""
    token = _CLIENT_ROUTE.set(template)
    try:
        yield
    finally:
        _CLIENT_ROUTE.reset(token)


def client_url(url: URL) -> str:
    """An outbound call's URL as its client span records it: the path :func:`client_route`
    names, if any, and never the query string."""
    template = _CLIENT_ROUTE.get()
    if template is None:
        return str(url.with_query(None).with_fragment(None))
    return f"{url.scheme}://{url.raw_authority}{template}"


# Keyword arguments of an instrumentor's instrument(), where it needs some.
INSTRUMENT_OPTIONS: dict[str, dict[str, Any]] = {"aiohttp": {"url_filter": client_url}}


def instrument_clients(provider: trace.TracerProvider) -> list[str]:
    """Instrument the installed ones of aiohttp, gRPC aio, redis, pymongo and aiokafka
    (process-wide, once); returns the libraries instrumented.

    The gRPC one covers Triton: its client span carries the W3C context in the
    call's metadata. It patches channel creation, so clients made later see it.
    """
    instrumented = []
    for library, (module, name) in CLIENT_INSTRUMENTORS.items():
        if importlib.util.find_spec(library) is None or importlib.util.find_spec(module) is None:
            continue
        instrumentor = getattr(importlib.import_module(module), name)()
        if not instrumentor.is_instrumented_by_opentelemetry:
            options = INSTRUMENT_OPTIONS.get(library, {})
            instrumentor.instrument(tracer_provider=provider, **options)
        instrumented.append(library)
    return instrumented


def setup_telemetry(app: FastAPI, settings: ServiceSettings) -> trace.TracerProvider:
    """Tracing for this app and the clients it uses. Call from the app factory."""
    provider = tracer_provider_for(settings.service_name)
    # No spans per ASGI receive/send message: two or three extra spans a request, no insight.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],
    )
    _remember_span_names(app)
    instrument_clients(provider)
    return provider


# Scope in, (span name, attributes) out; the instrumentation types the scope as a dict.
SpanDetails = Callable[[Any], tuple[str, dict[str, Any]]]


def _remember_span_names(app: FastAPI, paths: int = 1024) -> None:
    """Name each path's server span once, not on every request.

    The instrumentation names a span by matching the path against every route, each
    time: 8% of a single-event POST's CPU in ingest. A path always matches the same
    route, so the name is kept, by method and path, in a bounded LRU (paths that carry
    ids are many; they only ever cost the lookup they cost before).
    """

    def remember(stack: ASGIApp) -> ASGIApp:
        if isinstance(stack, OpenTelemetryMiddleware):
            details: SpanDetails = stack.default_span_details
            stack.default_span_details = _remembered(details, paths)
        return stack

    wrap_middleware_stack(app, remember)


def _remembered(details: SpanDetails, paths: int) -> SpanDetails:
    known: LRUCache[tuple[str, str, str], tuple[str, dict[str, Any]]] = LRUCache(paths)

    def span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
        key = (scope["type"], scope.get("method", ""), scope["path"])
        found = known.get(key)
        if found is None:
            found = known[key] = details(scope)
        name, attributes = found
        return name, dict(attributes)  # the caller adds to it

    return span_details


class TraceContextFilter(logging.Filter):
    """Adds the current ``trace_id`` and ``span_id`` to every record."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.service = self.service_name
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI duplicate of the message
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True


def json_log_handler(service_name: str, stream: TextIO = sys.stdout) -> logging.Handler:
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, trace ids, extras."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )
    )
    handler.addFilter(TraceContextFilter(service_name))
    return handler


def configure_logging(service_name: str, level: str = "INFO") -> None:
    """JSON lines on stdout, one root handler, uvicorn's loggers routed through it."""
    handler = json_log_handler(service_name)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
