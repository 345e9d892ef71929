"""Feast against Rapport: write-to-readable freshness under the same loads, in one run.

**Feast** (``.venv-feast``, ``make bench-feast`` builds it): its own ``redis-server``
(the online store) on a free loopback port, a feature repo written to a temp dir
(entity ``user_id``; feature view ``user_activity`` with ``last_item`` and ``views``,
fed by a PushSource over a FileSource that is never read), ``feast apply``, then
``feast serve`` (one worker, Feast's defaults). Written with ``POST /push``, read with
``POST /get-online-features``.

**Rapport**: the mesh ``make up`` runs, found through ``.rapport/stack.json``. Written
with ingest ``POST /v1/events``, read with profile ``GET /v1/profiles/{user_id}``.
Skipped, with a line saying why, when the file is absent or the mesh does not answer.

For each system in turn, each load for ``--seconds``: idle; 100 single-row requests/s;
50 requests/s of 10 rows (500 rows/s); open loop from planned send times. Meanwhile one
probe user reads its mark (Rapport: the profile's ``version``; Feast: its ``views``),
writes one row, then polls the read until the mark rises: that time is the freshness.
Both systems go through the same client, load loop and probe loop; only the bodies and
the mark differ. Every latency is printed beside its load level and written to
``bench/results/feast.json``.

    .venv/bin/python -m bench.feast [--seconds 30] [--only feast|rapport]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import signal
import sys
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp

from bench.options import bounded, parser
from bench.results_file import write_results
from bench.stats import Stopwatch, percentiles
from rapport.devstack import processes
from rapport.devstack.processes import ProcessHandle
from rapport.devstack.servers import (
    ServerSpec,
    ServerStartError,
    clean_env,
    probe_http_ok,
    redis_spec,
    start_async,
)

ROOT = Path(__file__).resolve().parent.parent
FEAST_BIN = ROOT / ".venv-feast" / "bin" / "feast"
STACK_FILE = ROOT / ".rapport" / "stack.json"

PROBE_TIMEOUT_S = 10.0  # a probe that never sees its write counts with this time
DRAIN_TIMEOUT_S = 30.0
PROBE_GAP_S = 0.05  # between probes, as the event probe does
POLL_S = 0.001
LOAD_TICK_S = 0.002
SETTLE_S = 2.0  # between loads, so one load's tail does not start the next
BACKGROUND_USERS = 5000
ITEMS = 1600

PUSH_SOURCE = "user_activity_push"
FEATURE_VIEW = "user_activity"

FEATURE_STORE_YAML = """\
project: rapport_bench
provider: local
registry: registry.db
online_store:
  type: redis
  connection_string: "{redis}"
offline_store:
  type: file
entity_key_serialization_version: 3
"""

# Feast imports every .py file of the repo on apply; this is the only one.
FEATURES_PY = f'''\
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Int64, String

user = Entity(name="user_id", join_keys=["user_id"], value_type=ValueType.STRING)
# A PushSource needs a batch source; nothing here materializes, so the file never exists.
batch = FileSource(
    name="user_activity_batch", path="user_activity.parquet", timestamp_field="event_timestamp"
)
push = PushSource(name="{PUSH_SOURCE}", batch_source=batch)
user_activity = FeatureView(
    name="{FEATURE_VIEW}",
    entities=[user],
    ttl=timedelta(days=1),
    schema=[Field(name="last_item", dtype=String), Field(name="views", dtype=Int64)],
    source=push,
    online=True,
)
'''


@dataclass(frozen=True)
class Load:
    name: str
    requests_per_s: float
    rows_per_request: int

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.rows_per_request


LOADS = (
    Load("idle (probe only)", 0, 1),
    Load("100 rows/s, 1 a request", 100, 1),
    Load("500 rows/s, 10 a request", 50, 10),
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Target(ABC):
    """One system as the load and the probe see it: where to write, what a write looks
    like, and the mark that rises once a user's write is readable."""

    system: str
    accepted_status: int

    def __init__(self, write_url: str, headers: dict[str, str]) -> None:
        self.write_url = write_url
        self.headers = headers

    @abstractmethod
    def rows_body(self, first: int, count: int) -> dict[str, Any]:
        """Background rows ``first .. first+count-1``, one request."""

    @abstractmethod
    def probe_body(self, user: str, mark: int) -> dict[str, Any]:
        """One row for ``user``, whose mark was ``mark`` before it."""

    @abstractmethod
    async def read_mark(self, http: aiohttp.ClientSession, user: str) -> int:
        """The user's mark as the read endpoint shows it now (0 for an unknown user)."""

    def restarts(self) -> int | None:
        """Server restarts seen so far, where the system has them (None: not counted)."""
        return None


