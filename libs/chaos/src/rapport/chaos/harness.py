"""What every chaos scenario shares: processes it owns, private lanes, and observations.

A *lane* is one scenario's own topics, consumer group and MongoDB database on
the shared servers, so one scenario's state can never blur another's figures.
Every process started here is recorded at once (before it is even ready), so
a scenario that fails or times out still leaves nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from rapport.common.auth import generate_key
from rapport.common.kafka import TopicSpec, connection_kwargs, ensure_topics
from rapport.common.mongo import create_mongo_client
from rapport.common.settings import KafkaSettings, MongoSettings
from rapport.devstack import events, processes, servers
from rapport.devstack.events import drain
from rapport.devstack.processes import ProcessHandle
from rapport.devstack.scrape import sample_sum
from rapport.devstack.servers import RunningServer, ServerSpec
from rapport.devstack.stack import keys_env, service_env, service_spec
from rapport.devstack.waiting import wait_until

TENANT = "chaos"
PARTITIONS = 6
# Where a service that produces events reads its topic's name.
TOPIC_VARIABLES = {"ingest": "RAPPORT_INGEST_TOPIC", "respond": "RAPPORT_RESPOND_EVENTS_TOPIC"}


# ---- results --------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool


@dataclass
class Row:
    """One line of the table: a fault, what was observed, the goal and the verdict."""

    number: str
    fault: str
    goal: str
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def check(self, name: str, ok: bool) -> bool:
        self.checks.append(Check(name, bool(ok)))
        return bool(ok)

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "row": self.number,
            "fault": self.fault,
            "goal": self.goal,
            "figures": self.figures,
            "checks": {c.name: c.ok for c in self.checks},
            "seconds": round(self.seconds, 1),
            "error": self.error,
            "result": "PASS" if self.passed else "FAIL",
        }


# ---- lanes ----------------------------------------------------------------------------

# Redis has 16 databases; 0 is the shared server's own, each lane takes the next.
_REDIS_DBS = itertools.cycle(range(1, 16))


@dataclass(frozen=True)
class Lane:
    """A scenario's private topics, group, database and Redis database (names carry a run
    id): what one deployment of Rapport owns, so two scenarios never see each other's
    state (profile's published views in a shared Redis included)."""

    name: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    redis_db: int = field(default_factory=lambda: next(_REDIS_DBS))

    @property
    def topic(self) -> str:
        return f"chaos.{self.name}.{self.run}.events"

    @property
    def changes(self) -> str:
        return f"chaos.{self.name}.{self.run}.changes"

    @property
    def dlq(self) -> str:
        return f"chaos.{self.name}.{self.run}.dlq"

    @property
    def database(self) -> str:
        return f"chaos_{self.name}_{self.run}"

    def group(self, generation: int = 1) -> str:
        return f"chaos.{self.name}.{self.run}.g{generation}"

    def topics(self) -> list[TopicSpec]:
        return [
            TopicSpec(self.topic, PARTITIONS),
            TopicSpec(self.changes, 1),
            TopicSpec(self.dlq, 1),
        ]

    def profile_env(self, generation: int = 1) -> dict[str, str]:
        return {
            "RAPPORT_MONGO_DATABASE": self.database,
            "RAPPORT_PROFILE_GROUP_ID": self.group(generation),
            "RAPPORT_PROFILE_EVENTS_TOPIC": self.topic,
            "RAPPORT_PROFILE_CHANGES_TOPIC": self.changes,
            "RAPPORT_PROFILE_DLQ_TOPIC": self.dlq,
            "RAPPORT_PROFILE_MEMORY_COLLECTION": f"{self.database}_memory",
            # Tansu holds a dead member's partitions for about two sessions: keep them short.
            "RAPPORT_PROFILE_SESSION_TIMEOUT_MS": "2000",
            "RAPPORT_PROFILE_HEARTBEAT_INTERVAL_MS": "500",
        }


# ---- the harness ----------------------------------------------------------------------


class Harness:
    """Shared servers, the processes this run started, an HTTP session and the API key."""

    def __init__(self, work: Path, http: aiohttp.ClientSession) -> None:
        self.work = work
        self.http = http
        self.key = generate_key("chaos")
        self.infra: dict[str, str] = {}
        self.triton_spec: ServerSpec | None = None
        self.triton: RunningServer | None = None
        self.catalog = work / "catalog.json"
        self.log_dir = work / "logs"
        self.scope = contextlib.AsyncExitStack()
        self.spawned: list[ProcessHandle] = []

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def keys_env(self) -> dict[str, str]:
        # No rate limit: the scenarios measure faults, not the token bucket.
        return keys_env(self.key, key_id="chaos", tenant=TENANT, unlimited=True)

    # -- processes --

    async def start(self, spec: ServerSpec, *, scoped: bool = True) -> RunningServer:
        """Start and wait until it answers; stopped when the scenario ends (``scoped``)."""
        server = await servers.start_async(spec, self.log_dir, spawned=self.spawned.append)
        if scoped:
            self.scope.push_async_callback(self.stop, server)
        return server

    async def ensure_triton(self) -> RunningServer:
        """The shared Triton; started again (same ports, same models) if a scenario killed it."""
        if self.triton_spec is None:
            raise RuntimeError("this run started no Triton")
        if self.triton is None or not processes.is_running(self.triton.handle):
            self.triton = await self.start(self.triton_spec, scoped=False)
        return self.triton

    async def stop(self, server: RunningServer) -> None:
        processes.resume(server.handle)  # a paused process must run to hear SIGTERM
        await asyncio.to_thread(processes.stop, server.handle)

    async def kill(self, server: RunningServer) -> None:
        await asyncio.to_thread(processes.kill, server.handle)

    def sweep(self) -> list[str]:
        """Stop whatever this run started that still runs (PID and start time must match)."""
        stopped = []
        for handle in reversed(self.spawned):
            if processes.is_running(handle):
                processes.resume(handle)
                if processes.stop(handle):
                    stopped.append(handle.name)
        return stopped

    def service(
        self,
        name: str,
        lane: Lane,
        *,
        infra: dict[str, str] | None = None,
        generation: int = 1,
        env: dict[str, str] | None = None,
    ) -> ServerSpec:
        """A real ``rapport-<name>`` process on a free port, wired to ``lane``."""
        infra = dict(infra or self.infra)
        if "redis" in infra:  # the lane's own database on whichever server it is given
            at = urlsplit(infra["redis"])
            infra["redis"] = urlunsplit(at._replace(path=f"/{lane.redis_db}"))
        settings = service_env(
            name,
            infra=infra,
            services={},  # a scenario wires the services it starts itself (env)
            api_keys=self.keys_env(),
            log_level="WARNING",
            extra={"OTEL_SDK_DISABLED": "true", **(env or {})},
        )
        if name == "profile":
            settings |= lane.profile_env(generation)
        if name in TOPIC_VARIABLES:
            settings[TOPIC_VARIABLES[name]] = lane.topic
        return service_spec(name, processes.free_port(), settings)

    # -- Kafka --

    def kafka(self, bootstrap: str | None = None) -> KafkaSettings:
        return KafkaSettings(kafka_bootstrap_servers=bootstrap or self.infra["kafka"])

    async def open_lane(self, lane: Lane, bootstrap: str | None = None) -> None:
        await ensure_topics(self.kafka(bootstrap), lane.topics())

    # -- MongoDB --

    async def profiles(self, lane: Lane, mongo: str | None = None) -> list[dict[str, Any]]:
        """Every stored profile document of the lane, in ``_id`` order."""
        client = create_mongo_client(
            MongoSettings(mongo_url=mongo or self.infra["mongo"]), app_name="rapport-chaos"
        )
        try:
            cursor = client[lane.database]["profiles"].find({}).sort("_id", 1)
            return [doc async for doc in cursor]
        finally:
            await client.close()

    async def versions(self, lane: Lane, mongo: str | None = None) -> dict[str, int]:
        """user id -> ``version``, which the profile raises by one per applied event."""
        return {doc["user_id"]: int(doc["version"]) for doc in await self.profiles(lane, mongo)}


# ---- events ---------------------------------------------------------------------------


def event(
    user: str, type_: str = "item_view", at: datetime | None = None, **fields: Any
) -> dict[str, Any]:
    """An event of the chaos tenant, as ingest puts it on the topic."""
    return events.event(user, type_, at, tenant=TENANT, **fields)


class GroupWatch:
    """A consumer group's committed offsets against the log's end: progress and lag.

    One consumer reads the group's offsets without joining it (no subscription);
    another follows the tail of the topic for the high watermarks.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, group: str) -> None:
        self.consumer = AIOKafkaConsumer(
            **connection_kwargs(kafka), group_id=group, enable_auto_commit=False
        )
        self.tail = AIOKafkaConsumer(
            **connection_kwargs(kafka), enable_auto_commit=False, fetch_max_wait_ms=10
        )
        self.tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    async def __aenter__(self) -> GroupWatch:
        await self.consumer.start()
        await self.tail.start()
        self.tail.assign(self.tps)
        await self.tail.seek_to_end(*self.tps)  # at or before the end (see above): cheap to read
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.tail.stop()
        await self.consumer.stop()

    async def committed(self) -> int:
        return sum([await self.consumer.committed(tp) or 0 for tp in self.tps])

    async def end(self) -> int:
        await drain(self.tail, self.tps)
        return sum(self.tail.highwater(tp) or 0 for tp in self.tps)

    async def lag(self) -> int:
        end = await self.end()
        return max(0, end - await self.committed())

    async def caught_up(self, timeout_s: float) -> float | None:
        """Seconds until every record on the topic now is committed; None if not in time."""
        started = time.monotonic()
        target = await self.end()
        while time.monotonic() - started < timeout_s:
            with contextlib.suppress(Exception):  # a broker mid-restart: ask again
                if await self.committed() >= target:
                    return time.monotonic() - started
            await asyncio.sleep(0.2)
        return None


async def settle(
    h: Harness,
    lane: Lane,
    timeout_s: float,
    *,
    bootstrap: str | None = None,
    mongo: str | None = None,
) -> tuple[bool, dict[str, int]]:
    """Wait until the lane's group has committed the whole topic; then the stored versions."""
    async with GroupWatch(h.kafka(bootstrap), lane.topic, lane.group()) as watch:
        drained = await watch.caught_up(timeout_s)
    return drained is not None, await h.versions(lane, mongo)


def tally(expected: Counter[str], versions: dict[str, int]) -> tuple[int, int]:
    """(lost, applied twice) of events per user, against what was produced."""
    users = set(expected) | set(versions)
    lost = sum(max(0, expected[u] - versions.get(u, 0)) for u in users)
    twice = sum(max(0, versions.get(u, 0) - expected[u]) for u in users)
    return lost, twice


def state_hash(docs: Iterable[dict[str, Any]]) -> str:
    """SHA-256 of the documents, every field included (``updated_at`` too)."""
    canonical = json.dumps(list(docs), default=str, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


# ---- HTTP ------------------------------------------------------------------------------


@dataclass
class Call:
    """One request as a client saw it (monotonic times, seconds)."""

    kind: str
    sent: float
    done: float
    status: int  # 0: no HTTP answer at all (connection error, client timeout)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ms(self) -> float:
        return (self.done - self.sent) * 1000


async def call(
    http: aiohttp.ClientSession,
    kind: str,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    timeout_s: float = 10.0,
    **kwargs: Any,
) -> Call:
    sent = time.monotonic()
    try:
        async with http.request(
            method, url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s), **kwargs
        ) as response:
            body = await response.json(content_type=None) if response.content_length != 0 else None
            return Call(kind, sent, time.monotonic(), response.status, body, dict(response.headers))
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
        return Call(kind, sent, time.monotonic(), 0, repr(exc))


async def repeat(
    stop: asyncio.Event, step: Callable[[], Awaitable[float | None]], pace_s: float
) -> None:
    """Run ``step`` until ``stop``; it may return its own pause (e.g. a Retry-After)."""
    while not stop.is_set():
        pause = await step()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pace_s if pause is None else pause)


@contextlib.asynccontextmanager
async def traffic(
    steps: Iterable[Callable[[], Awaitable[float | None]]], pace_s: float
) -> AsyncIterator[None]:
    """Each step in a loop of its own for the duration of the block."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(repeat(stop, step, pace_s)) for step in steps]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def metric(url: str, http: aiohttp.ClientSession, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample over the series whose labels include ``labels``."""
    async with http.get(f"{url}/metrics") as response:
        return sample_sum(await response.text(), name, **labels)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float) -> float | None:
    """Seconds until ``check`` holds, or None; a check that raises counts as not yet."""
    return await wait_until(check, timeout_s, retry_on=(Exception,))
