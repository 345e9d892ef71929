"""Spans are recorded only once something exports them; trace ids cross hops either way."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, TraceIdRatioBased

from rapport.common.telemetry import RecordWhenExported, export_spans

pytestmark = pytest.mark.unit


def test_nothing_is_recorded_until_a_processor_exports_then_the_configured_sampler_decides() -> (
    None
):
    provider = TracerProvider(sampler=RecordWhenExported(ALWAYS_ON), shutdown_on_exit=False)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("parent") as parent, tracer.start_span("child") as child:
        assert not parent.is_recording()
        assert parent.get_span_context().is_valid, "a trace id is still made"
        assert child.get_span_context().trace_id == parent.get_span_context().trace_id
    exporter = InMemorySpanExporter()
    export_spans(provider, SimpleSpanProcessor(exporter))
    with tracer.start_as_current_span("parent"), tracer.start_span("child"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["child", "parent"]


def test_an_exporting_provider_samples_as_configured() -> None:
    provider = TracerProvider(
        sampler=RecordWhenExported(TraceIdRatioBased(0.0)), shutdown_on_exit=False
    )
    exporter = InMemorySpanExporter()
    export_spans(provider, SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("dropped") as span:
        assert not span.is_recording()
    assert exporter.get_finished_spans() == ()
    assert "TraceIdRatioBased" in provider.sampler.get_description()
