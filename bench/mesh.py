"""Service processes for the benchmarks: quiet logs, 1% trace sampling, the bench key."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from bench.ingest import KEY
from rapport.common.auth import ALL_SCOPES, key_entry
from rapport.devstack.scrape import sample_sum
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


def scrape(base_url: str) -> str:
    """A service's /metrics page."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as response:  # noqa: S310
        text: str = response.read().decode()
    return text


def metric_total(base_url: str, name: str) -> float:
    """The sum of a sample's series on a service's /metrics (0 when absent)."""
    return sample_sum(scrape(base_url), name)


def rate_excluding(row: dict[str, Any], excluded: int) -> float:
    """A level's requests per second less the ``excluded`` answers (shed, fallback): what
    the expensive path really sustained. Cheap answers would inflate a saturation rate."""
    requests, rate = int(row["requests"]), float(row["requests_per_s"])
    return round(rate * (1 - excluded / max(1, requests)), 1)


def wait_until_ready(base_url: str, timeout_s: float = 60.0) -> float:
    """Block until ``/readyz`` says ``ready`` (for recommend: models warm, circuit closed),
    so one load level's overload (an open breaker) does not leak into the next."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as response:  # noqa: S310
                if json.loads(response.read()).get("status") == "ready":
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{base_url} not ready after {timeout_s:.0f} s")
