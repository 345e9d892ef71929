"""App factory and process entry point.

The HTTP API and, with ``RAPPORT_PROFILE_CONSUME`` (the default), the stream
processor run in one process; they share the MongoDB, Redis and Kafka clients.
"""

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from functools import partial

from fastapi import FastAPI, Request, Response
from pymongo.errors import ConnectionFailure, PyMongoError

from rapport.common.app import add_readiness_check, create_service_app, run_service
from rapport.common.cache import create_redis
from rapport.common.drift_monitor import ReferenceFile
from rapport.common.experiments import ExperimentFile, ExperimentFileError, load_experiments
from rapport.common.kafka import create_producer, ping_kafka
from rapport.common.milvus import connect
from rapport.common.mongo import create_mongo_client, ping_mongo
from rapport.common.periodic import run_every
from rapport.common.problems import ProblemError, problem_error_response, unexpected_error_response
from rapport.common.published import PublishedProfiles
from rapport.common.settings import ConfigurationError
from rapport.profile.adapters.cache import AggregateCache
from rapport.profile.adapters.language import LanguageDetector
from rapport.profile.adapters.memory import MemoryStore
from rapport.profile.adapters.published import Publisher
from rapport.profile.adapters.store import ProfileStore
from rapport.profile.adapters.waiting import WaitingWrites
from rapport.profile.domain.clock import Clock, utc_now
from rapport.profile.drift import CategoryDrift
from rapport.profile.metrics import ProfileMetrics
from rapport.profile.routes import router
from rapport.profile.service import ProfileService
from rapport.profile.settings import ProfileSettings
from rapport.profile.stream import stream_processor

log = logging.getLogger(__name__)


@asynccontextmanager
async def memory_store(
    app: FastAPI, settings: ProfileSettings, metrics: ProfileMetrics
) -> AsyncIterator[MemoryStore | None]:
    """The vector store of remembered messages, opened in the background; None when there
    is none. Profiles never wait for it: while it is away, messages are not remembered
    (their facts are) and recalls answer 503, so it gates no readiness."""
    if not (settings.memory and settings.milvus_uri):
        yield None
        return
    client = connect(settings.milvus_uri, settings)
    store = MemoryStore(
        client,
        collection=settings.memory_collection,
        dimension=settings.memory_dimension,
        metrics=metrics,
        consistency=settings.search_consistency,
        write_timeout_s=settings.memory_write_timeout_ms / 1000,
    )
    add_readiness_check(app, "milvus", store.ping, required=False)
    # Normally the store answers at once, and the processor's first batch finds it open;
    # if not, profile serves without it and the task below keeps trying.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(store.open(), settings.memory_open_wait_s)
        store.ready = True
    opening = asyncio.create_task(store.open_until_ready(settings.memory_retry_s))
    try:
        yield store
    finally:
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opening
        await client.close()


async def index_experiments(store: ProfileStore, experiments: ExperimentFile) -> None:
    """In the background: MongoDB need not be up for profile to start."""
    try:
        await store.index_experiments(e.name for e in experiments.experiments)
    except PyMongoError as exc:  # reports scan more without them; serving does not need them
        log.warning("experiment indexes not created", extra={"error": str(exc)[:200]})


