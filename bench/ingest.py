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

import json
from datetime import UTC, datetime
from typing import Any

from bench.load import run_load, summarize
from bench.mesh import bench_mesh
from bench.options import bounded, parser
from bench.results_file import write_results
from rapport.common.kafka import EVENTS_TOPIC, TopicSpec

CONNECTIONS = 64


def body(events: int) -> bytes:
    now = datetime.now(UTC).isoformat()
    item = {"type": "item_view", "user_id": "u-1", "item_id": "m-1", "occurred_at": now}
    if events == 1:
        return json.dumps(item).encode()
    items = [{**item, "user_id": f"u-{i % 50}"} for i in range(events)]
    return json.dumps({"events": items}).encode()


def main() -> None:
    args = parser(__doc__, seconds=8.0).parse_args()
    seconds = bounded(args.seconds, 2.0, 60.0)
    rows: list[dict[str, Any]] = []
    topics = [TopicSpec(EVENTS_TOPIC, 6)]
    with bench_mesh(["ingest"], infra=["kafka", "redis"], topics=topics) as started:
        url = f"{started.url('ingest')}/v1/events"

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