class RapportTarget(Target):
    system = "rapport"
    accepted_status = 202

    def __init__(self, ingest: str, profile: str, api_key: str) -> None:
        super().__init__(f"{ingest}/v1/events", {"Authorization": f"Bearer {api_key}"})
        self.profile = profile

    @staticmethod
    def _event(user: str, item: int) -> dict[str, Any]:
        return {
            "type": "item_view",
            "user_id": user,
            "item_id": str(item),
            "category": "Drama",
            "occurred_at": now_iso(),
        }

    def rows_body(self, first: int, count: int) -> dict[str, Any]:
        events = [
            self._event(f"bg-{i % BACKGROUND_USERS}", 1 + i % ITEMS)
            for i in range(first, first + count)
        ]
        return events[0] if count == 1 else {"events": events}

    def probe_body(self, user: str, mark: int) -> dict[str, Any]:
        return self._event(user, 50)  # profile counts the version itself

    async def read_mark(self, http: aiohttp.ClientSession, user: str) -> int:
        url = f"{self.profile}/v1/profiles/{user}"
        async with http.get(url, headers=self.headers) as response:
            if response.status != 200:
                return 0
            return int((await response.json()).get("version", 0))


class FeastTarget(Target):
    system = "feast"
    accepted_status = 200

    def __init__(self, serve_url: str, serve_log: Path) -> None:
        super().__init__(f"{serve_url}/push", {})
        self.read_url = f"{serve_url}/get-online-features"
        self.serve_log = serve_log

    def _push(self, users: list[str], items: list[int], views: list[int]) -> dict[str, Any]:
        stamp = now_iso()  # Redis keeps a row only if it is newer than the stored one
        return {
            "push_source_name": PUSH_SOURCE,
            "df": {
                "user_id": users,
                "last_item": [str(item) for item in items],
                "views": views,
                "event_timestamp": [stamp] * len(users),
            },
            "to": "online",
        }

    def rows_body(self, first: int, count: int) -> dict[str, Any]:
        rows = range(first, first + count)
        return self._push(
            [f"bg-{i % BACKGROUND_USERS}" for i in rows], [1 + i % ITEMS for i in rows], list(rows)
        )

    def probe_body(self, user: str, mark: int) -> dict[str, Any]:
        return self._push([user], [50], [mark + 1])

    async def read_mark(self, http: aiohttp.ClientSession, user: str) -> int:
        body = {"features": [f"{FEATURE_VIEW}:views"], "entities": {"user_id": [user]}}
        async with http.post(self.read_url, json=body) as response:
            if response.status != 200:
                return 0
            answer = await response.json()
        names: list[str] = answer["metadata"]["feature_names"]
        value = answer["results"][names.index("views")]["values"][0]
        return int(value) if value is not None else 0

    def restarts(self) -> int | None:
        # gunicorn recycles its worker after --max-requests (1000 by default) requests;
        # each start after the first is a restart, and the listen queue waits meanwhile.
        text = self.serve_log.read_text(errors="replace") if self.serve_log.exists() else ""
        return max(0, text.count("Booting worker with pid") - 1)


@dataclass
class Counts:
    sent: int = 0
    accepted: int = 0
    refused: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # by kind


async def post(http: aiohttp.ClientSession, target: Target, body: dict[str, Any]) -> int:
    async with http.post(target.write_url, json=body, headers=target.headers) as response:
        await response.read()
        return response.status


