"""What leaves a process names routes by template and carries no user id (DESIGN.md,
"Personal data"); tests/e2e/test_telemetry_privacy.py checks the same on the mesh."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from yarl import URL

from rapport.common.http import refusal
from rapport.common.telemetry import client_route, client_url, export_spans

pytestmark = pytest.mark.unit

USER = "alice-1234"


def exported(kind: SpanKind, attributes: dict[str, Any]) -> dict[str, Any]:
    """A span's attributes as its exporter receives them (through export_spans)."""
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    export_spans(provider, SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("s", kind=kind, attributes=attributes):
        pass
    (span,) = exporter.get_finished_spans()
    return dict(span.attributes or {})


def test_a_server_span_gives_its_route_not_the_path() -> None:
    attributes = exported(
        SpanKind.SERVER,
        {
            "http.method": "GET",
            "http.route": "/v1/profiles/{user_id}",
            "http.target": f"/v1/profiles/{USER}?x={USER}",
            "http.url": f"http://10.0.0.1:8080/v1/profiles/{USER}?x={USER}",
            "url.path": f"/v1/profiles/{USER}",
            "url.full": f"http://10.0.0.1:8080/v1/profiles/{USER}",
            "url.query": f"x={USER}",
        },
    )
    assert attributes == {
        "http.method": "GET",
        "http.route": "/v1/profiles/{user_id}",
        "http.target": "/v1/profiles/{user_id}",
        "http.url": "http://10.0.0.1:8080/v1/profiles/{user_id}",
        "url.path": "/v1/profiles/{user_id}",
        "url.full": "http://10.0.0.1:8080/v1/profiles/{user_id}",
    }


def test_a_server_span_no_route_matched_keeps_no_path() -> None:
    attributes = exported(
        SpanKind.SERVER,
        {"http.target": f"/v1/profile/{USER}", "http.url": f"http://h:1/v1/profile/{USER}"},
    )
    assert attributes == {"http.url": "http://h:1"}


def test_no_span_keeps_a_kafka_key() -> None:
    for kind in (SpanKind.PRODUCER, SpanKind.CONSUMER):
        attributes = exported(
            kind,
            {
                "messaging.system": "kafka",
                "messaging.kafka.message.key": USER,
                "messaging.destination.partition.id": "3",
            },
        )
        assert attributes == {
            "messaging.system": "kafka",
            "messaging.destination.partition.id": "3",
        }


def test_a_span_with_nothing_to_redact_is_exported_as_it_is() -> None:
    attributes = {"db.system": "redis", "db.statement": "HGET ? ?"}
    assert exported(SpanKind.CLIENT, attributes) == attributes


def test_an_outbound_url_has_its_route_template_and_no_query() -> None:
    url = URL(f"http://profile:8080/v1/profiles/{USER}/memory/recall?u={USER}")
    assert client_url(url) == f"http://profile:8080/v1/profiles/{USER}/memory/recall"
    with client_route("/v1/profiles/{user_id}/memory/recall"):
        assert client_url(url) == "http://profile:8080/v1/profiles/{user_id}/memory/recall"
    assert client_url(URL("http://u:p@llm/v1/chat?k=1")) == "http://u:p@llm/v1/chat"


def test_a_refusal_logged_by_the_caller_leaves_out_the_path_it_asked_for() -> None:
    problem = (
        b'{"type": "about:blank", "title": "Service unavailable", "status": 503, '
        b'"instance": "/v1/profiles/alice-1234/memory/recall"}'
    )
    said = refusal(problem)
    assert USER not in said
    assert "Service unavailable" in said
    assert refusal(b"<html>bad gateway</html>") == "<html>bad gateway</html>"
