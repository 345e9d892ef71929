"""Latency of the exported models through a real Triton (gRPC), one message per request.

Starts Triton (devstack) on free loopback ports serving the exported
repository, sends a bounded number of requests at fixed concurrency levels
(Triton forms the dynamic batches), prints the load level beside every
latency, writes ``bench/results/triton_models.json`` and stops Triton.

    .venv/bin/python -m bench.triton_models [--repository models/repository] [--ops 2000]

Without an exported repository it runs ``rapport-models export`` into a temp dir.
The client runs on the same two cores as Triton.
"""

from __future__ import annotations

import asyncio
import csv
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc.aio as grpcclient

from bench.load import Op, measure_calls
from bench.mesh import scratch
from bench.options import parser
from bench.results_file import write_results
from rapport.devstack import models, processes
from rapport.devstack.processes import ProcessHandle
from rapport.devstack.stack import infra_spec

REPO_ROOT = Path(__file__).resolve().parents[1]
VAL_CSV = REPO_ROOT / "data" / "clinc150" / "val.csv"
CONCURRENCY = (1, 4, 8, 32)
# A MovieLens user's 30 most recent items (user 1), as recommend would send them.
HISTORY = ["50", "181", "100", "258", "127", "1", "174", "172", "7", "56"] * 3


async def measure(model: str, op: Op, ops: int, concurrency: int) -> dict[str, Any]:
    """:func:`bench.load.measure_calls`, one message per request, warming the model first."""
    row = await measure_calls(model, op, ops, concurrency, warm=100)
    return {
        "model": row.pop("operation"),
        "concurrency": row.pop("concurrency"),
        "requests": row.pop("ops"),
        "messages_per_request": 1,
        **row,
    }


def text_request(text: str) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=np.object_))
    return [tensor]


def scorer_request(history: list[str]) -> list[grpcclient.InferInput]:
    def strings(name: str, values: list[str]) -> grpcclient.InferInput:
        t = grpcclient.InferInput(name, [len(values)], "BYTES")
        t.set_data_from_numpy(np.array([v.encode() for v in values], dtype=np.object_))
        return t

    def floats(name: str, values: list[float]) -> grpcclient.InferInput:
        t = grpcclient.InferInput(name, [len(values)], "FP32")
        t.set_data_from_numpy(np.array(values, dtype=np.float32))
        return t

    k = grpcclient.InferInput("K", [1], "INT32")
    k.set_data_from_numpy(np.array([10], np.int32))
    return [
        strings("HISTORY_ITEMS", history),
        floats("HISTORY_WEIGHTS", [1.0] * len(history)),
        strings("CATEGORY_NAMES", ["Comedy"]),
        floats("CATEGORY_WEIGHTS", [1.0]),
        strings("EXCLUDE_ITEMS", []),
        strings("CATEGORY_FILTER", []),
        k,
    ]


async def measure_cpu(
    model: str, op: Op, ops: int, concurrency: int, triton: ProcessHandle
) -> dict[str, Any]:
    """:func:`measure`, with the CPU Triton (and its stubs) and this client spent per request."""
    triton_before, client_before = processes.cpu_seconds(triton), time.process_time()
    row = await measure(model, op, ops, concurrency)
    # the warm-up requests are counted too: a few percent more than `ops`
    requests = ops + 100
    row["triton_cpu_ms_per_request"] = round(
        (processes.cpu_seconds(triton) - triton_before) * 1000 / requests, 3
    )
    row["client_cpu_ms_per_request"] = round(
        (time.process_time() - client_before) * 1000 / requests, 3
    )
    return row


def embedding_input(vector: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("EMBEDDING", [1, len(vector)], "FP32")
    tensor.set_data_from_numpy(vector[None, :].astype(np.float32))
    return tensor


async def run(grpc_url: str, ops: int, triton: ProcessHandle) -> list[dict[str, Any]]:
    with VAL_CSV.open(newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    random.Random(3).shuffle(texts)
    client = grpcclient.InferenceServerClient(url=grpc_url)
    rows: list[dict[str, Any]] = []
    try:
        # The intent model reads the encoder's vector: take each text's once, up front.
        vectors = []
        for text in texts[:200]:
            found = await client.infer("encoder", text_request(text), client_timeout=10)
            vectors.append(found.as_numpy("EMBEDDING")[0])

        async def encode(i: int) -> object:
            return await client.infer(
                "encoder", text_request(texts[i % len(texts)]), client_timeout=10
            )

        async def classify(i: int) -> object:
            n = i % len(vectors)
            request = [*text_request(texts[n]), embedding_input(vectors[n])]
            return await client.infer("intent_classifier", request, client_timeout=10)

        async def sentiment(i: int) -> object:
            return await client.infer(
                "sentiment", text_request(texts[i % len(texts)]), client_timeout=10
            )

        for name, op in (("encoder", encode), ("intent_classifier", classify)):
            for concurrency in CONCURRENCY:
                rows.append(await measure_cpu(name, op, ops, concurrency, triton))
                print_row(rows[-1])
        for concurrency in CONCURRENCY:
            rows.append(await measure("sentiment", sentiment, ops, concurrency))
            print_row(rows[-1])

        request = scorer_request(HISTORY)

        async def score(_: int) -> object:
            return await client.infer("item_scorer", request, client_timeout=10)

        for concurrency in CONCURRENCY[:3]:
            rows.append(await measure("item_scorer", score, ops // 2, concurrency))
            print_row(rows[-1])

        # A reply's models as recommend calls them: the `reply` model, one call and one
        # Python-backend step that ranks and reads the message (all four models).
        ranked = scorer_request(HISTORY[:20])

        async def reply(i: int) -> object:
            text = text_request(texts[i % len(texts)])
            return await client.infer("reply", [*ranked, *text], client_timeout=10)

        for concurrency in CONCURRENCY:
            rows.append(await measure_cpu("reply", reply, ops // 2, concurrency, triton))
            print_row(rows[-1])
    finally:
        await client.close()
    return rows


def print_row(row: dict[str, Any]) -> None:
    cpu = (
        f"  CPU ms/request: Triton {row['triton_cpu_ms_per_request']}, "
        f"client {row['client_cpu_ms_per_request']}"
        if "triton_cpu_ms_per_request" in row
        else ""
    )
    print(
        f"{row['model']:<18} concurrency {row['concurrency']:>3}  "
        f"{row['throughput_per_s']:>8.1f} req/s  p50 {row['p50_ms']:>7.3f} ms  "
        f"p99 {row['p99_ms']:>7.3f} ms  max {row['max_ms']:>7.3f} ms{cpu}",
        flush=True,
    )


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--repository", type=Path, default=REPO_ROOT / "models" / "repository")
    options.add_argument("--ops", type=int, default=2000)
    args = options.parse_args()
    repository = models.ensure_repository(args.repository)
    with scratch() as (work, stack):
        server = stack.start(infra_spec("triton", work, model_repository=repository.resolve()))
        rows = asyncio.run(run(server.url("triton_grpc"), args.ops, server.handle))
    write_results(
        "triton_models",
        rows,
        notes="one message per gRPC request; the client shares the 2 cores with Triton",
    )


if __name__ == "__main__":
    main()
