"""App factory and process entry point.

The HTTP API and, with ``RAPPORT_PROFILE_CONSUME`` (the default), the stream
processor run in one process; they share the MongoDB, Redis and Kafka clients.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from redis.asyncio import Redis

from rapport.common.app import add_readiness_check, create_service_app, run_service
from rapport.common.cache import create_redis
from rapport.common.clock import Clock, utc_now
from rapport.common.kafka import create_consumer, create_producer, ping_kafka
from rapport.common.mongo import create_mongo_client, ping_mongo
from rapport.profile.adapters.processor import Processor
from rapport.profile.adapters.store import ProfileStore
from rapport.profile.metrics import ProfileMetrics
from rapport.profile.routes import router
from rapport.profile.service import ProfileService
from rapport.profile.settings import ProfileSettings


@asynccontextmanager
async def stream_processor(
    app: FastAPI,
    settings: ProfileSettings,
    *,
    store: ProfileStore,
    producer: AIOKafkaProducer,
    redis: Redis,
    metrics: ProfileMetrics,
) -> AsyncIterator[None]:
    consumer = create_consumer(
        settings,
        group_id=settings.group_id,
        client_id=settings.service_name,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
    )
    processor = Processor(
        consumer=consumer,
        producer=producer,
        store=store,
        redis=redis,
        rules=settings.rules,
        group_id=settings.group_id,
        cache_ttl_s=settings.cache_ttl_s,
        changes_topic=settings.changes_topic,
        dlq_topic=settings.dlq_topic,
        metrics=metrics,
    )
    consumer.subscribe([settings.events_topic], listener=processor.rebalance_listener())
    await consumer.start()
    add_readiness_check(app, "kafka", partial(ping_kafka, consumer))
    stop = asyncio.Event()
    task = asyncio.create_task(processor.run(max_records=settings.max_batch, stop=stop))
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout=10)  # finishes the batch in hand
        await consumer.stop()


def create_app(settings: ProfileSettings, *, clock: Clock = utc_now) -> FastAPI:
    """``clock`` dates what the API decays, records and erases (tests move it)."""
    metrics = ProfileMetrics(settings.service_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            mongo = create_mongo_client(settings, app_name=settings.service_name)
            stack.push_async_callback(mongo.close)
            redis = create_redis(settings, client_name=settings.service_name)
            stack.push_async_callback(redis.aclose)
            producer = create_producer(settings, client_id=settings.service_name)
            stack.push_async_callback(producer.stop)  # also closes a producer that failed to start
            await producer.start()
            store = ProfileStore(mongo[settings.mongo_database])
            # MongoDB is the source of truth; Redis is a cache and never gates readiness.
            add_readiness_check(app, "mongo", partial(ping_mongo, mongo))
            app.state.service = ProfileService(
                store=store,
                redis=redis,
                producer=producer,
                rules=settings.rules,
                events_topic=settings.events_topic,
                changes_topic=settings.changes_topic,
                cache_ttl_s=settings.cache_ttl_s,
                trending_half_life=timedelta(hours=settings.trending_half_life_hours),
                clock=clock,
            )
            if settings.consume:
                await stack.enter_async_context(
                    stream_processor(
                        app, settings, store=store, producer=producer, redis=redis, metrics=metrics
                    )
                )
            yield

    app = create_service_app(
        settings,
        title="Rapport profile",
        description="Profiles, sessions and trending items derived from the event stream.",
        lifespan=lifespan,
        metrics=metrics,
    )
    app.include_router(router)
    return app


def main() -> None:
    run_service(ProfileSettings, create_app)
