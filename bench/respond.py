"""Respond, the whole mesh local: latency and throughput of POST /v1/respond, and the HTTP client.

Starts Tansu, nx-27017, Redis and Triton (serving the exported models), then
real ``rapport-profile``, ``rapport-recommend`` and ``rapport-respond``
processes on loopback. A known user (a few item views, applied by profile) asks
a question; every reply reads the profile, calls recommend (ranking, intent,
sentiment on Triton) and produces a ``chat_message`` event (acks=all).

1. **HTTP client for the respond -> profile/recommend hop**: aiohttp against
   httpx (the ``httpx2`` distribution, the one installed here), both with a
   pooled, reused connection, against the real profile (cached GET) and
   recommend (POST, profile inline) processes; concurrency 1 and 16.
2. **respond**: concurrency 1 (unloaded), saturation (closed loop, 32
   connections), then open loops at 300 req/s and at half the saturation
   throughput of replies that had the fan-out (shed replies are cheap).
   The degraded parts counted by respond during each level are reported too
   (``rapport_respond_degraded_total`` before and after).

The load generator runs in its own process; two cores hold it, the four
processes of the mesh, Triton and the stores. Every latency is printed beside
its load level and written to ``bench/results/respond.json``.

    .venv/bin/python -m bench.respond [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import pyspy
from bench.floor import start_floor
from bench.ingest import run_load, summarize
from bench.mesh import (
    KEY,
    bench_plan,
    cpu_ms_per,
    cpu_snapshot,
    idle_cpu,
    rate_excluding,
    scrape,
    wait_until_ready,
)
from bench.recommend import REPO
from bench.results_file import write_results
from rapport.common.kafka import create_producer
from rapport.common.settings import KafkaSettings
from rapport.devstack import models
from rapport.devstack.scrape import samples
from rapport.devstack.stack import MeshPlan, Stack, start_mesh

USER = "bench-user"
HISTORY = ["50", "172", "181", "174", "210"]
MESSAGE = "my card was declined at the store, what should i do"
TARGETS = {
    "unloaded_p50_ms": 4,
    "p99_ms_at_300_rps": 30,
    "fanned_out_saturation_per_s": 400,
    "saturation_vs_floor": 0.5,
}
ADMITTED = 8  # respond's admission limit never falls below this (min_in_flight)


async def seed_profile(kafka: str) -> None:
    producer = create_producer(KafkaSettings(kafka_bootstrap_servers=kafka))
    await producer.start()
    try:
        for item in HISTORY:
            now = datetime.now(UTC).isoformat()
            event = {
                "event_id": str(uuid.uuid4()),
                "type": "item_view",
                "user_id": USER,
                "tenant": "bench",
                "item_id": item,
                "category": "Sci-Fi",
                "occurred_at": now,
                "received_at": now,
            }
            await producer.send_and_wait(
                "rapport.events.v1",
                key=USER.encode(),
                value=json.dumps(event).encode(),
                headers=[("rapport-schema", b"event.v1")],
            )
    finally:
        await producer.stop()


def post_json(url: str, body: bytes) -> Any:
    request = urllib.request.Request(  # noqa: S310
        url,
        data=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def get_json(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def respond_metrics(respond_url: str) -> dict[str, float]:
    """Degraded parts, and the sum and count of each stage's latency."""
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


# ---- the HTTP client comparison (in the load-generator process) -----------------------


HopJob = tuple[str, str, str, bytes | None, int, int]  # client, method, url, body, n, conc


def _check(status: int) -> None:
    if status != 200:
        raise RuntimeError(f"the hop answered {status}")


async def _timed(call: Callable[[], Awaitable[None]], per_worker: int, conc: int) -> Any:
    """``conc`` workers making ``per_worker`` calls each, after one untimed call (connect)."""
    await call()
    latencies: list[float] = []
    started = time.perf_counter()

    async def worker() -> None:
        for _ in range(per_worker):
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(conc)))
    return {"latencies": latencies, "elapsed": time.perf_counter() - started}


