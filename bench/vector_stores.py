"""The two local vector stores that install from PyPI, measured side by side in one run.

- **Milvus Lite** as the devstack runs it: ``milvus-lite server`` in its own process
  (with the devstack's memtable limit), spoken to with ``pymilvus``, the client the
  knowledge service uses against a Milvus cluster too. Indexes: FLAT (the knowledge
  service's) and HNSW.
- **Qdrant's local mode**: ``QdrantClient(path=...)``, in-process (the Qdrant server
  itself is a Rust binary, not on PyPI), with a Qdrant cluster as its production peer.

For each store and size: upsert throughput (batches of 256 rows: a unit vector of 384
dimensions, a tenant and a document id), then the latency of a top-5 search with a
tenant filter (half the rows match), one query at a time, after the last upsert. The
queries are near-duplicates of stored vectors. Writes
``bench/results/vector_stores.json``.

    .venv/bin/python -m bench.vector_stores [--sizes 10000 100000] [--queries 200]
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.options import parser
from bench.results_file import write_results
from bench.stats import Stopwatch, percentiles
from rapport.devstack import processes, servers
from rapport.devstack.stack import Stack

DIMENSION = 384
BATCH = 256
TOP_K = 5
Vectors = NDArray[np.float32]


def unit_vectors(rng: np.random.Generator, count: int) -> Vectors:
    vectors = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    normalised: Vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


def measure(
    upsert: Callable[[int, int], None],
    search: Callable[[Vectors], None],
    size: int,
    queries: Vectors,
) -> dict[str, Any]:
    with Stopwatch() as upserts:
        for start in range(0, size, BATCH):
            upsert(start, min(size, start + BATCH))
    for query in queries[:10]:  # warm-up
        search(query)
    took = []
    for query in queries:
        with Stopwatch() as one:
            search(query)
        took.append(one.seconds)
    return {"upserts_per_s": round(size / upserts.seconds), **percentiles(took, scale=1000)}


def milvus_lite(size: int, vectors: Vectors, queries: Vectors, index: str, work: Path) -> Any:
    from pymilvus import DataType, MilvusClient  # noqa: PLC0415

    with Stack(work / "logs") as stack:
        server = stack.start(servers.milvus_spec(processes.free_port(), work))
        client = MilvusClient(uri=server.url())
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("tenant", DataType.VARCHAR, max_length=64)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIMENSION)
        params = MilvusClient.prepare_index_params()
        options = {"M": 16, "efConstruction": 200} if index == "HNSW" else {}
        params.add_index("vector", index_type=index, metric_type="IP", params=options)
        client.create_collection("bench", schema=schema)
        with contextlib.suppress(Exception):  # Milvus Lite builds it, cannot report progress
            client.create_index("bench", params)
        client.load_collection("bench")

        def upsert(start: int, end: int) -> None:
            client.upsert(
                "bench",
                [
                    {
                        "id": i,
                        "tenant": "a" if i % 2 == 0 else "b",
                        "doc_id": f"d{i // 4}",
                        "vector": vectors[i].tolist(),
                    }
                    for i in range(start, end)
                ],
            )

        def search(query: Vectors) -> None:
            search_params = {"params": {"ef": 64}} if index == "HNSW" else {}
            client.search(
                "bench",
                [query.tolist()],
                limit=TOP_K,
                filter='tenant == "a"',
                output_fields=["doc_id"],
                search_params=search_params,
            )

        row = measure(upsert, search, size, queries)
        client.close()
    return row


def qdrant_local(size: int, vectors: Vectors, queries: Vectors, work: Path) -> Any:
    from qdrant_client import QdrantClient, models  # noqa: PLC0415

    client = QdrantClient(path=str(work / "qdrant"))
    client.create_collection(
        "bench", vectors_config=models.VectorParams(size=DIMENSION, distance=models.Distance.DOT)
    )
    only_a = models.Filter(
        must=[models.FieldCondition(key="tenant", match=models.MatchValue(value="a"))]
    )

    def upsert(start: int, end: int) -> None:
        client.upsert(
            "bench",
            points=[
                models.PointStruct(
                    id=i,
                    vector=vectors[i].tolist(),
                    payload={"tenant": "a" if i % 2 == 0 else "b", "doc_id": f"d{i // 4}"},
                )
                for i in range(start, end)
            ],
        )

    def search(query: Vectors) -> None:
        client.query_points("bench", query=query.tolist(), limit=TOP_K, query_filter=only_a)

    row = measure(upsert, search, size, queries)
    client.close()
    return row


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    options.add_argument("--queries", type=int, default=200)
    args = options.parse_args()
    rng = np.random.default_rng(7)
    rows = []
    for size in args.sizes:
        vectors = unit_vectors(rng, size)
        near = vectors[rng.integers(0, size, args.queries)] * 0.95 + 0.05 * unit_vectors(
            rng, args.queries
        )
        queries = near / np.linalg.norm(near, axis=1, keepdims=True)
        runs: list[tuple[str, Callable[[Path], Any]]] = [
            ("Milvus Lite, FLAT", partial(milvus_lite, size, vectors, queries, "FLAT")),
            ("Milvus Lite, HNSW", partial(milvus_lite, size, vectors, queries, "HNSW")),
            ("Qdrant local mode", partial(qdrant_local, size, vectors, queries)),
        ]
        for name, run in runs:
            with tempfile.TemporaryDirectory() as tmp:
                row = {"store": name, "rows": size, "queries": args.queries, **run(Path(tmp))}
            rows.append(row)
            print(
                f"{name:20s} {size:>7} rows: {row['upserts_per_s']:>6} upserts/s; "
                f"search p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms "
                f"({args.queries} queries, one at a time)",
                flush=True,
            )
    write_results(
        "vector_stores",
        rows,
        setup={
            "dimension": DIMENSION,
            "batch": BATCH,
            "top_k": TOP_K,
            "filter": "tenant == a (half the rows)",
            "milvus_lite_memtable_bytes": servers.MILVUS_LITE_MEMTABLE_BYTES,
        },
    )


if __name__ == "__main__":
    main()
