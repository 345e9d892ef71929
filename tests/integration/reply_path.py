"""Settings for the reply path's services as the integration tests run them in process:
recommend and respond beside a test's own profile (``private_profile``), every one
reading the same Redis and Kafka. A test overrides what it is about."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from rapport.common.auth import key_entry
from rapport.devstack.processes import free_port
from rapport.devstack.pytest_plugin import serve_app
from rapport.devstack.servers import RunningServer
from rapport.profile.settings import ProfileSettings
from rapport.recommend.app import create_app as create_recommend_app
from rapport.recommend.settings import RecommendSettings
from rapport.respond.app import create_app as create_respond_app
from rapport.respond.settings import RespondSettings

# (token, key id, tenant, scopes)
KeySpec = tuple[str, str, str, Sequence[str]]


def keys_json(*keys: KeySpec) -> str:
    """``RAPPORT_API_KEYS`` holding these keys (their hashes)."""
    entries = [
        key_entry(token, key_id=key_id, tenant=tenant, scopes=list(scopes))
        for token, key_id, tenant, scopes in keys
    ]
    return json.dumps([entry.model_dump(mode="json") for entry in entries])


def recommend_settings(
    profile: ProfileSettings,
    profile_url: str,
    triton: RunningServer,
    served_models: Path,
    **overrides: Any,
) -> RecommendSettings:
    fields: dict[str, Any] = {
        "api_keys": profile.api_keys,
        "profile_url": profile_url,
        "redis_url": profile.redis_url,
        "triton_grpc_url": triton.url("triton_grpc"),
        "triton_timeout_ms": 2000,
        "catalog_path": served_models.parent / "catalog.json",
    }
    return RecommendSettings(**(fields | overrides))


def trending_recommend_settings(profile: ProfileSettings, profile_url: str) -> RecommendSettings:
    """recommend with no Triton behind it: trending answers (the breaker stays open)."""
    return RecommendSettings(
        api_keys=profile.api_keys,
        profile_url=profile_url,
        redis_url=profile.redis_url,
        triton_grpc_url=f"127.0.0.1:{free_port()}",
        triton_timeout_ms=20,
        breaker_reset_s=3600,
    )


def respond_settings(
    profile: ProfileSettings, profile_url: str, recommend_url: str, **overrides: Any
) -> RespondSettings:
    """Timeouts for a loaded 2-core machine: these tests are about behaviour, not time."""
    fields: dict[str, Any] = {
        "api_keys": profile.api_keys,
        "profile_url": profile_url,
        "redis_url": profile.redis_url,
        "recommend_url": recommend_url,
        "recommend_timeout_ms": 5000,
        "profile_timeout_ms": 5000,
        "kafka_bootstrap_servers": profile.kafka_bootstrap_servers,
        "events_topic": profile.events_topic,
    }
    return RespondSettings(**(fields | overrides))


@dataclass(frozen=True)
class ServedReplyPath:
    recommend_url: str
    respond_url: str  # template mode
    llm_respond_url: str  # LLM mode, on the test's fake upstream
    respond_settings: RespondSettings  # template mode's, for variants a test starts itself


@asynccontextmanager
async def serve_reply_path(
    profile: ProfileSettings,
    profile_url: str,
    triton: RunningServer,
    served_models: Path,
    *,
    llm_url: str,
    **respond_overrides: Any,
) -> AsyncIterator[ServedReplyPath]:
    """recommend, then respond twice over it: from templates, and in LLM mode on
    ``llm_url`` (a fake upstream's base URL)."""
    recommending = recommend_settings(profile, profile_url, triton, served_models)
    async with serve_app(create_recommend_app(recommending)) as recommend_url:
        templated = respond_settings(profile, profile_url, recommend_url, **respond_overrides)
        with_llm = templated.model_copy(
            update={"llm_base_url": f"{llm_url}/v1", "llm_api_key": SecretStr("sk-test")}
        )
        async with (
            serve_app(create_respond_app(templated)) as respond_url,
            serve_app(create_respond_app(with_llm)) as llm_respond_url,
        ):
            yield ServedReplyPath(recommend_url, respond_url, llm_respond_url, templated)