async def _hop(job: HopJob) -> Any:
    client, method, url, body, n, conc = job
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    if client == "aiohttp":
        import aiohttp  # noqa: PLC0415

        connector = aiohttp.TCPConnector(limit=conc)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def call() -> None:
                async with session.request(method, url, data=body, headers=headers) as response:
                    await response.read()
                    _check(response.status)

            return await _timed(call, n // conc, conc)
    import httpx2  # noqa: PLC0415

    limits = httpx2.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx2.AsyncClient(limits=limits) as http:

        async def httpx_call() -> None:
            response = await http.request(method, url, content=body, headers=headers)
            _check(response.status_code)

        return await _timed(httpx_call, n // conc, conc)


def _run_hop(job: HopJob, out: Any) -> None:
    import uvloop  # noqa: PLC0415

    out.put(uvloop.run(_hop(job)))


def run_hop(job: HopJob) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run_hop, args=(job, queue))
    proc.start()
    result: dict[str, Any] = queue.get(timeout=300)
    proc.join(timeout=30)
    return result


def hop_row(client: str, target: str, conc: int, raw: dict[str, Any]) -> dict[str, Any]:
    lat = np.array(raw["latencies"]) * 1000
    row = {
        "scenario": f"hop {target}, {client}",
        "load": f"closed, {conc} conns",
        "requests": len(lat),
        "requests_per_s": round(len(lat) / raw["elapsed"], 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
    }
    print(
        f"{row['scenario']:<34} load={row['load']:<18} req/s={row['requests_per_s']:>8}  "
        f"p50={row['p50_ms']:>7} ms  p99={row['p99_ms']:>7} ms",
        flush=True,
    )
    return row


# ---- main -----------------------------------------------------------------------------


def respond_row(
    row: dict[str, Any],
    before: dict[str, float],
    after: dict[str, float],
    cpu_ms_per_reply: dict[str, float],
) -> dict[str, Any]:
    """A respond level's row with what respond counted meanwhile, and the CPU each process
    spent per reply (where the box's two cores go); printed as well."""
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
    row["degraded"] = {
        k.removeprefix("degraded:"): int(v)
        for k, v in delta.items()
        if k.startswith("degraded:") and v > 0
    }
    row["shed"] = int(delta.get("shed", 0))
    row["fanned_out_per_s"] = rate_excluding(row, row["shed"])
    # Mean time inside respond per stage (ms): where a reply's time goes.
    row["stage_mean_ms"] = stage_means(before, after)
    row["cpu_ms_per_reply"] = cpu_ms_per_reply  # above each process's idle burn
    print(
        f"{'':<26} shed: {row['shed']} (fanned out: {row['fanned_out_per_s']} req/s)  "
        f"degraded: {row['degraded']}  stage means (ms): {row['stage_mean_ms']}\n"
        f"{'':<26} CPU ms per reply: {row['cpu_ms_per_reply']}",
        flush=True,
    )
    return row


def seeded_profile(kafka: str, profile_url: str) -> Any:
    """The bench user's profile, once profile has applied the seeded views."""
    asyncio.run(seed_profile(kafka))
    deadline = time.monotonic() + 30
    while len(get_json(f"{profile_url}/v1/profiles/{USER}")["recent_items"]) < len(HISTORY):
        if time.monotonic() > deadline:
            raise SystemExit("the bench user's views were not applied in 30 s")
        time.sleep(0.1)
    return get_json(f"{profile_url}/v1/profiles/{USER}")


def floor_levels(url: str, payload: bytes, seconds: float) -> list[dict[str, Any]]:
    """The floor mesh unloaded and saturated (nothing in it sheds)."""
    run_load("closed", url, payload, 2.0, 1)  # warm-up
    return [
        summarize("floor mesh", load, 1, run_load("closed", url, payload, seconds, conns), 200)
        for load, conns in (("closed, 1 conn", 1), ("saturation, 32 conns", 32))
    ]


def hop_rows(
    profile_url: str, recommend_url: str, recommend_body: bytes, hops: int
) -> list[dict[str, Any]]:
    """aiohttp against httpx on respond's two hops, same servers, same requests."""
    targets = {
        "profile GET": ("GET", f"{profile_url}/v1/profiles/{USER}", None),
        "recommend POST": ("POST", f"{recommend_url}/v1/recommendations", recommend_body),
    }
    return [
        hop_row(client, target, conc, run_hop((client, method, url, body, hops, conc)))
        for target, (method, url, body) in targets.items()
        for conc in (1, 16)
        for client in ("aiohttp", "httpx")
    ]


def mesh_plan(args: argparse.Namespace, work: Path) -> MeshPlan:
    shedding = (
        {"RAPPORT_RESPOND_MAX_IN_FLIGHT": str(args.max_in_flight)} if args.max_in_flight else {}
    )
    return bench_plan(
        ["profile", "recommend", "respond"],
        model_repository=models.private_copy(work, REPO / models.DEFAULT_REPOSITORY),
        env={"respond": shedding},
        service_env=dict(pair.split("=", 1) for pair in args.service_env),
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per load level (bounded)")
    parser.add_argument("--hops", type=int, default=2000, help="requests per client hop level")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=None,
        help="respond's RAPPORT_RESPOND_MAX_IN_FLIGHT (load shedding); default: the service's",
    )
    parser.add_argument("--skip-hops", action="store_true", help="only the respond levels")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only the unshed levels (1 and 8 connections), no floor: for A/B rounds",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="added to every service's environment (e.g. OTEL_SDK_DISABLED=true); repeatable",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="record every Python server with py-spy during saturation (collapsed stacks in DIR)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    seconds = max(2.0, min(args.seconds, 60.0))
    hops = max(200, min(args.hops, 20_000))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rapport-bench-") as tmp, Stack(Path(tmp)) as stack:
        work = Path(tmp)
        mesh = start_mesh(mesh_plan(args, work), stack, work)
        profile_url, recommend_url = mesh.url("profile"), mesh.url("recommend")
        respond_url = mesh.url("respond")
        profile_doc = seeded_profile(mesh.infra["kafka"], profile_url)

        # 1. the hop: aiohttp against httpx, same servers, same requests.
        recommend_body = json.dumps(
            {"user_id": USER, "k": 3, "profile": profile_doc, "message": MESSAGE}
        ).encode()
        if not args.skip_hops:
            rows.extend(hop_rows(profile_url, recommend_url, recommend_body, hops))

        # 2. respond, the whole mesh behind it.
        url = f"{respond_url}/v1/respond"
        payload = json.dumps(
            {"user_id": USER, "session_id": "bench-session", "message": MESSAGE}
        ).encode()

        def level(
            name: str, load: str, kind: str, value: float, *, profile: bool = False
        ) -> dict[str, Any]:
            wait_until_ready(recommend_url)  # no open breaker left over from the level before
            before, cpu_before = respond_metrics(respond_url), cpu_snapshot(stack)
            recorders = (
                pyspy.record(pyspy.python_servers(stack), seconds, args.py_spy)
                if profile and args.py_spy
                else {}
            )
            started = time.perf_counter()
            raw = run_load(kind, url, payload, seconds, value)
            elapsed = time.perf_counter() - started
            after, cpu_after = respond_metrics(respond_url), cpu_snapshot(stack)
            row = summarize(name, load, 1, raw, ok_status=200)
            cpu = cpu_ms_per(
                cpu_before, cpu_after, int(row["requests"]), idle_per_s=idle, seconds=elapsed
            )
            row = respond_row(row, before, after, cpu)
            if recorders:
                row["py_spy"] = pyspy.collect(recorders, args.py_spy)
                for process, top in row["py_spy"].items():
                    print(f"{'':<26} py-spy {process}: {top}", flush=True)
            return row

        run_load("closed", url, payload, 2.0, 1)  # warm-up: connections, model caches
        idle = idle_cpu(stack)  # what each process burns with no load, taken off per level
        print(f"{'idle CPU s per s':<26} {idle}", flush=True)
        rows.append(level("respond", "closed, 1 conn", "closed", 1))
        if args.quick:
            rows.append(level("respond", f"closed, {ADMITTED} conns", "closed", ADMITTED))
            write_results("respond_quick", rows, idle_cpu_s_per_s=idle, seconds_per_level=seconds)
            return
        rows.append(level("respond", "open 300 req/s", "open", 300.0))
        # No more connections than respond always admits: every reply fans out, so this is
        # where a fanned-out reply's CPU is profiled.
        rows.append(level("respond", f"closed, {ADMITTED} conns", "closed", ADMITTED, profile=True))
        saturated = level("respond", "saturation, 32 conns", "closed", 32)
        rows.append(saturated)
        # Half of what the fan-out sustains: shed replies are cheap and would inflate it.
        half = max(1.0, round(saturated["fanned_out_per_s"] * 0.5))
        rows.append(level("respond", f"open {half:.0f} req/s (50%)", "open", half))

        # 3. the floor: the same hops with nothing in them, on the same box, in the same run.
        recommendations = post_json(f"{recommend_url}/v1/recommendations", recommend_body)
        floor_url = start_floor(stack, work, profile=profile_doc, recommendations=recommendations)
        rows.extend(floor_levels(f"{floor_url}/v1/respond", payload, seconds))
        floor_saturation = float(rows[-1]["requests_per_s"])
        best = max(float(r.get("fanned_out_per_s", 0.0)) for r in rows)
        ratio = round(best / floor_saturation, 3)
        print(
            f"{'fanned-out saturation':<26} {best} req/s against the floor's "
            f"{floor_saturation} req/s: ratio {ratio}",
            flush=True,
        )
    write_results(
        "respond",
        rows,
        idle_cpu_s_per_s=idle,
        seconds_per_level=seconds,
        targets=TARGETS,
        max_in_flight=args.max_in_flight or "service default",
        fanned_out_saturation_per_s=best,
        floor_saturation_per_s=floor_saturation,
        saturation_vs_floor=ratio,
        note="load generator, profile, recommend, respond, Triton, Tansu, nx-27017 and Redis "
        "share 2 cores; httpx is the httpx2 distribution",
    )


if __name__ == "__main__":
    main()
