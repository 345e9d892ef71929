"""Traces, logs and instrumentation, configured by the standard ``OTEL_*`` variables.

- ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` name the resource
  (the service's own name is the default).
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` are read by the SDK.
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) turns on the
  OTLP/HTTP exporter; ``OTEL_TRACES_EXPORTER=none`` turns it off again.
- ``OTEL_SDK_DISABLED=true`` leaves tracing a no-op.

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from cachetools import LRUCache
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
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


def export_spans(provider: TracerProvider, processor: SpanProcessor) -> None:
    """Add ``processor``; from now on the provider records what its sampler samples."""
    provider.add_span_processor(processor)
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
            instrumentor.instrument(tracer_provider=provider)
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
