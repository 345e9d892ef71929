"""App factory (the process entry point is :mod:`rapport.respond.cli`).

Readiness has no hard dependency: the gateway degrades rather than fails when
profile, recommend, Redis or Kafka is slow or down (DESIGN.md). ``/readyz`` reports
each of them and reads ``degraded`` (still 200) while one does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import aiohttp
import yaml
from fastapi import FastAPI
from openai import AsyncOpenAI, DefaultAioHttpClient
from pydantic import SecretStr, ValidationError

from rapport.common.app import add_readiness_check, create_service_app
from rapport.common.cache import create_redis, ping_redis
from rapport.common.experiments import ExperimentFileError, load_experiments
from rapport.common.http import create_http_session
from rapport.common.knowledge_index import KnowledgeIndex
from rapport.common.limits import InFlightLimit
from rapport.common.milvus import connect
from rapport.common.profiles import ProfileClient
from rapport.common.published import ProfileReader, PublishedProfiles
from rapport.common.settings import ConfigurationError
from rapport.respond.adapters.knowledge import (
    IndexSearch,
    KnowledgeClient,
    KnowledgeSearch,
)
from rapport.respond.adapters.llm import Upstream, UpstreamEntry, Upstreams, upstream_entries
from rapport.respond.adapters.recommend import RecommendClient
from rapport.respond.adapters.recorder import EventRecorder
from rapport.respond.experiments import Experiments, check_personas
from rapport.respond.metrics import RespondMetrics
from rapport.respond.routes import OPENAI_COMPATIBLE_PATHS, router
from rapport.respond.service import RespondService
from rapport.respond.settings import RespondSettings
from rapport.respond.templates import TemplateFile, load_templates

log = logging.getLogger(__name__)

READY_PROBE_S = 0.5
NO_KEY = "no-key"


def _probe(http: aiohttp.ClientSession, url: str) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        timeout = aiohttp.ClientTimeout(total=READY_PROBE_S)
        async with http.get(url, timeout=timeout) as response:
            if response.status != 200:
                raise ConnectionError(f"{url} answered {response.status}")

    return check


def build_upstreams(settings: RespondSettings, tenants: list[UpstreamEntry]) -> Upstreams:
    """One ``openai`` client per upstream, each with its own key; no retries of its own
    (the gateway owns the time a reply may take)."""

    def upstream(base_url: str, key: SecretStr | None, models: Sequence[str]) -> Upstream:
        # The client insists on a key: a local upstream that wants none gets a placeholder.
        client = AsyncOpenAI(
            base_url=base_url,
            api_key=key.get_secret_value() if key else NO_KEY,
            max_retries=0,
            http_client=DefaultAioHttpClient() if settings.llm_http_client == "aiohttp" else None,
        )
        timeout_s = settings.llm_timeout_ms / 1000
        return Upstream(client, tuple(models), timeout_s, settings.llm_max_tokens)

    default = None
    if settings.llm_base_url:
        default = upstream(settings.llm_base_url, settings.llm_api_key, settings.upstream_models)
    return Upstreams(
        default, {t.tenant: upstream(t.base_url, t.api_key, t.models) for t in tenants}
    )


async def warm_up(index: KnowledgeIndex, retry_s: float = 1.0) -> None:
    """Until the first search answers (knowledge may not have created the index yet)."""
    while True:
        try:
            await index.warm_up()
            return
        except Exception as exc:  # not there yet: replies degrade `knowledge` meanwhile
            log.info("knowledge index not searchable yet", extra={"error": str(exc)[:200]})
            await asyncio.sleep(retry_s)


def knowledge_search(
    settings: RespondSettings, http: aiohttp.ClientSession, stack: contextlib.AsyncExitStack
) -> KnowledgeSearch | None:
    """knowledge's index read here when respond can reach it, else knowledge's API; None
    when knowledge is off."""
    if not settings.knowledge_url:
        return None
    if settings.milvus_uri:
        client = connect(settings.milvus_uri, settings)
        stack.push_async_callback(client.close)
        index = KnowledgeIndex(
            client, prefix=settings.knowledge_collection, consistency=settings.search_consistency
        )
        warming = asyncio.create_task(warm_up(index))
        stack.callback(warming.cancel)
        return IndexSearch(index, settings.knowledge_snippet_chars)
    timeout_s = settings.knowledge_timeout_ms / 1000
    return KnowledgeClient(http, settings.knowledge_url, timeout_s)


def configured_experiments(path: Path | None, templates: TemplateFile) -> Experiments:
    """The experiments file, checked against the templates; one line per problem."""
    try:
        file = load_experiments(path)
    except ExperimentFileError as exc:
        raise ConfigurationError(
            "invalid RAPPORT_RESPOND_EXPERIMENTS_FILE:\n" + "\n".join(exc.lines)
        ) from None
    problems = check_personas(file, [p.id for p in templates.personas], str(path))
    if problems:
        raise ConfigurationError(
            "invalid RAPPORT_RESPOND_EXPERIMENTS_FILE:\n" + "\n".join(problems)
        )
    return Experiments(file)


def create_app(settings: RespondSettings) -> FastAPI:
    metrics = RespondMetrics(settings.service_name)
    try:
        templates = load_templates(settings.templates_path)
    except (OSError, ValueError, ValidationError, yaml.YAMLError) as exc:
        raise ConfigurationError(
            f"invalid templates ({settings.templates_path or 'built-in'}): "
            "run `rapport-respond templates check FILE`; " + str(exc).splitlines()[0]
        ) from None
    experiments = configured_experiments(settings.experiments_file, templates)
    try:
        tenants = upstream_entries(settings.llm_upstreams, settings.llm_upstreams_file)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            "invalid RAPPORT_LLM_UPSTREAMS(_FILE): " + str(exc).splitlines()[0]
        ) from None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            # Timeouts are per call (the request's remaining budget); these are only ceilings.
            http = create_http_session(total_timeout_s=30.0, pool_size=200)
            stack.push_async_callback(http.close)
            redis = create_redis(settings, client_name=settings.service_name)
            stack.push_async_callback(redis.aclose)
            profiles = ProfileClient(http, settings.profile_url, settings.profile_timeout_ms / 1000)
            recorder = EventRecorder(
                settings, topic=settings.events_topic, retry_s=settings.kafka_retry_s
            )
            await recorder.start()
            stack.push_async_callback(recorder.stop)
            upstreams = build_upstreams(settings, tenants)
            stack.push_async_callback(upstreams.aclose)
            app.state.service = RespondService(
                settings=settings,
                profiles=profiles,
                reader=ProfileReader(
                    PublishedProfiles(redis), profiles, fallbacks=metrics.profile_fallbacks
                ),
                recommend=RecommendClient(
                    http, settings.recommend_url, settings.recommend_timeout_ms / 1000
                ),
                recorder=recorder,
                templates=templates,
                metrics=metrics,
                admission=InFlightLimit(
                    settings.max_in_flight,
                    metrics.in_flight,
                    target_s=settings.admission_target_ms / 1000 or None,
                    floor=settings.min_in_flight,
                    limit_gauge=metrics.admission_limit,
                    waiting_gauge=metrics.admission_waiting,
                ),
                upstreams=upstreams,
                knowledge=knowledge_search(settings, http, stack),
                experiments=experiments,
            )
            add_readiness_check(app, "kafka", recorder.ping, required=False)
            add_readiness_check(app, "redis", partial(ping_redis, redis), required=False)
            if settings.knowledge_url:
                knowledge_ready = _probe(http, f"{settings.knowledge_url.rstrip('/')}/readyz")
                add_readiness_check(app, "knowledge", knowledge_ready, required=False)
            profile_ready = _probe(http, f"{settings.profile_url.rstrip('/')}/readyz")
            add_readiness_check(app, "profile", profile_ready, required=False)
            recommend_ready = _probe(http, f"{settings.recommend_url.rstrip('/')}/readyz")
            add_readiness_check(app, "recommend", recommend_ready, required=False)
            yield

    app = create_service_app(
        settings,
        title="Rapport respond",
        description="Personalized replies for chatbots, natively and OpenAI-compatible.",
        lifespan=lifespan,
        metrics=metrics,
        openai_compatible_paths=OPENAI_COMPATIBLE_PATHS,
    )
    app.include_router(router)
    return app
