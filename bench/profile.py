"""Profile service: apply throughput, end-to-end freshness, cached read latency.

Starts Tansu, nx-27017 and Redis (devstack), then real ``rapport-ingest`` and
``rapport-profile`` processes on loopback:

1. apply throughput: 50,000 events already on the topic, one consumer
   process, MongoDB and Redis writes; events/s until all are committed, and
   each process's CPU per event; then the floor of MongoDB alone: the same
   load and bulk write of 500 of the stored profiles, without the service;
2. freshness: background load of single-event POSTs to ingest at a fixed rate
   (open loop, from a separate process) while probe events are posted one at
   a time and ``GET /v1/profiles`` is polled until it shows each (ms);
3. read latency on a cache hit: ``GET /v1/profiles/{user}`` at concurrency 1
   and 16.

Results: ``bench/results/profile.json``; every figure beside its load level.

    .venv/bin/python -m bench.profile [--events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp
import bson
import numpy as np
from pymongo import ReplaceOne

from bench import pyspy
from bench.ingest import run_load
from bench.mesh import KEY, bench_plan, cpu_ms_per, cpu_snapshot
from bench.results_file import write_results
from rapport.common.kafka import (
    EVENTS_TOPIC,
    TopicSpec,
    create_producer,
    default_topics,
)
from rapport.common.mongo import create_mongo_client
from rapport.common.settings import KafkaSettings, MongoSettings
from rapport.devstack.scrape import sample_sum
from rapport.devstack.servers import RunningServer
from rapport.devstack.stack import Stack, start_mesh

PARTITIONS = 6


async def fill_topic(kafka: KafkaSettings, topic: str, count: int) -> None:
    producer = create_producer(kafka, max_batch_size=256 * 1024)
    await producer.start()
    try:
        now = datetime.now(UTC).isoformat()
        futures = []
        for i in range(count):
            user = f"user-{i % 5000}"
            event = {
                "event_id": str(uuid.uuid4()),
                "type": "item_view",
                "user_id": user,
                "tenant": "bench",
                "item_id": f"m-{i % 700}",
                "category": f"c-{i % 19}",
                "occurred_at": now,
                "received_at": now,
            }
            futures.append(
                await producer.send(topic, key=user.encode(), value=json.dumps(event).encode())
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def applied_total(url: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        return sample_sum(await response.text(), "rapport_profile_events_total")


async def freshness_probes(ingest: str, profile: str, probes: int) -> list[float]:
    """POST one event for a fresh user, poll GET until the profile shows it (ms)."""
    headers = {"Authorization": f"Bearer {KEY}"}
    results = []
    async with aiohttp.ClientSession() as session:
        for i in range(probes):
            user = f"probe-{uuid.uuid4().hex[:8]}"
            event = {
                "type": "item_view",
                "user_id": user,
                "item_id": "m-1",
                "occurred_at": datetime.now(UTC).isoformat(),
            }
            start = time.perf_counter()
            async with session.post(f"{ingest}/v1/events", json=event, headers=headers) as r:
                if r.status != 202:
                    raise RuntimeError(f"ingest answered {r.status}: {await r.text()}")
            deadline = start + 5
            while time.perf_counter() < deadline:
                async with session.get(f"{profile}/v1/profiles/{user}", headers=headers) as r:
                    if (await r.json())["known"]:
                        break
                await asyncio.sleep(0.001)
            results.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.05 + 0.01 * (i % 5))
    return results


async def read_latency(profile: str, concurrency: int, requests: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {KEY}"}
    latencies: list[float] = []
    counter = iter(range(requests))
    async with aiohttp.ClientSession() as session:
        url = f"{profile}/v1/profiles/user-1"
        async with session.get(url, headers=headers) as r:  # warm the cache
            await r.read()

        async def worker() -> None:
            for _ in counter:
                start = time.perf_counter()
                async with session.get(url, headers=headers) as r:
                    await r.read()
                latencies.append((time.perf_counter() - start) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    lat = np.array(latencies)
    return {
        "scenario": "GET /v1/profiles (cache hit)",
        "load": f"closed, {concurrency} conns",
        "requests_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
    }


async def mongo_floor(url: str, rounds: int = 20) -> dict[str, Any]:
    """The store's share of the apply path, alone: a batch's load (one ``$in`` find) and
    write (one unordered bulk of ReplaceOne), with 500 of the profiles the apply just
    stored, as they are. The apply cannot be faster than this."""
    client = create_mongo_client(MongoSettings(mongo_url=url), app_name="rapport-bench")
    try:
        profiles = client[MongoSettings().mongo_database]["profiles"]
        docs = await profiles.find({}).limit(500).to_list()
        ids = [doc["_id"] for doc in docs]
        started = time.perf_counter()
        for _ in range(rounds):
            await profiles.find({"_id": {"$in": ids}}).to_list()
            await profiles.bulk_write(
                [ReplaceOne({"_id": d["_id"]}, d) for d in docs], ordered=False
            )
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    return {
        "scenario": "MongoDB alone: load + bulk write",
        "load": f"{len(docs)} stored profiles a batch, {rounds} batches",
        "profiles_per_s": round(len(docs) * rounds / elapsed, 1),
        "bytes_per_profile": round(sum(len(bson.encode(d)) for d in docs) / max(1, len(docs))),
    }


def show(row: dict[str, Any]) -> dict[str, Any]:
    figures = "  ".join(f"{k}={v}" for k, v in row.items() if k not in ("scenario", "load"))
    print(f"{row['scenario']:<34} load={row['load']:<26} {figures}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="background events/s")
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="record the profile process with py-spy for the first 8 s of the apply",
    )
    args = parser.parse_args()
    count = max(1000, min(args.events, 200_000))
    rows: list[dict[str, Any]] = []
    with TemporaryDirectory(prefix="rapport-bench-") as tmp, Stack(Path(tmp)) as stack:
        topics = [TopicSpec(EVENTS_TOPIC, PARTITIONS), *default_topics()[1:]]
        plan = bench_plan([], infra=["kafka", "mongo", "redis"], topics=topics)
        mesh = start_mesh(plan, stack, Path(tmp))
        infra = mesh.infra
        kafka = KafkaSettings(kafka_bootstrap_servers=infra["kafka"])
        asyncio.run(fill_topic(kafka, EVENTS_TOPIC, count))

        def start(service: str) -> RunningServer:
            return stack.start(plan.spec(service, mesh))

        profile = start("profile")
        # Timed from the first applied event, so the group join is not counted.
        while (first := asyncio.run(applied_total(profile.url()))) == 0:
            time.sleep(0.05)
        spied = pyspy.python_servers(stack)
        recorders = pyspy.record(spied, 8, args.py_spy) if args.py_spy else {}
        cpu_before = cpu_snapshot(stack)
        started = time.perf_counter()
        while asyncio.run(applied_total(profile.url())) < count:
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        count_timed = count - first
        cpu = cpu_ms_per(cpu_before, cpu_snapshot(stack), count_timed)
        rows.append(
            show(
                {
                    "scenario": "apply throughput, 1 process",
                    "load": f"{count} events backlog",
                    "events_per_s": round(count_timed / elapsed, 1),
                    "seconds": round(elapsed, 2),
                    "cpu_ms_per_event": cpu,
                }
            )
        )
        if recorders:
            rows[-1]["py_spy"] = pyspy.collect(recorders, args.py_spy)
            for process, top in rows[-1]["py_spy"].items():
                print(f"{'':<34} py-spy {process}: {top}", flush=True)
        rows.append(show(asyncio.run(mongo_floor(infra["mongo"]))))

        ingest = start("ingest")
        ctx_url = f"{ingest.url()}/v1/events"
        body = json.dumps(
            {
                "type": "item_view",
                "user_id": "u-bg",
                "item_id": "m-2",
                "occurred_at": datetime.now(UTC).isoformat(),
            }
        ).encode()
        background = threading.Thread(
            target=run_load, args=("open", ctx_url, body, 12.0, args.rate), daemon=True
        )
        background.start()
        time.sleep(1.0)
        fresh = np.array(asyncio.run(freshness_probes(ingest.url(), profile.url(), 60)))
        background.join(timeout=60)
        rows.append(
            show(
                {
                    "scenario": "freshness POST -> GET shows it",
                    "load": f"open, {args.rate:.0f} events/s",
                    "probes": len(fresh),
                    "p50_ms": round(float(np.percentile(fresh, 50)), 2),
                    "p99_ms": round(float(np.percentile(fresh, 99)), 2),
                }
            )
        )
        for concurrency in (1, 16):
            rows.append(show(asyncio.run(read_latency(profile.url(), concurrency, 3000))))
    write_results(
        "profile",
        rows,
        targets={
            "events_per_s": 5000,
            "freshness_p50_ms": 15,
            "freshness_p99_ms": 50,
            "read_p99_ms": 2,
        },
    )


if __name__ == "__main__":
    main()
