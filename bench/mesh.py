"""Service processes for the benchmarks: quiet logs, 1% trace sampling, the bench key."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rapport.common.kafka import TopicSpec
from rapport.devstack.scrape import sample_sum
from rapport.devstack.stack import INFRA, InfraName, MeshPlan, keys_env

KEY = "rpk_bench_0123456789abcdefghijklmnop"


def bench_plan(
    services: Sequence[str],
    *,
    infra: Sequence[InfraName] = INFRA,
    model_repository: Path | None = None,
    topics: Sequence[TopicSpec] | None = None,
    env: dict[str, dict[str, str]] | None = None,
) -> MeshPlan:
    """The local mesh as every benchmark runs it: the bench key with every scope and no
    rate limit (the load is the point), quiet logs, 1% of traces sampled."""
    return MeshPlan(
        api_keys=keys_env(KEY, key_id="bench", tenant="bench", unlimited=True),
        infra=infra,
        services=services,
        topics=topics,
        model_repository=model_repository,
        log_level="WARNING",
        service_env={
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.01",
        },
        env=env or {},
    )


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
