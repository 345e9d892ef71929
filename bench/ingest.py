"""Ingest throughput and latency, Kafka-acknowledged, one ingest process.

Starts Tansu and Redis (devstack) and one ``rapport-ingest`` process on
loopback, then drives it over HTTP from a separate load-generator process:

1. saturation, closed loop: single-event requests, then 100-event batches;
2. latency at fixed offered loads (open loop): 25/50/75% of the measured
   single-event saturation, p50/p99 at each.

Every ``202`` is a broker acknowledgement (``acks=all``). The machine has two
cores shared by the load generator, ingest, Tansu and Redis: the figures are
for that whole box, printed beside their load levels, and written to
``bench/results/ingest.json``.

    .venv/bin/python -m bench.ingest [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.mesh import KEY, bench_plan
from bench.results_file import write_results
from rapport.common.kafka import EVENTS_TOPIC, TopicSpec
from rapport.devstack.stack import Stack, start_mesh

CONNECTIONS = 64


def body(events: int) -> bytes:
    now = datetime.now(UTC).isoformat()
    item = {"type": "item_view", "user_id": "u-1", "item_id": "m-1", "occurred_at": now}
    if events == 1:
        return json.dumps(item).encode()
    items = [{**item, "user_id": f"u-{i % 50}"} for i in range(events)]
    return json.dumps({"events": items}).encode()


async def _closed_loop(
    url: str, payload: bytes, seconds: float, connections: int
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                async with session.post(url, data=payload, headers=headers) as response:
                    await response.read()
                latencies.append(time.perf_counter() - start)
                statuses[response.status] = statuses.get(response.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "elapsed": elapsed}


async def _open_loop(url: str, payload: bytes, seconds: float, rate: float) -> dict[str, Any]:
    """Requests at a fixed rate regardless of answers; latency counts from the planned send time."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    total = int(seconds * rate)
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(planned: float) -> None:
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
            latencies.append(time.perf_counter() - planned)
            statuses[response.status] = statuses.get(response.status, 0) + 1

        origin = time.perf_counter() + 0.2
        started = time.perf_counter()
        await asyncio.gather(*(one(origin + i / rate) for i in range(total)))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "elapsed": elapsed}


def _run_load(job: tuple[str, str, bytes, float, float], out: Any) -> None:
    """In the load-generator process: (kind, url, payload, seconds, level)."""
    kind, url, payload, seconds, level = job
    import uvloop  # noqa: PLC0415

    coro = (
        _closed_loop(url, payload, seconds, int(level))
        if kind == "closed"
        else _open_loop(url, payload, seconds, level)
    )
    out.put(uvloop.run(coro))


def run_load(kind: str, url: str, payload: bytes, seconds: float, level: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run_load, args=((kind, url, payload, seconds, level), queue))
    proc.start()
    result: dict[str, Any] = queue.get(timeout=seconds + 120)
    proc.join(timeout=30)
    return result


def summarize(
    name: str, load: str, events_per_request: int, raw: dict[str, Any], ok_status: int = 202
) -> dict[str, Any]:
    lat = np.array(raw["latencies"]) * 1000
    ok = raw["statuses"].get(ok_status, 0)
    row = {
        "scenario": name,
        "load": load,
        "events_per_request": events_per_request,
        "requests": len(lat),
        "statuses": {str(k): v for k, v in sorted(raw["statuses"].items())},
        "requests_per_s": round(ok / raw["elapsed"], 1),
        "events_per_s": round(ok * events_per_request / raw["elapsed"], 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
    }
    print(
        f"{name:<26} load={load:<22} req/s={row['requests_per_s']:>8}  "
        f"events/s={row['events_per_s']:>9}  p50={row['p50_ms']:>7} ms  p99={row['p99_ms']:>7} ms  "
        f"statuses={row['statuses']}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per load level (bounded)")
    args = parser.parse_args()
    seconds = max(2.0, min(args.seconds, 60.0))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rapport-bench-") as tmp, Stack(Path(tmp)) as stack:
        plan = bench_plan(["ingest"], infra=["kafka", "redis"], topics=[TopicSpec(EVENTS_TOPIC, 6)])
        url = f"{start_mesh(plan, stack, Path(tmp)).url('ingest')}/v1/events"

        run_load("closed", url, body(1), 2.0, 16)  # warm-up
        single = summarize(
            "single event, saturation",
            f"closed, {CONNECTIONS} conns",
            1,
            run_load("closed", url, body(1), seconds, CONNECTIONS),
        )
        rows.append(single)
        rows.append(
            summarize(
                "100-event batch, saturation",
                "closed, 16 conns",
                100,
                run_load("closed", url, body(100), seconds, 16),
            )
        )
        saturation = single["requests_per_s"]
        for fraction in (0.25, 0.5, 0.75):
            rate = max(50.0, round(saturation * fraction))
            rows.append(
                summarize(
                    f"single event, {int(fraction * 100)}% sat.",
                    f"open, {rate:.0f} req/s",
                    1,
                    run_load("open", url, body(1), seconds, rate),
                )
            )
    write_results(
        "ingest",
        rows,
        note="load generator, ingest, Tansu and Redis share the machine",
        targets={
            "single_event_requests_per_s": 4000,
            "batched_events_per_s": 40000,
            "p99_ms_at_half_saturation": 20,
        },
    )


if __name__ == "__main__":
    main()
