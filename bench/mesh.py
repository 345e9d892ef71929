"""The mesh as the benchmarks run it and read it: service processes with quiet logs, 1%
trace sampling and the bench key, started in a scratch directory (:func:`bench_mesh`);
its /metrics, readiness and JSON over HTTP; CPU per process; a backlog on a topic; the
store's own floor.

    with bench_mesh(["ingest"], infra=["kafka", "redis"]) as started:
        url = started.url("ingest")
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bson
import psutil
from pymongo import ReplaceOne

from bench.stats import Stopwatch
from rapport.common.kafka import TopicSpec, create_producer
from rapport.common.mongo import create_mongo_client
from rapport.common.settings import KafkaSettings, MongoSettings
from rapport.devstack import models, processes, servers
from rapport.devstack.scrape import sample_sum
from rapport.devstack.servers import RunningServer, ServerSpec
from rapport.devstack.stack import INFRA, InfraName, Mesh, MeshPlan, Stack, keys_env, start_mesh

KEY = "rpk_bench_0123456789abcdefghijklmnop"
REPO = Path(__file__).resolve().parents[1]


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


@contextmanager
def scratch(prefix: str = "rapport-bench-") -> Iterator[tuple[Path, Stack]]:
    """A temporary directory and a Stack logging into it: what is started there is
    stopped, and the directory removed, on the way out, whatever happens."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, Stack(Path(tmp)) as stack:
        yield Path(tmp), stack


@dataclass(frozen=True)
class Started:
    """A bench's running mesh: its scratch directory, stack, plan and servers."""

    work: Path
    stack: Stack
    plan: MeshPlan
    mesh: Mesh

    def url(self, name: str) -> str:
        return self.mesh.url(name)

    def start(self, service: str, env: Mapping[str, str] | None = None) -> RunningServer:
        """One more process of ``service`` in this mesh, ``env`` added to its environment."""
        return self.stack.start(self.plan.spec(service, self.mesh, env))


@contextmanager
def bench_mesh(
    services: Sequence[str],
    *,
    with_models: bool = False,
    infra: Sequence[InfraName] = INFRA,
    topics: Sequence[TopicSpec] | None = None,
    env: dict[str, dict[str, str]] | None = None,
) -> Iterator[Started]:
    """The mesh of :func:`bench_plan` in a :func:`scratch` directory, started;
    ``with_models``: Triton serves a private copy of the exported model repository
    (built first when missing)."""
    with scratch() as (work, stack):
        repository = (
            models.private_copy(work, REPO / models.DEFAULT_REPOSITORY) if with_models else None
        )
        plan = bench_plan(
            services, infra=infra, model_repository=repository, topics=topics, env=env
        )
        yield Started(work, stack, plan, start_mesh(plan, stack, work))


def fake_llm_spec(port: int) -> ServerSpec:
    """The fake OpenAI-compatible upstream (``rapport.devstack.fake_llm``) as a server of
    its own: respond's LLM mode without a real model behind it."""
    base_url = f"http://127.0.0.1:{port}"
    return ServerSpec(
        name="fake-llm",
        argv=[sys.executable, "-m", "rapport.devstack.fake_llm", "--port", str(port)],
        probe=lambda: servers.probe_http_ok(f"{base_url}/healthz"),
        urls={"fake-llm": base_url},
    )


def scrape(base_url: str) -> str:
    """A service's /metrics page."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as response:  # noqa: S310
        text: str = response.read().decode()
    return text


def metric_total(base_url: str, name: str) -> float:
    """The sum of a sample's series on a service's /metrics (0 when absent)."""
    return sample_sum(scrape(base_url), name)


def applied_total(profile_url: str) -> float:
    """Events a profile process has applied (or settled) so far, from its /metrics."""
    return metric_total(profile_url, "rapport_profile_events_total")


def post_json(url: str, body: bytes, key: str = KEY) -> Any:
    """POST a JSON body with ``key`` as the Bearer token; the answer's JSON."""
    request = urllib.request.Request(  # noqa: S310
        url,
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def get_json(url: str, key: str = KEY) -> Any:
    """GET with ``key`` as the Bearer token; the answer's JSON."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


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


async def fill_topic(
    kafka: KafkaSettings,
    topic: str,
    events: Iterable[tuple[str, dict[str, Any]]],
    *,
    max_batch_size: int,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Each ``(key, event)`` of ``events`` onto ``topic`` as JSON (a backlog for a consumer
    to drain): sent without waiting for each acknowledgement, then every one awaited."""
    producer = create_producer(kafka, max_batch_size=max_batch_size)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic, key=key.encode(), value=json.dumps(event).encode(), headers=headers
            )
            for key, event in events
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def mongo_floor(url: str, rounds: int = 20) -> dict[str, Any]:
    """The store's share of the apply path, alone: a batch's load (one ``$in`` find) and
    write (one unordered bulk of ReplaceOne), with 500 of the profiles the apply just
    stored, as they are. The apply cannot be faster than this."""
    client = create_mongo_client(MongoSettings(mongo_url=url), app_name="rapport-bench")
    try:
        profiles = client[MongoSettings().mongo_database]["profiles"]
        docs = await profiles.find({}).limit(500).to_list()
        ids = [doc["_id"] for doc in docs]
        with Stopwatch() as took:
            for _ in range(rounds):
                await profiles.find({"_id": {"$in": ids}}).to_list()
                await profiles.bulk_write(
                    [ReplaceOne({"_id": d["_id"]}, d) for d in docs], ordered=False
                )
    finally:
        await client.close()
    return {
        "scenario": "MongoDB alone: load + bulk write",
        "load": f"{len(docs)} stored profiles a batch, {rounds} batches",
        "profiles_per_s": round(len(docs) * rounds / took.seconds, 1),
        "bytes_per_profile": round(sum(len(bson.encode(d)) for d in docs) / max(1, len(docs))),
    }