async def offer(http: aiohttp.ClientSession, target: Target, load: Load, stop_at: float) -> Counts:
    """Open loop: request n leaves at start + n / rate, whatever the answers do."""
    counts = Counts()
    if load.requests_per_s <= 0:
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        return counts
    tasks: set[asyncio.Task[None]] = set()

    async def one(body: dict[str, Any]) -> None:
        try:
            status = await post(http, target, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            counts.errors[type(exc).__name__] += 1
            return
        counts.statuses[status] += 1
        if status == target.accepted_status:
            counts.accepted += 1
        else:
            counts.refused += 1

    start = time.monotonic()
    while (now := time.monotonic()) < stop_at:
        due = int((now - start) * load.requests_per_s)
        while counts.sent < due:
            body = target.rows_body(counts.sent * load.rows_per_request, load.rows_per_request)
            task = asyncio.create_task(one(body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            counts.sent += 1
        await asyncio.sleep(LOAD_TICK_S)
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
        for task in pending:  # still unanswered: counted as errors
            task.cancel()
            counts.errors["unanswered"] += 1
    return counts


async def probe_once(
    http: aiohttp.ClientSession, target: Target, user: str, timeout_s: float
) -> tuple[float, float] | None:
    """Write one row for ``user`` and poll until its mark rises: (ms to readable, ms to
    the write's answer), or None if the write was refused. Past ``timeout_s`` the time
    so far is returned."""
    mark = await target.read_mark(http, user)
    took = Stopwatch()
    if await post(http, target, target.probe_body(user, mark)) != target.accepted_status:
        return None
    acked_ms = took.ms
    while await target.read_mark(http, user) <= mark:
        if took.seconds > timeout_s:
            break
        await asyncio.sleep(POLL_S)
    return took.ms, acked_ms


@dataclass
class Probes:
    fresh_ms: list[float] = field(default_factory=list)
    ack_ms: list[float] = field(default_factory=list)
    refused: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # by kind


async def probe_loop(http: aiohttp.ClientSession, target: Target, stop_at: float) -> Probes:
    """One probe at a time, from 1 s after the load starts until 1 s before it ends."""
    out = Probes()
    user = f"probe-{uuid.uuid4().hex[:8]}"
    await asyncio.sleep(1)
    while time.monotonic() < stop_at - 1:
        try:
            result = await probe_once(http, target, user, PROBE_TIMEOUT_S)
        except (aiohttp.ClientError, TimeoutError) as exc:
            out.errors[type(exc).__name__] += 1
            result = None
        else:
            if result is None:
                out.refused += 1
        if result is not None:
            out.fresh_ms.append(result[0])
            out.ack_ms.append(result[1])
        await asyncio.sleep(PROBE_GAP_S)
    return out


async def run_load(
    http: aiohttp.ClientSession, target: Target, load: Load, seconds: float
) -> dict[str, Any]:
    restarts_before = target.restarts()
    run, stop_at = Stopwatch(), time.monotonic() + seconds
    counts, probes = await asyncio.gather(
        offer(http, target, load, stop_at), probe_loop(http, target, stop_at)
    )
    elapsed = run.stop()
    # How long the load's backlog takes to clear: a fresh user's write, up to 30 s.
    with (
        Stopwatch() as drain,
        contextlib.suppress(aiohttp.ClientError, TimeoutError),
    ):
        await probe_once(http, target, f"drain-{uuid.uuid4().hex[:8]}", DRAIN_TIMEOUT_S)
    drain_s = drain.seconds
    fresh = probes.fresh_ms
    row: dict[str, Any] = {
        "system": target.system,
        "scenario": f"write to readable ({target.system})",
        "load": load.name,
        "offered_rows_per_s": load.rows_per_s,
        "offered_requests_per_s": load.requests_per_s,
        "rows_per_request": load.rows_per_request,
        "sent_requests": counts.sent,
        "sent_rows_per_s": round(counts.sent * load.rows_per_request / elapsed, 1),
        "accepted": counts.accepted,
        "refused": counts.refused,
        "errors": counts.errors.total(),
        "statuses": {str(k): v for k, v in sorted(counts.statuses.items())},
        "error_kinds": dict(counts.errors),
        "probes": len(fresh),
        "probe_timeouts": sum(1 for ms in fresh if ms >= PROBE_TIMEOUT_S * 1000),
        "probe_refused": probes.refused,
        "probe_errors": dict(probes.errors),
        **percentiles(fresh, digits=1, maximum=True),
        **percentiles(probes.ack_ms, digits=1, prefix="write_answer_"),
        "drain_after_s": round(drain_s, 3),
        "seconds": round(elapsed, 1),
    }
    restarts_after = target.restarts()
    if restarts_before is not None and restarts_after is not None:
        row["server_restarts"] = restarts_after - restarts_before
    show(row)
    return row


async def run_system(target: Target, seconds: float) -> list[dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        # Warm-up, not measured: first requests build connections and caches.
        for _ in range(5):
            await probe_once(http, target, f"warm-{uuid.uuid4().hex[:8]}", PROBE_TIMEOUT_S)
        rows = []
        for load in LOADS:
            rows.append(await run_load(http, target, load, seconds))
            await asyncio.sleep(SETTLE_S)
    return rows


# ---- Feast: its own Redis, feature repo, apply and serve ------------------------------


async def feast_version(feast_bin: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(feast_bin.parent / "python"),
        "-c",
        "import importlib.metadata as m; print(m.version('feast'))",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return out.decode().strip()


async def feast_apply(feast_bin: Path, repo: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(feast_bin),
        "-c",
        str(repo),
        "apply",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=clean_env(),
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=180)
    finally:
        if proc.returncode is None:  # timed out or cancelled: stop our own child
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise ServerStartError(f"feast apply failed ({proc.returncode}):\n{out.decode()}")


def stop_all(handles: list[ProcessHandle]) -> None:
    for handle in reversed(handles):
        processes.stop(handle)


@contextlib.asynccontextmanager
async def feast_server(
    feast_bin: Path, work: Path, max_requests: int | None
) -> AsyncIterator[tuple[FeastTarget, dict[str, Any]]]:
    """Redis, the applied repo and ``feast serve``; all of it stopped on the way out."""
    handles: list[ProcessHandle] = []
    try:
        redis = await start_async(
            redis_spec(processes.free_port(), work), work, spawned=handles.append
        )
        redis_addr = redis.url("redis").removeprefix("redis://").removesuffix("/0")
        repo = work / "feature_repo"
        repo.mkdir()
        (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML.format(redis=redis_addr))
        (repo / "features.py").write_text(FEATURES_PY)
        await feast_apply(feast_bin, repo)

        port = processes.free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [str(feast_bin), "-c", str(repo), "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--no-access-log"]
        if max_requests is not None:
            argv += ["--max-requests", str(max_requests)]
        spec = ServerSpec(
            name="feast-serve",
            argv=argv,
            probe=lambda: probe_http_ok(f"{url}/health"),
            urls={"feast": url},
            # gunicorn's control socket lands in $XDG_RUNTIME_DIR (else ~/.gunicorn): keep it
            # in the temp dir, so that nothing is left behind and two runs do not share one.
            env={"XDG_RUNTIME_DIR": str(work)},
            start_timeout_s=120,  # imports pandas, pyarrow, gunicorn: ~8 s on an idle box
        )
        await start_async(spec, work, spawned=handles.append)
        info = {
            "feast_version": await feast_version(feast_bin),
            "feast_serve": shlex.join(["feast", *argv[1:]]).replace(str(repo), "<repo>"),
            "feast_online_store": f"redis-server {redis.spec.argv[0]} (its own, loopback)",
            "feast_repo": {
                "feature_store.yaml": FEATURE_STORE_YAML.format(redis=redis_addr),
                "features.py": FEATURES_PY,
            },
        }
        yield FeastTarget(url, work / "feast-serve.log"), info
    finally:
        stop_all(handles)  # synchronous on purpose: it must finish even when cancelled


async def run_feast(
    feast_bin: Path, seconds: float, max_requests: int | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="rapport-bench-feast-") as tmp:
        async with feast_server(feast_bin, Path(tmp), max_requests) as (target, info):
            print(f"feast {info['feast_version']}: {info['feast_serve']}", flush=True)
            return await run_system(target, seconds), info


# ---- Rapport: the mesh `make up` runs ---------------------------------------------------


def read_stack(stack_file: Path) -> dict[str, Any] | str:
    """What ``make up`` wrote, or why Rapport is skipped."""
    if not stack_file.is_file():
        return f"no {stack_file}: run `make up` first"
    stack: dict[str, Any] = json.loads(stack_file.read_text())
    services = stack.get("services", {})
    if "ingest" not in services or "profile" not in services:
        return f"{stack_file} names no ingest or profile"
    return stack


async def rapport_target(stack: dict[str, Any]) -> RapportTarget | str:
    """The target, or why Rapport is skipped."""
    services: dict[str, str] = stack["services"]
    for name in ("ingest", "profile"):
        try:
            await probe_http_ok(f"{services[name]}/livez")
        except (aiohttp.ClientError, TimeoutError, ServerStartError) as exc:
            why = type(exc).__name__
            return f"{name} at {services[name]} does not answer ({why}): run `make up` first"
    return RapportTarget(services["ingest"], services["profile"], stack["api_key"])


# ---- Output -----------------------------------------------------------------------------


def show(row: dict[str, Any]) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    restarts = f"  restarts={row['server_restarts']}" if "server_restarts" in row else ""
    print(
        f"{row['system']:<8} {row['load']:<26} sent={row['sent_rows_per_s']:>6} rows/s  "
        f"fresh p50={ms(row['p50_ms'])} p99={ms(row['p99_ms'])} max={ms(row['max_ms'])} ms  "
        f"probes={row['probes']}  accepted={row['accepted']} refused={row['refused']} "
        f"errors={row['errors']}  drain={row['drain_after_s']} s{restarts}",
        flush=True,
    )


def table(rows: list[dict[str, Any]]) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    header = (
        *("system", "load", "offered rows/s", "sent rows/s", "p50 ms", "p99 ms", "max ms"),
        *("probes", "accepted", "refused/err"),
    )
    line = "{:<8} {:<26} {:>14} {:>11} {:>8} {:>8} {:>8} {:>7} {:>9} {:>11}"
    print("\n" + line.format(*header))
    for r in rows:
        print(
            line.format(
                r["system"],
                r["load"],
                f"{r['offered_rows_per_s']:,.0f}",
                f"{r['sent_rows_per_s']:,.0f}",
                ms(r["p50_ms"]),
                ms(r["p99_ms"]),
                ms(r["max_ms"]),
                r["probes"],
                r["accepted"],
                r["refused"] + r["errors"],
            )
        )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops what we started, as Ctrl-C does


async def amain(args: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"seconds_per_load": args.seconds, "loads": [ld.name for ld in LOADS]}
    skipped: dict[str, str] = {}
    if args.only in (None, "feast"):
        if not args.feast_bin.exists():
            raise SystemExit(f"{args.feast_bin} is missing: `make bench-feast` builds .venv-feast")
        feast_rows, info = await run_feast(args.feast_bin, args.seconds, args.feast_max_requests)
        rows += feast_rows
        extra |= info
    if args.only in (None, "rapport"):
        stack = read_stack(args.stack)
        target = stack if isinstance(stack, str) else await rapport_target(stack)
        if isinstance(target, str):
            print(f"rapport skipped: {target}", flush=True)
            skipped["rapport"] = target
        else:
            extra["rapport_mesh"] = {
                "from": str(args.stack),
                "ingest": target.write_url,
                "profile": target.profile,
            }
            rows += await run_system(target, args.seconds)
    if skipped:
        extra["skipped"] = skipped
    if not rows:
        print("nothing measured; no results written")
        return
    table(rows)
    write_results("feast", rows, **extra)


def main() -> None:
    options = parser(__doc__, seconds=30.0, seconds_help="per load (5 to 300)")
    options.add_argument("--only", choices=("feast", "rapport"))
    options.add_argument("--feast-bin", type=Path, default=FEAST_BIN, help=argparse.SUPPRESS)
    options.add_argument("--stack", type=Path, default=STACK_FILE, help=argparse.SUPPRESS)
    options.add_argument(
        "--feast-max-requests",
        type=int,
        default=None,
        metavar="N",
        help="feast serve's --max-requests (its default recycles the worker every 1000 requests)",
    )
    args = options.parse_args()
    args.seconds = bounded(args.seconds, 5.0, 300.0)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(amain(args))
    except KeyboardInterrupt:
        print("interrupted; what this bench started is stopped", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
