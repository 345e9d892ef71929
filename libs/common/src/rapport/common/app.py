"""The pieces every service's app factory is built from.

A service writes ``create_app(settings)`` in its ``app.py``; it calls
:func:`create_service_app` with a lifespan that opens its clients in an
``AsyncExitStack``, registers a readiness check for each dependency, and sets
``app.state.service`` (the routes' ``Service`` dependency); then it adds its
routes. What every service needs is wired here, once: health, ``/metrics``,
problem+json errors, tracing and the API key store. ``main()`` calls
:func:`run_service`, which builds settings (exiting with one line on a bad
value), configures logging and serves the app with uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, TypeVar

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi_offline import FastAPIOffline
from opentelemetry import trace
from pydantic import BaseModel, Field, TypeAdapter

from rapport.common.auth import ApiKeyStore
from rapport.common.contracts import API_VERSION
from rapport.common.metrics import HttpMetricsMiddleware, Metrics
from rapport.common.problems import install_problem_handlers, problem_response, problem_responses
from rapport.common.settings import ConfigurationError, ServiceSettings, load_settings
from rapport.common.telemetry import configure_logging, setup_telemetry

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[object]]
ServiceLifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
T = TypeVar("T")
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

READINESS_TIMEOUT_S = 1.0
DOCS_ASSETS_PATH = "/docs-assets"


class ReadinessReport(BaseModel):
    status: Literal["ready", "degraded"] = Field(
        description="`degraded`: serving, but a dependency with a fallback is down."
    )
    checks: dict[str, str]


def add_readiness_check(
    app: FastAPI, name: str, check: ReadinessCheck, *, required: bool = True
) -> None:
    """Register a dependency for ``/readyz``.

    A required one that fails takes the pod out of rotation (503). One with a
    fallback (``required=False``) is only reported: the status reads ``degraded``.
    """
    app.state.readiness_checks[name] = check
    if not required:
        app.state.optional_readiness_checks.add(name)


async def _run_check(check: ReadinessCheck, timeout_s: float) -> str:
    try:
        await asyncio.wait_for(check(), timeout_s)
    except TimeoutError:
        return f"timeout after {timeout_s:.1f}s"
    except Exception as exc:  # a probe reports any failure, it never raises
        return f"{type(exc).__name__}: {exc}"[:200]
    return "ok"


async def run_readiness_checks(
    checks: dict[str, ReadinessCheck], timeout_s: float = READINESS_TIMEOUT_S
) -> dict[str, str]:
    names = list(checks)
    results = await asyncio.gather(*(_run_check(checks[n], timeout_s) for n in names))
    return dict(zip(names, results, strict=True))


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/livez", summary="Liveness: the process is serving")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @router.get(
        "/readyz",
        summary="Readiness: every hard dependency answers",
        response_model=ReadinessReport,
        responses=problem_responses(503),
    )
    async def readyz(request: Request) -> Any:
        results = await run_readiness_checks(request.app.state.readiness_checks)
        optional = request.app.state.optional_readiness_checks
        failed = {name for name, result in results.items() if result != "ok"}
        if not failed:
            return ReadinessReport(status="ready", checks=results)
        if failed <= optional:
            return ReadinessReport(status="degraded", checks=results)
        return problem_response(
            request,
            503,
            title="Not ready",
            detail="A dependency this service cannot work without does not answer.",
            extra={"checks": results},
        )

    return router


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str = "",
    lifespan: ServiceLifespan | None = None,
    metrics: Metrics | None = None,
    openai_compatible_paths: frozenset[str] = frozenset(),
) -> FastAPI:
    """A FastAPI app with health, metrics, problem+json errors, tracing and API keys wired in.

    Its OpenAPI version is the contracts' :data:`~rapport.common.contracts.API_VERSION`.
    ``app.state.api_keys`` is loaded at start-up, before the service's lifespan (the key
    file may be a mounted Secret that is not there when the app is built).

    Problems on ``openai_compatible_paths`` also carry OpenAI's ``error`` member, so the
    OpenAI clients that call those routes read their errors as they read OpenAI's.
    """
    metrics = metrics or Metrics(settings.service_name)

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        app.state.api_keys = ApiKeyStore.from_settings(settings)
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                log.info("started", extra={"startup_s": round(time.perf_counter() - started, 3)})
                yield
        flush = getattr(trace.get_tracer_provider(), "force_flush", None)
        if flush is not None:
            flush()
        log.info("stopped")

    # /docs and /redoc from the assets fastapi-offline ships: FastAPI's default pages load
    # them from a public CDN, and are blank in a cluster with no way out.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS_PATH,
        title=title,
        version=API_VERSION,
        description=description,
        lifespan=app_lifespan,
        # Tracing is the OpenTelemetry instrumentation's (setup_telemetry) and metrics are
        # Prometheus: FastAPI's own telemetry would only wrap every request a second time.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.readiness_checks = {}
    app.state.optional_readiness_checks = set()
    app.state.openai_compatible_paths = openai_compatible_paths
    install_problem_handlers(app)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics, skip=("/metrics", "/livez"))
    app.include_router(health_router())
    app.mount("/metrics", metrics.asgi_app(), name="metrics")
    setup_telemetry(app, settings)
    return app


def json_body(schema: str) -> dict[str, Any]:
    """A route's ``openapi_extra`` for a required JSON body it parses by hand, described by
    ``schema`` (one :func:`document_schemas` adds)."""
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {"requestBody": {"required": True, "content": content}}


def link(method: str, path: str, description: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link from a response to the operation ``method path`` of the same
    document, its ``parameters`` as runtime expressions (``$request.path.user_id``)."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    return {
        "operationRef": f"#/paths/{pointer}/{method.lower()}",
        "description": description,
        "parameters": parameters,
    }


def document_schemas(app: FastAPI, adapters: dict[str, TypeAdapter[Any]]) -> None:
    """Add JSON Schemas FastAPI cannot see (bodies parsed by hand) to the OpenAPI components.

    A route refers to one with ``openapi_extra=json_body(name)``.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = build()
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, adapter in adapters.items():
            schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[name] = schema
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def state_dependency(name: str, type_: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A FastAPI dependency returning ``app.state.<name>``, typed.

    For example::

        SettingsDep = Annotated[Settings, Depends(state_dependency("settings", Settings))]
    """

    # async: FastAPI runs a plain `def` dependency in a worker thread, a costly hop per request.
    async def dependency(request: Request) -> T:
        value = getattr(request.app.state, name)
        if not isinstance(value, type_):
            raise TypeError(f"app.state.{name} is {type(value).__name__}, not {type_.__name__}")
        return value

    dependency.__name__ = f"get_{name}"
    return dependency


def run_service(settings_cls: type[SettingsT], create_app: Callable[[SettingsT], FastAPI]) -> None:
    """Entry point of a service process: settings, logging, then uvicorn."""
    settings = load_settings(settings_cls)
    configure_logging(settings.service_name, settings.log_level)
    try:
        app = create_app(settings)
    except ConfigurationError as exc:
        raise SystemExit(str(exc)) from None
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )
