"""The app factory helpers, exercised in-process (no servers)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, ClassVar

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from rapport.common.app import add_readiness_check, create_service_app, state_dependency
from rapport.common.problems import PROBLEM_MEDIA_TYPE, FieldError, ProblemError
from rapport.common.settings import ServiceSettings
from rapport.common.telemetry import json_log_handler

pytestmark = pytest.mark.unit


class AppSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_TESTAPP_")
    service_name: ClassVar[str] = "rapport-testapp"


class Item(BaseModel):
    name: str = Field(max_length=5)


SettingsDep = Annotated[AppSettings, Depends(state_dependency("settings", AppSettings))]


def build(dependency_up: dict[str, bool]) -> FastAPI:
    async def check_dependency() -> None:
        if not dependency_up["value"]:
            raise ConnectionError("refused")

    async def hang() -> None:
        await asyncio.sleep(10)

    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("open")
        add_readiness_check(app, "dependency", check_dependency)
        if dependency_up.get("hang"):
            add_readiness_check(app, "slow", hang)
        yield
        events.append("close")

    app = create_service_app(
        AppSettings(),
        title="t",
        lifespan=lifespan,
        openai_compatible_paths=frozenset({"/items/7"}),
    )
    app.state.events = events

    @app.post("/items/{item_id}")
    async def create(item_id: int, item: Item, settings: SettingsDep) -> dict[str, str]:
        if item.name == "taken":
            raise ProblemError(
                409,
                detail="name already used",
                slug="conflict",
                errors=[FieldError(field="name", reason="already used")],
                headers={"X-Reason": "dup"},
            )
        return {"service": settings.service_name}

    @app.delete("/items/{item_id}", status_code=204)
    async def delete(item_id: int) -> None:
        return None

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return app


def test_lifespan_opens_and_closes_clients() -> None:
    app = build({"value": True})
    with TestClient(app):
        assert app.state.events == ["open"]
    assert app.state.events == ["open", "close"]


def test_livez_and_readyz() -> None:
    state = {"value": True}
    with TestClient(build(state)) as client:
        assert client.get("/livez").json() == {"status": "alive"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"dependency": "ok"}}
        state["value"] = False
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert not_ready.json()["checks"] == {"dependency": "ConnectionError: refused"}
        # Liveness never depends on dependencies.
        assert client.get("/livez").status_code == 200


def test_readyz_bounds_a_hanging_check() -> None:
    with TestClient(build({"value": True, "hang": True})) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["slow"].startswith("timeout")


def test_validation_errors_are_problem_json_naming_each_field() -> None:
    with TestClient(build({"value": True})) as client:
        response = client.post("/items/abc", json={"name": "toolong"})
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
        body = response.json()
        assert body["status"] == 422
        fields = {e["field"] for e in body["errors"]}
        assert fields == {"item_id", "name"}


def test_a_body_that_is_not_json_is_a_validation_problem() -> None:
    """Found by schemathesis: a body that was not UTF-8 answered 400, which no operation
    documents, where one that was not JSON answered 422."""
    with TestClient(build({"value": True})) as client:
        for body in (b"\xff\xfe{", b"{nope"):
            response = client.post(
                "/items/1", content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 422, body
            assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
            assert response.json()["type"].endswith("/validation")


def test_problem_error_carries_status_fields_and_headers() -> None:
    with TestClient(build({"value": True})) as client:
        response = client.post("/items/1", json={"name": "taken"})
        assert response.status_code == 409
        assert response.headers["x-reason"] == "dup"
        body = response.json()
        assert body["type"].endswith("/conflict")
        assert body["errors"] == [{"field": "name", "reason": "already used"}]
        assert client.post("/items/1", json={"name": "ok"}).json() == {"service": "rapport-testapp"}


def test_unknown_route_and_crash_are_problem_json_without_internals() -> None:
    with TestClient(build({"value": True}), raise_server_exceptions=False) as client:
        missing = client.get("/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == PROBLEM_MEDIA_TYPE
        crash = client.get("/boom")
        assert crash.status_code == 500
        assert crash.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert "secret" not in crash.text


def test_a_method_not_allowed_names_every_method_of_the_path() -> None:
    """Found by schemathesis on profile: ``OPTIONS /v1/profiles/u`` answered ``Allow: GET``,
    the methods of the first route on the path only, leaving out its DELETE."""
    with TestClient(build({"value": True})) as client:
        response = client.put("/items/1")
        assert response.status_code == 405
        assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert response.headers["allow"] == "DELETE, POST"


def test_metrics_use_route_templates_and_carry_exemplars(spans: InMemorySpanExporter) -> None:
    """Exemplars are the trace ids of sampled spans: ``spans`` exports them."""
    with TestClient(build({"value": True})) as client:
        client.post("/items/1", json={"name": "ok"})
        client.post("/items/2", json={"name": "ok"})
        text = client.get("/metrics").text
        assert (
            'rapport_http_requests_total{method="POST",route="/items/{item_id}",status="200"} 2.0'
            in text
        )
        openmetrics = client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        ).text
        assert "# {trace_id=" in openmetrics


def test_openapi_documents_problem_responses() -> None:
    with TestClient(build({"value": True})) as client:
        spec = client.get("/openapi.json").json()
        readyz = spec["paths"]["/readyz"]["get"]["responses"]
        assert PROBLEM_MEDIA_TYPE in readyz["503"]["content"]


def test_json_logs_carry_trace_and_span_ids(spans: InMemorySpanExporter) -> None:
    stream = io.StringIO()
    logger = logging.getLogger("rapport.test.jsonlogs")
    logger.addHandler(json_log_handler("rapport-testapp", stream))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logger.info("inside", extra={"batch": 3})
    logger.info("outside")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    ctx = span.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")
    assert inside["message"] == "inside"
    assert inside["batch"] == 3
    assert inside["service"] == "rapport-testapp"
    assert inside["level"] == "INFO"
    assert inside["time"].endswith("+00:00")
    assert "trace_id" not in outside


def test_problems_on_openai_compatible_paths_also_carry_openais_error() -> None:
    with TestClient(build({"value": True})) as client:
        plain = client.post("/items/1", json={"name": "taken"}).json()
        assert "error" not in plain
        conflict = client.post("/items/7", json={"name": "taken"}).json()
        assert conflict["error"] == {
            "message": "name already used",
            "type": "conflict_error",
            "param": "name",
            "code": "conflict",
        }
        assert conflict["status"] == 409, "still a problem document"
        invalid = client.post("/items/7", json={"name": "toolong"}).json()
        assert invalid["error"]["type"] == "invalid_request_error"
        assert invalid["error"]["param"] == "name"
