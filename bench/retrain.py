"""Retraining from Rapport's own events on the mesh ``make up`` runs: a MovieLens-100K
replay with its real timestamps, one run whose candidate wins and is served without a
restart, one whose candidate loses and is not exported.

The leakage trap: the default served model was trained on all of MovieLens-100K, so a
MovieLens holdout is in its training data and no candidate could honestly beat it. So:

1. **T0** is a quantile of the ratings' times (``--t0-quantile``, default the median). A
   served model is trained on the public ratings made before T0 only
   (``rapport-models train items --before T0``) and exported into the repository Triton
   serves (``export --only-items``: a new item_scorer and reply, the other models as
   served). The bench waits until recommend answers with its version.
2. The ratings made from T0 on are replayed through ingest's ``POST /v1/events`` as
   ``item_view`` events of users ``ml-<id>``, with their real times as ``occurred_at``
   (event ids derived from the rating, so a rerun is deduplicated by ingest).
3. **Run 1**: ``rapport-models retrain --with-public --public-before T0``: the candidate
   learns from the public ratings before T0 and the events before the holdout cutoff
   (the newest 20% of the events). It should win; when the gate exports it, the bench
   polls ``POST /v1/recommendations`` until the reply names the new item_scorer version:
   Triton (poll mode) loaded it with no restart.
4. **Run 2**: ``rapport-models retrain --events-only --since <cutoff - 3 days>``: a
   candidate that learns from a three-day slice of the events alone. It should lose to
   the model now served (run 1's) and not be exported: the repository is unchanged.
5. The model served before the bench is exported again as a new version (``--no-restore``
   leaves run 1's model served).

Run it on a fresh ``make up``: the tenant's other events (the demo's, dated now) would be
the newest interactions, so they would fill the holdout (they are not evaluated: those
users have no history before the cutoff, but the holdout's share shrinks).

    .venv/bin/python -m bench.retrain [--t0-quantile 0.5] [--no-restore]

Results: ``bench/results/retrain.json``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.options import bounded, parser
from bench.results_file import write_results
from rapport.devstack.servers import console_script
from rapport.models import export, movielens, pipeline

ROOT = Path(__file__).resolve().parent.parent
STACK_FILE = ROOT / ".rapport" / "stack.json"
TENANT = "dev"  # the dev key's tenant (rapport.devstack.stack.DEV_TENANT)
BATCH = 500  # ingest's max_events
SERVED_WITHIN_S = 90.0  # Triton polls every 5 s; loading a version takes a few more
SLICE_DAYS = 3
EVENT_NAMESPACE = uuid.UUID("6f1d3c52-2b7e-4f0e-9a59-2f1f5c0b7d31")


def read_stack(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SystemExit(f"no {path}: run `make up` first")
    stack: dict[str, Any] = json.loads(path.read_text())
    for name in ("ingest", "recommend"):
        if name not in stack.get("services", {}):
            raise SystemExit(f"{path} names no {name}: run `make up` with the services")
    return stack


def served_repository(stack: dict[str, Any]) -> Path:
    """The repository the mesh's Triton polls (its --model-repository)."""
    argv = stack.get("processes", {}).get("triton", {}).get("argv", [])
    for arg in argv:
        if arg.startswith("--model-repository="):
            return Path(arg.split("=", 1)[1])
    raise SystemExit("the mesh runs no Triton (stack.json has no --model-repository)")


def models_cli(*args: str) -> None:
    subprocess.run([console_script("rapport-models"), "--quiet", *args], check=True)  # noqa: S603


def retrain(stack: dict[str, Any], repository: Path, report: Path, *args: str) -> dict[str, Any]:
    started = time.perf_counter()
    models_cli(
        "retrain",
        "--tenant",
        TENANT,
        "--repository",
        str(repository),
        "--bootstrap",
        stack["infra"]["kafka"],
        "--mongo",
        stack["infra"]["mongo"],
        "--report",
        str(report),
        *args,
    )
    found: dict[str, Any] = json.loads(report.read_text())
    found["seconds"] = round(time.perf_counter() - started, 1)
    return found


def event_body(user: str, item: str, at: float) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid5(EVENT_NAMESPACE, f"{user}/{item}/{at}")),
        "type": "item_view",
        "user_id": user,
        "item_id": item,
        "occurred_at": datetime.fromtimestamp(at, UTC).isoformat(),
    }


async def replay(ingest: str, headers: dict[str, str], events: list[dict[str, Any]]) -> int:
    """POST the events in batches (waiting out a 429 or 503); returns the accepted count."""
    accepted = 0
    async with aiohttp.ClientSession(headers=headers) as http:
        for start in range(0, len(events), BATCH):
            body = {"events": events[start : start + BATCH]}
            while True:
                async with http.post(f"{ingest}/v1/events", json=body) as response:
                    if response.status in (429, 503):
                        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                        continue
                    if response.status != 202:
                        raise SystemExit(
                            f"ingest answered {response.status}: {await response.text()}"
                        )
                    accepted += len(body["events"])
                    break
    return accepted


