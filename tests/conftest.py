"""Shared fixtures. The real-server fixtures (kafka_server, mongo_server, ...) come from
the ``rapport.devstack.pytest_plugin`` plugin, loaded through its entry point."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rapport.common.kafka import TopicSpec, ensure_topics
from rapport.common.settings import KafkaSettings
from rapport.common.telemetry import export_spans, instrument_clients
from rapport.devstack.servers import RunningServer
from rapport.profile.settings import ProfileSettings

PrivateProfile = Callable[[str, str], Awaitable[ProfileSettings]]


class _SpanRecorder(InMemorySpanExporter):
    """Keeps spans only while a test asks for them (the ``spans`` fixture).

    The provider is global and the in-process apps of every later test export to it;
    keeping all their spans grew the heap until a full garbage collection paused the
    event loop for a second (in the middle of respond's deadline tests).
    """

    recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return super().export(spans) if self.recording else SpanExportResult.SUCCESS


_EXPORTER = _SpanRecorder()
TIERS = ("unit", "integration", "e2e")
_SUMMARY = pytest.StashKey[list[str]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test names its tier: make test runs ``-m unit``, then ``-m "not unit"``."""
    untiered = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if untiered:
        raise pytest.UsageError(f"tests without a tier marker {TIERS}: {untiered}")


@pytest.fixture(scope="session")
def summary_lines(pytestconfig: pytest.Config) -> list[str]:
    """Lines a test appends to be printed after the run (figures it measured, such as the
    fuzz tier's cases tried), shown even when pytest captures output."""
    return pytestconfig.stash.setdefault(_SUMMARY, [])


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash.get(_SUMMARY, [])
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def _tracing() -> TracerProvider:
    """One SDK provider for the whole session (OpenTelemetry allows one global)."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
    else:
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    export_spans(provider, SimpleSpanProcessor(_EXPORTER))
    instrument_clients(provider)
    return provider


@pytest.fixture
def spans(_tracing: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """Finished spans of this test, in memory."""
    _EXPORTER.clear()
    _EXPORTER.recording = True
    try:
        yield _EXPORTER
    finally:
        _EXPORTER.recording = False
        _EXPORTER.clear()


@pytest.fixture(scope="session")
def private_profile(
    kafka_server: RunningServer, mongo_server: RunningServer, redis_server: RunningServer
) -> PrivateProfile:
    """``await private_profile(name, api_keys)``: profile settings on the session's servers
    with a database, consumer group and topics (created here) that no other test shares."""

    async def make(name: str, api_keys: str) -> ProfileSettings:
        suffix = f"{name}.{uuid.uuid4().hex[:8]}"
        settings = ProfileSettings(
            kafka_bootstrap_servers=kafka_server.url(),
            mongo_url=mongo_server.url(),
            mongo_database=suffix.replace(".", "_"),
            redis_url=redis_server.url(),
            api_keys=api_keys,
            group_id=f"g.{suffix}",
            events_topic=f"t.events.{suffix}",
            changes_topic=f"t.changes.{suffix}",
            dlq_topic=f"t.dlq.{suffix}",
        )
        await ensure_topics(
            KafkaSettings(kafka_bootstrap_servers=kafka_server.url()),
            [
                TopicSpec(settings.events_topic, 2),
                TopicSpec(settings.changes_topic, 1),
                TopicSpec(settings.dlq_topic, 1),
            ],
        )
        return settings

    return make