def create_app(settings: ProfileSettings, *, clock: Clock = utc_now) -> FastAPI:
    """``clock`` dates what the API decays, records and erases (tests move it)."""
    metrics = ProfileMetrics(settings.service_name)
    try:
        experiments = load_experiments(settings.experiments_file)
    except ExperimentFileError as exc:
        raise ConfigurationError(
            "invalid RAPPORT_PROFILE_EXPERIMENTS_FILE:\n" + "\n".join(exc.lines)
        ) from None
    rules = replace(settings.rules, experiments=experiments)
    metrics.declare_experiments(experiments)

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
            indexing = asyncio.create_task(index_experiments(store, experiments))
            stack.callback(indexing.cancel)
            language = LanguageDetector()
            if settings.memory:  # the language model loads here, not on the first message
                await asyncio.to_thread(language.prepare)
            memory = await stack.enter_async_context(memory_store(app, settings, metrics))
            # MongoDB is the source of truth; Redis is a cache and never gates readiness.
            add_readiness_check(app, "mongo", partial(ping_mongo, mongo))
            publisher = Publisher(redis, rules, settings.cache_ttl_s)
            waiting = WaitingWrites(mongo[settings.mongo_database])
            service = app.state.service = ProfileService(
                store=store,
                cache=AggregateCache(redis),
                published=PublishedProfiles(redis),
                publisher=publisher,
                producer=producer,
                rules=rules,
                events_topic=settings.events_topic,
                changes_topic=settings.changes_topic,
                trending_half_life=timedelta(hours=settings.trending_half_life_hours),
                clock=clock,
                memory=memory,
                recall_timeout_s=settings.recall_timeout_ms / 1000,
                metrics=metrics,
                waiting=waiting,
            )
            # Writes that waited for the vector store or Redis, retried until they are done.
            settling = asyncio.create_task(
                run_every(
                    settings.waiting_interval_s,
                    service.settle_waiting,
                    failure="waiting writes not done yet",
                )
            )
            stack.callback(settling.cancel)
            if rules.experiments.experiments:
                gauges = asyncio.create_task(  # MongoDB away: they keep their last values
                    run_every(
                        settings.experiments_report_interval_s,
                        service.export_experiment_gauges,
                        failure="experiment gauges not refreshed",
                    )
                )
                stack.callback(gauges.cancel)
            if memory is not None:
                expiry = asyncio.create_task(
                    run_every(
                        settings.memory_expire_interval_s,
                        service.expire_memory,
                        failure="memory expiry failed",
                    )
                )
                stack.callback(expiry.cancel)
            drift = None
            if settings.consume and settings.drift_reference_path is not None:
                drift = CategoryDrift(
                    model=settings.drift_model,
                    references=ReferenceFile(settings.drift_reference_path),
                    gauges=metrics.drift,
                    events=settings.drift_events,
                )
                refreshing = asyncio.create_task(
                    run_every(
                        settings.drift_interval_s,
                        drift.refresh,
                        failure="drift gauges not refreshed",
                        wait_first=True,
                    )
                )
                stack.callback(refreshing.cancel)
            if settings.consume:
                processor = await stack.enter_async_context(
                    stream_processor(
                        settings,
                        rules=rules,
                        store=store,
                        producer=producer,
                        publisher=publisher,
                        metrics=metrics,
                        memory=memory,
                        waiting=waiting,
                        clock=clock,
                        detect_language=language.detect,
                        drift=drift,
                    )
                )
                add_readiness_check(app, "kafka", partial(ping_kafka, processor.consumer))
            yield

    app = create_service_app(
        settings,
        title="Rapport profile",
        description="Profiles, sessions and trending items derived from the event stream.",
        lifespan=lifespan,
        metrics=metrics,
    )
    app.include_router(router)
    app.add_exception_handler(PyMongoError, mongo_unavailable)
    return app


async def mongo_unavailable(request: Request, exc: Exception) -> Response:
    """MongoDB timed out or is unreachable: a 503 to retry, not a 500. Anything else from
    it is a bug, answered as one."""
    if isinstance(exc, ConnectionFailure) or (isinstance(exc, PyMongoError) and exc.timeout):
        log.warning("mongodb unavailable", extra={"error": type(exc).__name__})
        return problem_error_response(
            request,
            ProblemError(
                503,
                detail="The profile store did not answer in time; retry.",
                slug="store-unavailable",
                headers={"Retry-After": "1"},
            ),
        )
    return unexpected_error_response(request, exc)


def main() -> None:
    """``rapport-profile`` serves; ``rapport-profile redact-again`` is a one-off job."""
    if sys.argv[1:2] == ["redact-again"]:
        from rapport.profile.redact_again import main as redact_again  # noqa: PLC0415

        raise SystemExit(redact_again(sys.argv[2:]))
    run_service(ProfileSettings, create_app)
