"""Settings for the reply path's services as the integration tests run them in process:
recommend and respond beside a test's own profile (``private_profile``), every one
reading the same Redis and Kafka. A test overrides what it is about."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rapport.common.auth import key_entry
from rapport.devstack.servers import RunningServer
from rapport.profile.settings import ProfileSettings
from rapport.recommend.settings import RecommendSettings
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
