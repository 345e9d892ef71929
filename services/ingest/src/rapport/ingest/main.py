"""App factory and process entry point. The event API itself arrives with issue 3."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from rapport.common.app import add_readiness_check, create_service_app, run_service
from rapport.common.kafka import create_producer, ping_kafka
from rapport.ingest.settings import IngestSettings


def create_app(settings: IngestSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = create_producer(settings, client_id=settings.service_name)
        await producer.start()
        app.state.producer = producer
        add_readiness_check(app, "kafka", partial(ping_kafka, producer))
        try:
            yield
        finally:
            await producer.stop()

    return create_service_app(
        settings,
        title="Rapport ingest",
        version="0.1.0",
        description="The public event API: validates events and produces them to Kafka.",
        lifespan=lifespan,
    )


def main() -> None:
    run_service(IngestSettings, create_app)