async def served_version(
    recommend: str, headers: dict[str, str], user: str, wanted: int
) -> float | None:
    """Seconds until a recommendation names item_scorer ``wanted`` (None: not in time)."""
    started = time.perf_counter()
    async with aiohttp.ClientSession(headers=headers) as http:
        while time.perf_counter() - started < SERVED_WITHIN_S:
            async with http.post(
                f"{recommend}/v1/recommendations", json={"user_id": user, "k": 10}
            ) as response:
                if response.status == 200:
                    found = await response.json()
                    if found["models"].get("item_scorer") == str(wanted) and not found["fallback"]:
                        return round(time.perf_counter() - started, 1)
            await asyncio.sleep(0.5)
    return None


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """One run's figures: both models side by side, the decision and its deltas."""

    def side(name: str) -> dict[str, Any] | None:
        found = report.get(name)
        if not found:
            return None
        audit = found["audit"]
        return {
            "version": found["version"],
            "items": found["items"],
            "ndcg@10": round(found["metrics"]["ndcg@10"], 4),
            "recall@10": round(found["metrics"]["recall@10"], 4),
            "coverage": round(audit["coverage"], 4),
            "gini": round(audit["gini"], 4),
            "long_tail_share": round(audit["long_tail_share"], 4),
            "largest_gap": round(audit["largest_gap"], 4),
            "by_activity_ndcg": {g: round(v["ndcg"], 4) for g, v in audit["by_activity"].items()},
        }

    protocol = report["protocol"]
    return {
        "outcome": report["outcome"],
        "reason": report["reason"],
        "cutoff": protocol.get("cutoff"),
        "evaluated_users": protocol.get("evaluated_users"),
        "learned_from_events": protocol.get("learned_from"),
        "public_ratings": protocol.get("public_ratings"),
        "ndcg_delta_ci95": protocol.get("ndcg_delta_ci95"),
        "served": side("served"),
        "candidate": side("candidate"),
        "deltas": (report.get("decision") or {}).get("deltas"),
        "exported": report["exported"],
        "seconds": report["seconds"],
    }


def two_runs(
    stack: dict[str, Any],
    repository: Path,
    work: Path,
    *,
    headers: dict[str, str],
    probe_user: str,
    t0_date: datetime,
) -> list[dict[str, Any]]:
    """Run 1 (public before T0 + events: should win) and run 2 (a slice of events alone:
    should lose), each with its figures."""
    rows: list[dict[str, Any]] = []
    services = stack["services"]
    print("3. retrain with the public data before T0: the candidate should win", flush=True)
    first = retrain(
        stack,
        repository,
        work / "win.json",
        "--with-public",
        "--public-before",
        t0_date.isoformat(),
    )
    row = {"run": "public before T0 + events before the cutoff", **summary(first)}
    if first["outcome"] == "exported":
        row["reply_showed_new_version_after_s"] = asyncio.run(
            served_version(
                services["recommend"], headers, probe_user, first["exported"]["item_scorer"]
            )
        )
    rows.append(row)
    print(json.dumps(row, indent=1), flush=True)

    cutoff = datetime.fromisoformat(first["protocol"]["cutoff"])
    since = cutoff - timedelta(days=SLICE_DAYS)
    print(f"4. retrain on the events since {since:%Y-%m-%d} alone: it should lose", flush=True)
    versions_before = export.versions(repository / "item_scorer")
    second = retrain(
        stack, repository, work / "lose.json", "--events-only", "--since", since.isoformat()
    )
    row = {
        "run": f"events of the last {SLICE_DAYS} days before the cutoff only",
        **summary(second),
        "repository_unchanged": export.versions(repository / "item_scorer") == versions_before,
    }
    rows.append(row)
    print(json.dumps(row, indent=1), flush=True)
    return rows


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--t0-quantile", type=float, default=0.5)
    options.add_argument("--no-restore", action="store_true")
    options.add_argument("--stack", type=Path, default=STACK_FILE)
    args = options.parse_args()
    quantile = bounded(args.t0_quantile, 0.2, 0.8)
    stack = read_stack(args.stack)
    repository = served_repository(stack)
    headers = {"Authorization": f"Bearer {stack['api_key']}"}
    services = stack["services"]
    data = movielens.load()
    t0 = float(np.quantile(data.timestamps, quantile))
    t0_date = datetime.fromtimestamp(t0, UTC)
    later = data.timestamps >= t0
    events = [
        event_body(f"ml-{data.user_ids[u]}", data.item_ids[i], float(at))
        for u, i, at in zip(
            data.users[later], data.items[later], data.timestamps[later], strict=True
        )
    ]
    probe_user = events[-1]["user_id"]
    extra: dict[str, Any] = {"t0": t0_date.isoformat(), "t0_quantile": quantile}
    with tempfile.TemporaryDirectory(prefix="bench-retrain-") as tmp:
        work = Path(tmp)
        original = work / "original"
        shutil.copytree(
            repository / "item_scorer" / str(export.served_version(repository, "item_scorer")),
            original,
        )

        print(f"1. served model: public ratings before {t0_date:%Y-%m-%d %H:%M}", flush=True)
        items = pipeline.train_items(work / "items-before-t0", progress=False, before=t0_date)
        written = export.export_items(repository, items)
        export.write_beside_repository(
            pipeline.default_catalog(repository), data.catalog(), repository
        )
        seen = asyncio.run(
            served_version(services["recommend"], headers, probe_user, written["item_scorer"])
        )
        extra["baseline"] = {"exported": written, "served_after_s": seen}

        print(f"2. replaying {len(events)} ratings from T0 on through ingest", flush=True)
        started = time.perf_counter()
        accepted = asyncio.run(replay(services["ingest"], headers, events))
        extra["replay"] = {
            "events": accepted,
            "users": len({e["user_id"] for e in events}),
            "seconds": round(time.perf_counter() - started, 1),
        }

        rows = two_runs(
            stack, repository, work, headers=headers, probe_user=probe_user, t0_date=t0_date
        )

        if not args.no_restore:
            restored = export.export_items(repository, original)
            extra["restored"] = restored
            print(f"5. the model served before the bench is back as {restored}", flush=True)
    write_results("retrain", rows, **extra)


if __name__ == "__main__":
    main()
