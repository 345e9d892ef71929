"""App factory and process entry point."""

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from rapport.common.app import (
    add_readiness_check,
    create_service_app,
    document_schemas,
    run_service,
)
from rapport.common.asgi import wrap_middleware_stack
from rapport.common.cache import create_redis
from rapport.common.kafka import create_producer, ping_kafka
from rapport.ingest.adapters.dedup import AdmissionStore
from rapport.ingest.adapters.log import EventLog
from rapport.ingest.body_limit import BodySizeLimitMiddleware
from rapport.ingest.domain import (
    BODY,
    CATALOG_BODY,
    CATALOG_REQUEST_SCHEMA,
    KNOWLEDGE_BODY,
    KNOWLEDGE_REQUEST_SCHEMA,
    REQUEST_SCHEMA,
)
from rapport.ingest.metrics import IngestMetrics
from rapport.ingest.routes import EventsHotPath, router
from rapport.ingest.service import IngestService
from rapport.ingest.settings import IngestSettings


def create_app(settings: IngestSettings) -> FastAPI:
    metrics = IngestMetrics(settings.service_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            producer = create_producer(settings, client_id=settings.service_name)
            stack.push_async_callback(producer.stop)  # also closes a producer that failed to start
            redis = create_redis(settings, client_name=settings.service_name)
            stack.push_async_callback(redis.aclose)
            await producer.start()
            service = IngestService(
                settings,
                log=EventLog(producer),
                admission=AdmissionStore(
                    redis,
                    window_s=settings.dedup_window_s,
                    pending_ttl_s=settings.dedup_pending_ttl_s,
                ),
                metrics=metrics,
            )
            stack.push_async_callback(service.drain)  # before the producer stops
            app.state.service = service
            # Kafka is the one hard dependency; Redis only adds deduplication and rate limits.
            add_readiness_check(app, "kafka", partial(ping_kafka, producer))
            yield

    app = create_service_app(
        settings,
        title="Rapport ingest",
        description="The public event API: validates events, company documents and "
        "catalogue items and produces them to Kafka.",
        lifespan=lifespan,
        metrics=metrics,
    )
    app.add_middleware(
        BodySizeLimitMiddleware,
        limits={
            "/v1/events": settings.max_body_bytes,
            "/v1/knowledge": settings.knowledge_max_body_bytes,
            "/v1/catalog": settings.max_body_bytes,
        },
    )
    app.include_router(router)
    if settings.events_hot_path:
        wrap_middleware_stack(
            app, partial(EventsHotPath, fastapi=app, max_bytes=settings.max_body_bytes)
        )
    document_schemas(
        app,
        {
            REQUEST_SCHEMA: BODY,
            KNOWLEDGE_REQUEST_SCHEMA: KNOWLEDGE_BODY,
            CATALOG_REQUEST_SCHEMA: CATALOG_BODY,
        },
    )
    return app


def main() -> None:
    run_service(IngestSettings, create_app)
