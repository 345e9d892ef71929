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

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bench import pyspy
from bench.load import measure_calls, run_load
from bench.mesh import (
    KEY,
    applied_total,
    bench_mesh,
    cpu_ms_per,
    cpu_snapshot,
    fill_topic,
    mongo_floor,
)
from bench.options import bounded, parser
from bench.results_file import write_results
from bench.stats import Stopwatch, percentiles
from rapport.common.kafka import EVENTS_TOPIC, TopicSpec, default_topics
from rapport.common.settings import KafkaSettings

PARTITIONS = 6


def item_views(count: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """``count`` item views over 5,000 users, keyed by user, as ingest stores them."""
    now = datetime.now(UTC).isoformat()
    for i in range(count):
        user = f"user-{i % 5000}"
        yield (
            user,
            {
                "event_id": str(uuid.uuid4()),
                "type": "item_view",
                "user_id": user,
                "tenant": "bench",
                "item_id": f"m-{i % 700}",
                "category": f"c-{i % 19}",
                "occurred_at": now,
                "received_at": now,
            },
        )


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
            with Stopwatch() as took:
                async with session.post(f"{ingest}/v1/events", json=event, headers=headers) as r:
                    if r.status != 202:
                        raise RuntimeError(f"ingest answered {r.status}: {await r.text()}")
                while took.seconds < 5:
                    async with session.get(f"{profile}/v1/profiles/{user}", headers=headers) as r:
                        if (await r.json())["known"]:
                            break
                    await asyncio.sleep(0.001)
            results.append(took.ms)
            await asyncio.sleep(0.05 + 0.01 * (i % 5))
    return results


async def read_latency(profile: str, concurrency: int, requests: int) -> dict[str, Any]:
    """A cached profile read at ``concurrency``, after one read that warms the cache."""
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"{profile}/v1/profiles/user-1"
    async with aiohttp.ClientSession() as session:

        async def read(_: int) -> None:
            async with session.get(url, headers=headers) as r:
                await r.read()

        row = await measure_calls("GET", read, requests, concurrency, warm=1)
    return {
        "scenario": "GET /v1/profiles (cache hit)",
        "load": f"closed, {concurrency} conns",
        "requests_per_s": row["throughput_per_s"],
        "p50_ms": row["p50_ms"],
        "p99_ms": row["p99_ms"],
    }


def show(row: dict[str, Any]) -> dict[str, Any]:
    figures = "  ".join(f"{k}={v}" for k, v in row.items() if k not in ("scenario", "load"))
    print(f"{row['scenario']:<34} load={row['load']:<26} {figures}", flush=True)
    return row


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--events", type=int, default=50_000)
    options.add_argument("--rate", type=float, default=1000.0, help="background events/s")
    pyspy.option(options, "record the profile process with py-spy for the first 8 s of the apply")
    args = options.parse_args()
    count = bounded(args.events, 1000, 200_000)
    rows: list[dict[str, Any]] = []
    topics = [TopicSpec(EVENTS_TOPIC, PARTITIONS), *default_topics()[1:]]
    with bench_mesh([], infra=["kafka", "mongo", "redis"], topics=topics) as started:
        stack, infra = started.stack, started.mesh.infra
        kafka = KafkaSettings(kafka_bootstrap_servers=infra["kafka"])
        asyncio.run(fill_topic(kafka, EVENTS_TOPIC, item_views(count), max_batch_size=256 * 1024))

        profile = started.start("profile")
        # Timed from the first applied event, so the group join is not counted.
        while (first := applied_total(profile.url())) == 0:
            time.sleep(0.05)
        spied = pyspy.python_servers(stack)
        recorders = pyspy.record(spied, 8, args.py_spy) if args.py_spy else {}
        cpu_before = cpu_snapshot(stack)
        with Stopwatch() as apply:
            while applied_total(profile.url()) < count:
                time.sleep(0.1)
        count_timed = count - first
        cpu = cpu_ms_per(cpu_before, cpu_snapshot(stack), int(count_timed))
        rows.append(
            show(
                {
                    "scenario": "apply throughput, 1 process",
                    "load": f"{count} events backlog",
                    "events_per_s": round(count_timed / apply.seconds, 1),
                    "seconds": round(apply.seconds, 2),
                    "cpu_ms_per_event": cpu,
                }
            )
        )
        if recorders:
            rows[-1]["py_spy"] = pyspy.collect(recorders, args.py_spy)
            for process, top in rows[-1]["py_spy"].items():
                print(f"{'':<34} py-spy {process}: {top}", flush=True)
        rows.append(show(asyncio.run(mongo_floor(infra["mongo"]))))

        ingest = started.start("ingest")
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
        fresh = asyncio.run(freshness_probes(ingest.url(), profile.url(), 60))
        background.join(timeout=60)
        rows.append(
            show(
                {
                    "scenario": "freshness POST -> GET shows it",
                    "load": f"open, {args.rate:.0f} events/s",
                    "probes": len(fresh),
                    **percentiles(fresh),
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
