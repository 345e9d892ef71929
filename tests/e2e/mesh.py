"""The e2e tier's mesh and trace collector, shared by its modules (tests/e2e/conftest.py
starts one of each per session).

The collector is an OTLP/HTTP trace receiver: protobuf from our services, JSON from
Triton. It keeps every span whole (attributes, events, resource) with the time it
arrived, and every request body as it came, so a test can assert on the call graph or
scan everything exported for data that must not be there.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from rapport.devstack import processes
from rapport.devstack.scrape import sample_sum

ASK = "hi there, what is good to watch?"


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str
    name: str
    span_id: str = ""
    parent_id: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: tuple[tuple[str, dict[str, Any]], ...] = ()
    resource: dict[str, Any] = field(default_factory=dict)
    status: str = ""
    end_s: float = 0.0  # when the span ended (Unix seconds)
    arrived_s: float = 0.0  # when the collector had it (Unix seconds)

    def texts(self) -> Iterator[tuple[str, str]]:
        """(where, text) of everything the span exports, for a scan."""
        yield "name", self.name
        yield "status", self.status
        for key, value in self.attributes.items():
            yield f"attribute {key}", str(value)
        for name, attributes in self.events:
            yield "event name", name
            for key, value in attributes.items():
                yield f"event {name!r} attribute {key}", str(value)
        for key, value in self.resource.items():
            yield f"resource {key}", str(value)


def _value(any_value: dict[str, Any]) -> Any:
    """An OTLP/JSON AnyValue as Python."""
    if "arrayValue" in any_value:
        return [_value(v) for v in any_value["arrayValue"].get("values", [])]
    if "kvlistValue" in any_value:
        return _attributes(any_value["kvlistValue"].get("values", []))
    return next(iter(any_value.values()), None)


def _attributes(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {p["key"]: _value(p.get("value", {})) for p in pairs}


def _pb_value(value: AnyValue) -> Any:
    """An OTLP/protobuf AnyValue as Python."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _pb_attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def _pb_attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {p.key: _pb_value(p.value) for p in pairs}


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver: just enough of a collector to assert on spans."""

    url: str = ""
    spans: list[Span] = field(default_factory=list, repr=False)
    bodies: list[bytes] = field(default_factory=list, repr=False)
    # Export requests it could not read: each one is a batch the sender has lost.
    failures: list[str] = field(default_factory=list)

    def add_json(self, document: dict[str, Any]) -> None:
        arrived = time.time()
        for resource_spans in document.get("resourceSpans", []):
            resource = _attributes(resource_spans.get("resource", {}).get("attributes", []))
            for scope in resource_spans.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    self.spans.append(
                        Span(
                            service=str(resource.get("service.name", "")),
                            trace_id=span["traceId"].lower(),
                            name=span.get("name", ""),
                            span_id=span.get("spanId", "").lower(),
                            parent_id=span.get("parentSpanId", "").lower(),
                            attributes=_attributes(span.get("attributes", [])),
                            events=tuple(
                                (e.get("name", ""), _attributes(e.get("attributes", [])))
                                for e in span.get("events", [])
                            ),
                            resource=resource,
                            status=span.get("status", {}).get("message", ""),
                            end_s=int(span.get("endTimeUnixNano", 0)) / 1e9,
                            arrived_s=arrived,
                        )
                    )

    def add_protobuf(self, body: bytes) -> None:
        arrived = time.time()
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = _pb_attributes(resource_spans.resource.attributes)
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        Span(
                            service=str(resource.get("service.name", "")),
                            trace_id=span.trace_id.hex(),
                            name=span.name,
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes=_pb_attributes(span.attributes),
                            events=tuple(
                                (e.name, _pb_attributes(e.attributes)) for e in span.events
                            ),
                            resource=resource,
                            status=span.status.message,
                            end_s=span.end_time_unix_nano / 1e9,
                            arrived_s=arrived,
                        )
                    )

    def services_in(self, trace_id: str) -> set[str]:
        return {s.service for s in self.spans if s.trace_id == trace_id}

    def names_in(self, trace_id: str, service: str) -> list[str]:
        return [s.name for s in self.spans if s.trace_id == trace_id and s.service == service]

    def triton_names(self, trace_id: str) -> list[str]:
        """Triton's spans of the calls made in ``trace_id``: in that trace, or in one of
        Triton's own when its gRPC server dropped the W3C context (it does on a few percent
        of calls), named by the request id recommend sends, which is the trace's id."""
        return [
            s.name
            for s in self.spans
            if s.service == "triton"
            and trace_id in (s.trace_id, s.attributes.get("triton.request_id"))
        ]

    def trace(self, trace_id: str) -> dict[str, list[str]]:
        """Span names by service, for a failure message."""
        return {s: self.names_in(trace_id, s) for s in sorted(self.services_in(trace_id))}

    def report(self, trace_id: str) -> str:
        """What arrived, for a test that misses a span: the trace's spans by service, then
        each exporter's spans in all, the last time it sent and its slowest span (end to
        arrival), and any export request the collector could not read."""
        now = time.time()
        lines = [f"trace {trace_id}: {self.trace(trace_id)}"]
        for service in sorted({s.service for s in self.spans}):
            sent = [s for s in self.spans if s.service == service]
            last = max(s.arrived_s for s in sent)
            slowest = max(s.arrived_s - s.end_s for s in sent)
            lines.append(
                f"{service}: {len(sent)} spans, last export {now - last:.1f} s ago, "
                f"slowest {slowest:.1f} s"
            )
        lines += [f"unreadable export: {failure}" for failure in self.failures]
        return "\n".join(lines)

    def found(self, needle: str) -> list[str]:
        """Where ``needle`` occurs in what was exported: each span field that holds it,
        and the count of raw request bodies holding it (a backstop for any field the
        parsing above leaves out)."""
        places = [
            f"{span.service}: span {span.name!r} {where} = {text[:300]!r}"
            for span in self.spans
            for where, text in span.texts()
            if needle in text
        ]
        raw = sum(needle.encode() in body for body in self.bodies)
        if raw and not places:
            places.append(f"{raw} export request bodies (a field not parsed)")
        return places


