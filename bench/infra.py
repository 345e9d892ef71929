"""Latency floors of the real local infrastructure, measured through our own client factories.

Starts its own servers (devstack) on free loopback ports, runs a bounded
number of operations against each at fixed concurrency levels, prints a table
with the load level beside every latency, writes ``bench/results/infra.json``
and stops everything it started.

    .venv/bin/python -m bench.infra [--ops 2000]
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import numpy as np
import tritonclient.grpc.aio as grpcclient

from bench.load import Op, measure_calls
from bench.mesh import scratch
from bench.options import bounded, parser
from bench.results_file import write_results
from rapport.common.cache import create_redis
from rapport.common.kafka import PRODUCER_DEFAULTS, TopicSpec, create_producer, ensure_topics
from rapport.common.mongo import create_mongo_client
from rapport.common.settings import KafkaSettings, MongoSettings, RedisSettings
from rapport.devstack.servers import RunningServer
from rapport.devstack.stack import INFRA, infra_spec

CONCURRENCY = (1, 16, 64)


async def run(infra: dict[str, RunningServer], ops: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    kafka = KafkaSettings(kafka_bootstrap_servers=infra["kafka"].url())
    topic = f"bench.{uuid.uuid4().hex[:6]}"
    await ensure_topics(kafka, [TopicSpec(topic, partitions=6)])
    # The default linger_ms against a batching-minded alternative, so the choice stays checked.
    lingers = sorted({PRODUCER_DEFAULTS["linger_ms"], 5})
    producers = {linger: create_producer(kafka, linger_ms=linger) for linger in lingers}
    for producer in producers.values():
        await producer.start()
    mongo = create_mongo_client(
        MongoSettings(mongo_url=infra["mongo"].url()), app_name="rapport-bench"
    )
    coll = mongo["bench"]["profiles"]
    redis = create_redis(RedisSettings(redis_url=infra["redis"].url()), client_name="bench")
    await redis.set("bench:key", b"x" * 512)
    triton_client = grpcclient.InferenceServerClient(url=infra["triton"].url("triton_grpc"))
    vector = np.ones((1, 16), dtype=np.float32)

    def kafka_send(linger: int) -> Op:
        async def send(i: int) -> None:
            await producers[linger].send_and_wait(
                topic, key=f"user-{i % 100}".encode(), value=b"{}" * 100
            )

        return send

    async def mongo_upsert(i: int) -> None:
        await coll.update_one(
            {"_id": f"user-{i % 100}"}, {"$inc": {"n": 1}, "$set": {"last": i}}, upsert=True
        )

    async def mongo_find(i: int) -> None:
        await coll.find_one({"_id": f"user-{i % 100}"})

    async def redis_get(_: int) -> None:
        await redis.get("bench:key")

    async def triton_infer(_: int) -> None:
        request = grpcclient.InferInput("USER_VECTOR", [1, 16], "FP32")
        request.set_data_from_numpy(vector)
        await triton_client.infer("smoke_scorer", [request], client_timeout=5)

    operations: list[tuple[str, Op, int]] = [
        *((f"kafka produce linger={ms}ms", kafka_send(ms), ops) for ms in lingers),
        ("mongo upsert ($inc,$set)", mongo_upsert, ops),
        ("mongo find_one by _id", mongo_find, ops),
        ("redis GET 512 B", redis_get, ops * 2),
        ("triton gRPC infer (smoke)", triton_infer, ops),
    ]
    try:
        for name, op, count in operations:
            for concurrency in CONCURRENCY:
                row = await measure_calls(name, op, count, concurrency)
                rows.append(row)
                print(
                    f"{name:<28} concurrency={concurrency:<3} ops={count:<6} "
                    f"p50={row['p50_ms']:>7.3f} ms  p99={row['p99_ms']:>7.3f} ms  "
                    f"{row['throughput_per_s']:>9.1f}/s",
                    flush=True,
                )
    finally:
        for producer in producers.values():
            await producer.stop()
        await mongo.close()
        await redis.aclose()
        await triton_client.close()
    return rows


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--ops", type=int, default=2000, help="operations per level (bounded)")
    args = options.parse_args()
    ops = bounded(args.ops, 100, 20_000)
    with scratch() as (work, stack):
        # Triton serves the smoke models: the floor of one gRPC round trip.
        infra: dict[str, RunningServer] = {n: stack.start(infra_spec(n, work)) for n in INFRA}
        rows = asyncio.run(run(infra, ops))
    write_results("infra", rows)


if __name__ == "__main__":
    main()
