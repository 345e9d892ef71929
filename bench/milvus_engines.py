"""The two Milvus engines from PyPI, side by side in one run: Milvus Lite (what the local
stack runs) and the standalone Milvus server of the ``milvus`` package (2.3.5).

For each engine, one collection shaped like knowledge's chunks (384-d, FLAT, inner
product, a tenant and an encoder field), ``--rows`` rows over ten tenants, flushed;
then, one search at a time with the tenant filter the product uses: p50/p99 latency,
the client's CPU per search (this process) and the server's (its process tree, its idle
burn subtracted); then 200 single-row upserts into another collection (as profile
writes remembered messages) and the searches again. Strong and Bounded consistency.

The standalone engine runs in its own interpreter (``--standalone-python``), one with
``pip install milvus==2.3.5``: the project's environment does not carry its 58 MB
wheel. Without it only Milvus Lite is measured.

    .venv/bin/python -m bench.milvus_engines --standalone-python /tmp/mvenv/bin/python
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from pymilvus import AsyncMilvusClient, DataType

from bench.options import parser
from bench.results_file import write_results
from bench.stats import Stopwatch, percentiles
from rapport.common.milvus import create_flat_collection
from rapport.devstack import processes, servers
from rapport.devstack.stack import Stack

DIMENSION = 384
SEARCHES = 300
UPSERTS = 200
STANDALONE = """
import sys, time
from milvus import default_server
default_server.set_base_dir(sys.argv[1])
default_server.listen_port = int(sys.argv[2])
default_server.start()
while True:
    time.sleep(60)
"""


def cpu_of(pid: int) -> Callable[[], float]:
    root = psutil.Process(pid)

    def seconds() -> float:
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    return seconds


async def collection(client: AsyncMilvusClient, name: str) -> None:
    if name in await client.list_collections():
        await client.drop_collection(name)
    schema = AsyncMilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("tenant", DataType.VARCHAR, max_length=256)
    schema.add_field("encoder", DataType.VARCHAR, max_length=256)
    schema.add_field("text", DataType.VARCHAR, max_length=4096)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIMENSION)
    await create_flat_collection(client, name, schema)  # as knowledge and profile do
    await client.load_collection(name)


def unit_rows(count: int, seed: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    vectors = np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)
    unit: np.ndarray[Any, np.dtype[np.float32]] = vectors / np.linalg.norm(
        vectors, axis=1, keepdims=True
    )
    return unit


async def measure(
    uri: str, server_cpu: Callable[[], float], engine: str, rows: int
) -> list[dict[str, Any]]:
    client = AsyncMilvusClient(uri=uri)
    me = psutil.Process()
    try:
        await collection(client, "bench_chunks")
        vectors = unit_rows(rows, 0)
        for start in range(0, rows, 1000):
            await client.insert(
                "bench_chunks",
                [
                    {
                        "id": f"c{i}",
                        "tenant": f"t{i % 10}",
                        "encoder": "encoder:1",
                        "text": "x" * 300,
                        "vector": vectors[i].tolist(),
                    }
                    for i in range(start, min(rows, start + 1000))
                ],
            )
        with contextlib.suppress(Exception):  # an engine without flush flushes itself
            await client.flush("bench_chunks")
        await collection(client, "bench_memory")
        queries = unit_rows(SEARCHES + 50, 1)
        before = server_cpu()
        await asyncio.sleep(3)
        idle = (server_cpu() - before) / 3
        results = []
        for phase in ("flushed", "after upserts elsewhere"):
            if phase == "after upserts elsewhere":
                for i in range(UPSERTS):
                    await client.upsert(
                        "bench_memory",
                        [
                            {
                                "id": f"m{i}",
                                "tenant": "t3",
                                "encoder": "encoder:1",
                                "text": "y" * 100,
                                "vector": queries[i].tolist(),
                            }
                        ],
                    )
            for consistency in ("Strong", "Bounded"):
                for vector in queries[:20]:  # warm-up
                    await search(client, vector, consistency)
                latencies = []
                mine, theirs = me.cpu_times(), server_cpu()
                with Stopwatch() as searches:
                    for vector in queries[50 : 50 + SEARCHES]:
                        with Stopwatch() as took:
                            await search(client, vector, consistency)
                        latencies.append(took.ms)
                after = me.cpu_times()
                client_cpu = (after.user + after.system) - (mine.user + mine.system)
                server = server_cpu() - theirs - idle * searches.seconds
                results.append(
                    {
                        "engine": engine,
                        "rows": rows,
                        "phase": phase,
                        "consistency": consistency,
                        "searches": SEARCHES,
                        **percentiles(latencies),
                        "client_cpu_ms": round(client_cpu * 1000 / SEARCHES, 3),
                        "server_cpu_ms": round(server * 1000 / SEARCHES, 3),
                        "server_idle_cores": round(idle, 3),
                    }
                )
        return results
    finally:
        await client.close()


async def search(client: AsyncMilvusClient, vector: np.ndarray[Any, Any], level: str) -> None:
    await client.search(
        "bench_chunks",
        data=[vector.tolist()],
        limit=3,
        filter='tenant == "t3" and encoder == "encoder:1"',
        output_fields=["text"],
        consistency_level=level,
    )


def lite(work: Path, rows: int) -> list[dict[str, Any]]:
    with Stack(work / "logs") as stack:
        server = stack.start(servers.milvus_spec(processes.free_port(), work))
        return asyncio.run(
            measure(server.url("milvus"), cpu_of(server.handle.pid), "milvus-lite", rows)
        )


def standalone(python: str, work: Path, rows: int) -> list[dict[str, Any]]:
    port = processes.free_port()
    proc = subprocess.Popen(  # noqa: S603 - the interpreter the caller named
        [python, "-c", STANDALONE, str(work / "standalone"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                asyncio.run(servers.probe_tcp("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the standalone Milvus did not start") from None
                time.sleep(0.5)
        time.sleep(3)  # its components register after the port opens
        return asyncio.run(
            measure(f"http://127.0.0.1:{port}", cpu_of(proc.pid), "milvus-standalone", rows)
        )
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()  # its etcd and server outlive a plain SIGTERM for seconds
        proc.kill()
        proc.wait(30)


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--rows", type=int, default=2000)
    options.add_argument("--standalone-python", help="an interpreter with `milvus` installed")
    args = options.parse_args()
    with tempfile.TemporaryDirectory(prefix="rapport-milvus-") as tmp:
        work = Path(tmp)
        rows = lite(work, args.rows)
        if args.standalone_python:
            rows += standalone(args.standalone_python, work, args.rows)
    print(
        f"{'engine':<18} {'phase':<24} {'consistency':<11} {'p50':>7} {'p99':>7} "
        f"{'client ms':>9} {'server ms':>9} {'idle cores':>10}"
    )
    for row in rows:
        print(
            f"{row['engine']:<18} {row['phase']:<24} {row['consistency']:<11} "
            f"{row['p50_ms']:>7} {row['p99_ms']:>7} {row['client_cpu_ms']:>9} "
            f"{row['server_cpu_ms']:>9} {row['server_idle_cores']:>10}"
        )
    write_results("milvus_engines", rows, searches=SEARCHES, upserts=UPSERTS)


if __name__ == "__main__":
    main()
