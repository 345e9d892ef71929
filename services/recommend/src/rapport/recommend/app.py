"""App factory and process entry point.

Readiness never fails on Triton, Redis or the profile service: each has a fallback
(DESIGN.md). ``/readyz`` reports the models' state and says ``degraded`` while
the fallback serves.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from purgatory import AsyncCircuitBreakerFactory
from tritonclient.grpc.aio import InferenceServerClient

from rapport.common.app import add_readiness_check, create_service_app, run_service
from rapport.common.cache import create_redis, ping_redis
from rapport.common.drift_monitor import ReferenceFile
from rapport.common.http import create_http_session
from rapport.common.limits import InFlightLimit
from rapport.common.periodic import run_every
from rapport.common.profiles import ProfileClient
from rapport.common.published import ProfileReader, PublishedProfiles
from rapport.common.triton import channel_args
from rapport.recommend.adapters.catalog import load_catalog
from rapport.recommend.adapters.catalog_stream import CatalogStream
from rapport.recommend.adapters.triton import TritonModels
from rapport.recommend.domain import CatalogOverlay
from rapport.recommend.drift import DriftMonitor
from rapport.recommend.metrics import RecommendMetrics
from rapport.recommend.routes import router
from rapport.recommend.service import RecommendService
from rapport.recommend.settings import RecommendSettings


def create_app(settings: RecommendSettings) -> FastAPI:
    metrics = RecommendMetrics(settings.service_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            http = create_http_session()
            stack.push_async_callback(http.close)
            redis = create_redis(settings, client_name=settings.service_name)
            stack.push_async_callback(redis.aclose)
            add_readiness_check(app, "redis", partial(ping_redis, redis), required=False)
            profiles = ProfileClient(http, settings.profile_url, settings.profile_timeout_ms / 1000)
            triton = InferenceServerClient(settings.triton_grpc_url, channel_args=channel_args())
            stack.push_async_callback(triton.close)
            breakers = AsyncCircuitBreakerFactory(
                default_threshold=settings.breaker_failures, default_ttl=settings.breaker_reset_s
            )
            await breakers.initialize()
            models = TritonModels(
                triton,
                item_model=settings.item_model,
                encoder_model=settings.encoder_model,
                intent_model=settings.intent_model,
                sentiment_model=settings.sentiment_model,
                reply_model=settings.reply_model,
                timeout_s=settings.triton_timeout_ms / 1000,
                breakers=breakers,
                metrics=metrics,
            )
            add_readiness_check(app, "triton", models.ready, required=False)
            catalog = load_catalog(settings.catalog_path)
            drift = DriftMonitor(
                intent_model=settings.intent_model,
                item_model=settings.item_model,
                references=ReferenceFile(settings.drift_references),
                metrics=metrics,
                messages=settings.drift_messages,
                rankings=settings.drift_rankings,
                catalogue_size=len(catalog),
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
            warm_up = asyncio.create_task(models.warm_up())
            stack.callback(warm_up.cancel)
            overlay = None
            if settings.max_new_items:
                # Read in the background: until it has caught up, rankings have fewer new items.
                overlay = CatalogOverlay(known=catalog)
                stream = CatalogStream(settings, settings.catalog_topic, overlay, metrics)
                stream.start()
                stack.push_async_callback(stream.stop)
            app.state.service = RecommendService(
                models=models,
                profiles=profiles,
                reader=ProfileReader(
                    PublishedProfiles(redis), profiles, fallbacks=metrics.profile_fallbacks
                ),
                metrics=metrics,
                catalog=catalog,
                history_decay=settings.history_decay,
                history_items=settings.history_items,
                explore=settings.explore,
                bandit_refresh_s=settings.bandit_refresh_s,
                model_wait_s=settings.model_wait_ms / 1000,
                admission=InFlightLimit(
                    settings.max_model_in_flight,
                    target_s=settings.model_target_ms / 1000 or None,
                    floor=settings.min_model_in_flight,
                    waiting_gauge=metrics.admission_waiting,
                    limit_gauge=metrics.admission_limit,
                ),
                drift=drift,
                overlay=overlay,
                max_new_items=settings.max_new_items,
            )
            yield

    app = create_service_app(
        settings,
        title="Rapport recommend",
        description="Ranked items and message understanding, served by Triton.",
        lifespan=lifespan,
        metrics=metrics,
    )
    app.include_router(router)
    return app


def main() -> None:
    run_service(RecommendSettings, create_app)
