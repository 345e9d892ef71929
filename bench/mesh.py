"""Service processes for the benchmarks: quiet logs, 1% trace sampling, the bench key."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from rapport.common.kafka import TopicSpec
from rapport.devstack import processes
from rapport.devstack.scrape import sample_sum
from rapport.devstack.stack import INFRA, InfraName, MeshPlan, Stack, keys_env

KEY = "rpk_bench_0123456789abcdefghijklmnop"


def bench_plan(
    services: Sequence[str],
    *,
    infra: Sequence[InfraName] = INFRA,
    model_repository: Path | None = None,
    topics: Sequence[TopicSpec] | None = None,
    env: dict[str, dict[str, str]] | None = None,
    service_env: dict[str, str] | None = None,
) -> MeshPlan:
    """The local mesh as every benchmark runs it: the bench key with every scope and no
    rate limit (the load is the point), quiet logs, 1% of traces sampled; ``service_env``
    is added to every service's environment last."""
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
            **(service_env or {}),
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


LOAD_GENERATOR = "load generator"


def cpu_snapshot(stack: Stack) -> dict[str, float]:
    """CPU seconds so far per server of ``stack`` (Triton with its stubs), and of the load
    generator processes this bench has already reaped."""
    spent = {s.spec.name: processes.cpu_seconds(s.handle) for s in stack.running}
    reaped = psutil.Process().cpu_times()
    spent[LOAD_GENERATOR] = reaped.children_user + reaped.children_system
    return spent


def cpu_ms_per(
    before: dict[str, float],
    after: dict[str, float],
    count: int,
    *,
    idle_per_s: dict[str, float] | None = None,
    seconds: float = 0.0,
) -> dict[str, float]:
    """Each process's CPU between two snapshots, in ms per one of ``count`` operations.

    With ``idle_per_s`` (CPU seconds per second with no load, see :func:`idle_cpu`), what
    the process burns anyway over ``seconds`` is taken off first: consumer polls, Triton's
    and the broker's own loops are not a reply's cost.
    """
    idle = idle_per_s or {}
    return {
        name: round(
            max(0.0, after[name] - before.get(name, 0.0) - idle.get(name, 0.0) * seconds)
            * 1000
            / max(1, count),
            3,
        )
        for name in after
    }


def idle_cpu(stack: Stack, seconds: float = 5.0) -> dict[str, float]:
    """CPU seconds per second each process spends with no load at all."""
    before = cpu_snapshot(stack)
    time.sleep(seconds)
    after = cpu_snapshot(stack)
    return {name: round((after[name] - before.get(name, 0.0)) / seconds, 4) for name in after}
