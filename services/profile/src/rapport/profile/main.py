"""App factory and process entry point.

The stream processor runs as a task in this process (``RAPPORT_PROFILE_CONSUME``);
the profile read/consent/erasure API arrives with the rest of issue 4.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from rapport.common.app import add_readiness_check, create_service_app, run_service
from rapport.common.cache import create_redis
from rapport.common.kafka import create_consumer, create_producer, ping_kafka
from rapport.common.mongo import create_mongo_client, ping_mongo
from rapport.profile.processor import Processor
from rapport.profile.settings import ProfileSettings
from rapport.profile.store import ProfileStore


@asynccontextmanager
async def stream_processor(
    app: FastAPI, settings: ProfileSettings, store: ProfileStore
) -> AsyncIterator[None]:
    consumer = create_consumer(
        settings, group_id=settings.group_id, client_id=settings.service_name
    )
    producer = create_producer(settings, client_id=settings.service_name)
    redis = create_redis(settings, client_name=settings.service_name)
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
    )
    consumer.subscribe([settings.events_topic], listener=processor.rebalance_listener())
    await producer.start()
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
        await producer.stop()
        await redis.aclose()


def create_app(settings: ProfileSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo = create_mongo_client(settings, app_name=settings.service_name)
        store = ProfileStore(mongo[settings.mongo_database])
        app.state.mongo = mongo
        # MongoDB is the source of truth; Redis is a cache and never gates readiness.
        add_readiness_check(app, "mongo", partial(ping_mongo, mongo))
        try:
            async with contextlib.AsyncExitStack() as stack:
                if settings.consume:
                    await stack.enter_async_context(stream_processor(app, settings, store))
                yield
        finally:
            await mongo.close()

    return create_service_app(
        settings,
        title="Rapport profile",
        version="0.1.0",
        description="Profiles, sessions and trending items derived from the event stream.",
        lifespan=lifespan,
    )


def main() -> None:
    run_service(ProfileSettings, create_app)
