"""The client instrumentations record spans and propagate W3C context over real connections."""

from __future__ import annotations

import uuid

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from rapport.common.cache import create_redis
from rapport.common.http import create_http_session
from rapport.common.mongo import create_mongo_client
from rapport.common.settings import MongoSettings, RedisSettings
from rapport.devstack.processes import free_port

pytestmark = pytest.mark.integration


async def test_http_client_propagates_traceparent(spans: InMemorySpanExporter) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("traceparent", ""))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/ping", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        tracer = trace.get_tracer("test")
        async with create_http_session() as session:
            with tracer.start_as_current_span("caller") as caller:
                async with session.get(f"http://127.0.0.1:{port}/ping") as response:
                    assert response.status == 200
    finally:
        await runner.cleanup()
    trace_id = format(caller.get_span_context().trace_id, "032x")
    assert seen[0].split("-")[1] == trace_id
    client_spans = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert client_spans
    assert client_spans[0].context.trace_id == caller.get_span_context().trace_id


async def test_redis_and_mongo_calls_are_traced(
    spans: InMemorySpanExporter, redis_settings: RedisSettings, mongo_settings: MongoSettings
) -> None:
    redis = create_redis(redis_settings, client_name="rapport-tests")
    mongo = create_mongo_client(mongo_settings, app_name="rapport-tests")
    key = f"t:{uuid.uuid4().hex}"
    try:
        with trace.get_tracer("test").start_as_current_span("unit of work") as parent:
            await redis.set(key, b"1", ex=10)
            await mongo["rapport_test"]["traced"].find_one({"_id": key})
    finally:
        await redis.aclose()
        await mongo.close()
    children = [
        s
        for s in spans.get_finished_spans()
        if s.parent is not None and s.parent.span_id == parent.get_span_context().span_id
    ]
    systems = {str((s.attributes or {}).get("db.system", "")) for s in children}
    assert {"redis", "mongodb"} <= systems, [(s.name, s.attributes) for s in children]
