"""Service processes for the benchmarks: quiet logs, 1% trace sampling, the bench key."""

from __future__ import annotations

import json

from ingest import KEY

from rapport.common.auth import ALL_SCOPES, key_entry
from rapport.devstack.servers import ServerSpec
from rapport.devstack.stack import infra_env, service_spec


def keys_env() -> str:
    """The bench key with every scope and no rate limit (the load is the point)."""
    entry = key_entry(KEY, key_id="bench", tenant="bench", scopes=ALL_SCOPES)
    return json.dumps([{**entry.model_dump(mode="json"), "rate_per_s": 1e9, "burst": 10**9}])


def service(name: str, port: int, infra: dict[str, str], extra: dict[str, str]) -> ServerSpec:
    env = {
        **infra_env(infra),
        f"RAPPORT_{name.upper()}_LOG_LEVEL": "WARNING",
        "RAPPORT_API_KEYS": keys_env(),
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
        **extra,
    }
    return service_spec(name, port, env)
