"""The benches' load: HTTP load from a process of its own, calls timed at a concurrency,
and respond with a feature on against off.

- :func:`run_load` POSTs one body to one URL for a number of seconds, closed loop (a
  number of connections, each sending as soon as it is answered) or open loop (a fixed
  rate, latency from each request's planned send time), from a spawned process so the
  load generator's CPU is not the bench's; :func:`summarize` makes it a results row.
- :func:`measure_calls` times ``calls`` awaits of one operation with ``concurrency`` in
  flight, in this process.
- :func:`on_off_rounds`: respond with a feature on against off, alternating.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np

from bench.mesh import KEY, scrape, wait_until_ready
from bench.stats import Stopwatch, percentiles
from rapport.devstack.scrape import samples

Op = Callable[[int], Awaitable[object]]


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
                with Stopwatch() as took:
                    async with session.post(url, data=payload, headers=headers) as response:
                        await response.read()
                latencies.append(took.seconds)
                statuses[response.status] = statuses.get(response.status, 0) + 1

        with Stopwatch() as elapsed:
            await asyncio.gather(*(worker() for _ in range(connections)))
    return {"latencies": latencies, "statuses": statuses, "elapsed": elapsed.seconds}


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
        with Stopwatch() as elapsed:
            await asyncio.gather(*(one(origin + i / rate) for i in range(total)))
    return {"latencies": latencies, "statuses": statuses, "elapsed": elapsed.seconds}


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
    """``kind`` "closed" (``level``: connections) or "open" (``level``: requests/s) load of
    ``payload`` POSTed to ``url`` for ``seconds``, from a spawned process: each request's
    latency (s), the count of each status, the seconds it took."""
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
    """A results row from :func:`run_load`'s answer, printed as it is made."""
    ok = raw["statuses"].get(ok_status, 0)
    row = {
        "scenario": name,
        "load": load,
        "events_per_request": events_per_request,
        "requests": len(raw["latencies"]),
        "statuses": {str(k): v for k, v in sorted(raw["statuses"].items())},
        "requests_per_s": round(ok / raw["elapsed"], 1),
        "events_per_s": round(ok * events_per_request / raw["elapsed"], 1),
        **percentiles(raw["latencies"], scale=1000),
    }
    print(
        f"{name:<26} load={load:<22} req/s={row['requests_per_s']:>8}  "
        f"events/s={row['events_per_s']:>9}  p50={row['p50_ms']!s:>7} ms  "
        f"p99={row['p99_ms']!s:>7} ms  "
        f"statuses={row['statuses']}",
        flush=True,
    )
    return row


async def measure_calls(
    name: str, op: Op, calls: int, concurrency: int, *, warm: int = 50
) -> dict[str, Any]:
    """Await ``op(i)`` for i in 0..calls-1 with ``concurrency`` in flight (after ``warm``
    untimed calls, which warm connections and caches; their ``i`` go on from ``calls``):
    calls/s, and the p50, p99 and largest latency in ms."""
    latencies = np.empty(calls, dtype=np.float64)
    counter = iter(range(calls))

    async def worker() -> None:
        for i in counter:
            with Stopwatch() as took:
                await op(i)
            latencies[i] = took.ms

    for i in range(min(warm, calls)):
        await op(calls + i)
    with Stopwatch() as elapsed:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "operation": name,
        "concurrency": concurrency,
        "ops": calls,
        "throughput_per_s": round(calls / elapsed.seconds, 1),
        **percentiles(latencies, digits=3, maximum=True),
    }


# ---- respond with a feature on against off (bench.knowledge, bench.memory) ------------


def respond_metrics(respond_url: str) -> dict[str, float]:
    """Degraded parts, replies shed, and the sum and count of each stage's latency."""
    out = {"shed": 0.0}
    stage = "rapport_respond_stage_duration_seconds_"
    for sample in samples(scrape(respond_url)):
        if sample.name == "rapport_respond_degraded_total":
            out[f"degraded:{sample.labels['part']}"] = sample.value
        elif sample.name in (f"{stage}sum", f"{stage}count"):
            out[f"{sample.name.removeprefix(stage)}:{sample.labels['stage']}"] = sample.value
        elif sample.name == "rapport_respond_shed_total":
            out["shed"] = sample.value
    return out


def stage_means(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean ms per respond stage between two scrapes (``respond_metrics``)."""
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
    return {
        k.removeprefix("sum:"): round(v * 1000 / delta[f"count:{k[4:]}"], 2)
        for k, v in delta.items()
        if k.startswith("sum:") and delta.get(f"count:{k[4:]}", 0) > 0
    }


def on_off_rounds(
    feature: str,
    urls: dict[str, str],
    payload: bytes,
    *,
    recommend: str,
    rate: float,
    seconds: float,
) -> list[dict[str, Any]]:
    """respond with a feature on against off (``urls``: label -> respond), alternating, two
    rounds each at 1 connection (every reply fans out) and an open loop at ``rate``: each
    row with the parts respond degraded, the replies it shed and its stage means."""
    for url in urls.values():
        run_load("closed", f"{url}/v1/respond", payload, 2.0, 1)  # warm-up
    rows = []
    levels = [("closed", 1.0, "closed, 1 conn"), ("open", rate, f"open {rate:g} req/s")]
    for kind, level, load in levels:
        for round_number in (1, 2):
            for label, url in urls.items():
                wait_until_ready(recommend)
                before = respond_metrics(url)
                raw = run_load(kind, f"{url}/v1/respond", payload, seconds, level)
                after = respond_metrics(url)
                row = summarize(
                    f"respond, {feature} {label}", f"{load}, round {round_number}", 1, raw, 200
                )
                row["degraded"] = {
                    k.removeprefix("degraded:"): int(v - before.get(k, 0.0))
                    for k, v in after.items()
                    if k.startswith("degraded:") and v > before.get(k, 0.0)
                }
                row["shed"] = int(after.get("shed", 0) - before.get("shed", 0))
                row["stage_mean_ms"] = stage_means(before, after)
                print(
                    f"{'':<26} degraded: {row['degraded']}  shed: {row['shed']}  "
                    f"stage means (ms): {row['stage_mean_ms']}",
                    flush=True,
                )
                rows.append(row)
    return rows