@asynccontextmanager
async def run_collector() -> AsyncIterator[Collector]:
    """A collector on a free port for the block's duration."""
    found = Collector()

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        found.bodies.append(body)
        try:
            if request.content_type == "application/json":
                found.add_json(json.loads(body))
                return web.json_response({})
            found.add_protobuf(body)
        except Exception as exc:  # recorded: a test that misses spans says why
            found.failures.append(f"{request.content_type}: {type(exc).__name__}: {exc}")
            raise
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = processes.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    found.url = f"http://127.0.0.1:{port}"
    try:
        yield found
    finally:
        await runner.cleanup()


@dataclass
class Mesh:
    data: dict[str, Any]
    http: aiohttp.ClientSession
    home: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.data['api_key']}"}

    def url(self, service: str, path: str) -> str:
        return f"{self.data['services'][service]}{path}"

    def log_paths(self) -> dict[str, Path]:
        """Each process's log (stdout and stderr), by name."""
        return {n: Path(p["log_path"]) for n, p in self.data["processes"].items()}

    async def call(self, method: str, service: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        # A test that served an app in this process instrumented aiohttp globally; its
        # client span would replace the traceparent these tests set or leave out.
        with suppress_http_instrumentation():
            async with self.http.request(
                method, self.url(service, path), headers=headers, **kwargs
            ) as response:
                text = await response.text()
                if response.content_type == "text/event-stream":
                    return response.status, text
                return response.status, json.loads(text) if text else None

    async def respond(self, user: str, message: str = ASK) -> dict[str, Any]:
        status, body = await self.call(
            "POST",
            "respond",
            "/v1/respond",
            json={"user_id": user, "session_id": f"s-{user}", "message": message},
            headers={"X-Rapport-Deadline-Ms": "2000"},  # a loaded 2-core CI machine
        )
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    async def events(self, user: str, *events: dict[str, Any], traceparent: str = "") -> None:
        now = datetime.now(UTC).isoformat()
        batch = [{"user_id": user, "occurred_at": now, **e} for e in events]
        headers = {"traceparent": traceparent} if traceparent else {}
        status, body = await self.call(
            "POST", "ingest", "/v1/events", json={"events": batch}, headers=headers
        )
        assert status == 202, body

    async def metrics_page(self, service: str) -> str:
        async with self.http.get(self.url(service, "/metrics")) as response:
            return await response.text()

    async def metric(self, service: str, name: str, **labels: str) -> float:
        """A sample's value from a service's /metrics (0 when not exported yet)."""
        return sample_sum(await self.metrics_page(service), name, **labels)

    async def profile(self, user: str) -> dict[str, Any]:
        status, body = await self.call("GET", "profile", f"/v1/profiles/{user}")
        assert status == 200, body
        result: dict[str, Any] = body
        return result
