"""Shared fixtures. The real-server fixtures (kafka_server, mongo_server, ...) come from
the ``rapport.devstack.pytest_plugin`` plugin, loaded through its entry point."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rapport.common.telemetry import instrument_clients

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _tracing() -> TracerProvider:
    """One SDK provider for the whole session (OpenTelemetry allows one global)."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
    else:
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    instrument_clients(provider)
    return provider


@pytest.fixture
def spans(_tracing: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """Finished spans of this test, in memory."""
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()
