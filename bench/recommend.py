"""Recommend latency and throughput, with real Triton models behind it.

Starts Tansu, nx-27017, Redis, Milvus Lite and Triton (serving the exported model
repository; built with ``rapport-models export`` when missing), then real
``rapport-profile`` and ``rapport-recommend`` processes on loopback, and drives
``POST /v1/recommendations`` from a separate load-generator process:

- ``rank``: the profile inline, ranking only (one Triton call);
- ``rank+message``: the profile inline and a chat message (ranking, intent and
  sentiment: one call to Triton's ``reply`` model);
- ``fetch+rank+message``: the profile read from the profile service first.

For each: concurrency 1 (unloaded latency), saturation (closed loop, 32
connections), then an open loop at half the rate the models sustained at
saturation (answers served by the fallback do not count). Two cores hold
the load generator, both services, Triton and the stores: the figures are for
that whole box, printed beside their load levels, and written to
``bench/results/recommend.json``.

    .venv/bin/python -m bench.recommend [--seconds 8]
"""

from __future__ import annotations

import json
from typing import Any

from bench.load import run_load, summarize
from bench.mesh import bench_mesh, metric_total, rate_excluding, wait_until_ready
from bench.options import bounded, parser
from bench.results_file import write_results

HISTORY = ["50", "172", "181", "174", "210"]


def bodies() -> dict[str, bytes]:
    profile = {
        "user_id": "bench-user",
        "recent_items": HISTORY,
        "affinities": {"Sci-Fi": 1.0, "Action": 0.6},
    }
    message = "my card was declined at the store, what should i do"
    return {
        "rank": json.dumps({"user_id": "bench-user", "k": 10, "profile": profile}).encode(),
        "rank+message": json.dumps(
            {"user_id": "bench-user", "k": 10, "profile": profile, "message": message}
        ).encode(),
        "fetch+rank+message": json.dumps(
            {"user_id": "bench-user", "k": 10, "message": message}
        ).encode(),
    }


def main() -> None:
    options = parser(__doc__, seconds=8.0)
    options.add_argument(
        "--max-model-in-flight",
        type=int,
        default=None,
        help="recommend's RAPPORT_RECOMMEND_MAX_MODEL_IN_FLIGHT; default: the service's",
    )
    args = options.parse_args()
    admission = (
        {"RAPPORT_RECOMMEND_MAX_MODEL_IN_FLIGHT": str(args.max_model_in_flight)}
        if args.max_model_in_flight
        else {}
    )
    seconds = bounded(args.seconds, 2.0, 60.0)
    rows: list[dict[str, Any]] = []
    services = ["profile", "recommend"]
    with bench_mesh(services, with_models=True, env={"recommend": admission}) as started:
        base = started.url("recommend")
        url = f"{base}/v1/recommendations"

        def level(
            scenario: str, load: str, kind: str, value: float, payload: bytes
        ) -> dict[str, Any]:
            wait_until_ready(base)  # no open breaker left over from the level before
            before = metric_total(base, "rapport_recommend_fallbacks_total")
            row = summarize(scenario, load, 1, run_load(kind, url, payload, seconds, value), 200)
            row["fallbacks"] = int(metric_total(base, "rapport_recommend_fallbacks_total") - before)
            row["model_served_per_s"] = rate_excluding(row, row["fallbacks"])
            print(
                f"{'':<26} served by the fallback: {row['fallbacks']} "
                f"(by the models: {row['model_served_per_s']} req/s)",
                flush=True,
            )
            return row

        for scenario, payload in bodies().items():
            run_load("closed", url, payload, 2.0, 1)  # warm-up: connections, model caches
            rows.append(level(scenario, "concurrency 1", "closed", 1, payload))
            saturated = level(scenario, "saturation, 32 conns", "closed", 32, payload)
            rows.append(saturated)
            rate = max(1.0, round(saturated["model_served_per_s"] * 0.5))
            rows.append(level(scenario, f"open {rate:.0f} req/s (50%)", "open", rate, payload))
    write_results(
        "recommend",
        rows,
        seconds_per_level=seconds,
        max_model_in_flight=args.max_model_in_flight or "service default",
    )


if __name__ == "__main__":
    main()
