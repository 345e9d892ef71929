"""The encoder's latency options, measured side by side in one run (no Triton).

Builds the encoder twice (float32 and int8), then times each graph offline with
onnxruntime: one text per run against padded batches of 4 and 8, on 1 and 2
intra-op threads, over CLINC150 val messages. Also gives each option's cosine to
the float32 vectors. Writes ``bench/results/encoder_options.json``.

    .venv/bin/python -m bench.encoder_options [--runs 300]
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.options import parser
from bench.results_file import write_results
from bench.stats import Stopwatch, percentile
from rapport.models import encoder
from rapport.models.runtime.encoder_runtime import GRAPH, GRAPH_FP32

REPO_ROOT = Path(__file__).resolve().parents[1]
VAL_CSV = REPO_ROOT / "data" / "clinc150" / "val.csv"


def timed(model: Any, texts: list[str], batch: int, runs: int) -> tuple[float, float]:
    """p50 and p99 ms of ``runs`` calls on ``batch`` texts, after 20 that warm the session."""
    took = []
    for i in range(runs + 20):
        chunk = [texts[(i * batch + j) % len(texts)] for j in range(batch)]
        with Stopwatch() as call:
            model.encode(chunk)
        took.append(call.ms)
    kept = took[20:]  # the first runs warm the session up
    return percentile(kept, 50), percentile(kept, 99)


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--runs", type=int, default=300)
    args = options.parse_args()
    with VAL_CSV.open(newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][::7]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = encoder.build(Path(tmp), keep_fp32=True)
        reference = encoder.load(folder, graph=GRAPH_FP32)
        reference.one_at_a_time = True
        truth = reference.encode(texts)
        for graph, label in ((GRAPH_FP32, "float32"), (GRAPH, "int8")):
            for threads in (1, 2):
                model = encoder.load(folder, graph=graph, threads=threads)
                for batch, alone in ((1, True), (4, True), (4, False), (8, False)):
                    model.one_at_a_time = alone
                    p50, p99 = timed(model, texts, batch, args.runs)
                    vectors = np.concatenate(
                        [model.encode(texts[i : i + batch]) for i in range(0, len(texts), batch)]
                    )
                    cosine = np.einsum("ij,ij->i", vectors, truth)
                    rows.append(
                        {
                            "scenario": f"encoder {label}, {threads} thread(s)",
                            "load": f"{batch} texts, {'one per run' if alone else 'padded'}",
                            "graph": label,
                            "threads": threads,
                            "texts_per_call": batch,
                            "mode": "one text per run" if alone else "one padded batch",
                            "p50_ms": round(p50, 3),
                            "p99_ms": round(p99, 3),
                            "ms_per_text_p50": round(p50 / batch, 3),
                            "cosine_to_float32_min": round(float(cosine.min()), 5),
                            "cosine_to_float32_mean": round(float(cosine.mean()), 5),
                        }
                    )
                    r = rows[-1]
                    print(
                        f"{label:<8} threads {threads}  {batch} texts, {r['mode']:<17} "
                        f"p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  "
                        f"per text {r['ms_per_text_p50']:.3f} ms  "
                        f"cosine to float32 min {r['cosine_to_float32_min']:.4f} "
                        f"mean {r['cosine_to_float32_mean']:.4f}",
                        flush=True,
                    )
    write_results(
        "encoder_options",
        rows,
        notes=f"{len(texts)} CLINC150 val messages; single process, no Triton; 2 shared cores",
    )


if __name__ == "__main__":
    main()
