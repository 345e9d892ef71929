"""ingest over real HTTP (uvicorn) against the real broker (Tansu) and Redis."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import murmur2
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from rapport.common.auth import key_entry
from rapport.common.cache import create_redis
from rapport.common.kafka import TopicSpec, connection_kwargs, ensure_topics
from rapport.common.settings import KafkaSettings, RedisSettings
from rapport.devstack import processes, servers
from rapport.devstack.pytest_plugin import serve_app
from rapport.devstack.servers import RunningServer
from rapport.ingest.adapters.dedup import AdmissionStore, ClaimState
from rapport.ingest.app import create_app
from rapport.ingest.settings import IngestSettings

pytestmark = pytest.mark.integration

PARTITIONS = 4
WRITER = "rpk_test_writer-acme-0123456789abcdef"
READER = "rpk_test_reader-acme-0123456789abcdef"
GLOBEX = "rpk_test_writer-globex-0123456789abc"
TIGHT = "rpk_test_tight-acme-0123456789abcdef"


def api_keys_json() -> str:
    entries = [
        key_entry(WRITER, key_id="writer", tenant="acme", scopes=["events:write"]),
        key_entry(READER, key_id="reader", tenant="acme", scopes=["profiles:read"]),
        key_entry(GLOBEX, key_id="globex", tenant="globex", scopes=["events:write"]),
        key_entry(TIGHT, key_id="tight", tenant="acme", scopes=["events:write"]).model_copy(
            update={"rate_per_s": 0.5, "burst": 3}
        ),
    ]
    return json.dumps([e.model_dump(mode="json", exclude_none=True) for e in entries])


def settings_for(kafka: str, redis: str, topic: str, **overrides: Any) -> IngestSettings:
    return IngestSettings(
        kafka_bootstrap_servers=kafka,
        redis_url=redis,
        api_keys=api_keys_json(),
        topic=topic,
        **overrides,
    )


def event(user: str = "u-1", **fields: Any) -> dict[str, Any]:
    return {
        "type": "item_view",
        "user_id": user,
        "item_id": "m-1",
        "occurred_at": datetime.now(UTC).isoformat(),
        **fields,
    }


@dataclass
class Ingest:
    url: str
    topic: str
    kafka: KafkaSettings
    http: aiohttp.ClientSession

    async def post(
        self,
        body: Any,
        key: str | None = WRITER,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any, Any]:
        headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
        async with self.http.post(
            f"{self.url}/v1/events", json=body, headers=headers, **kwargs
        ) as response:
            return response.status, await response.json(content_type=None), response.headers


async def read_topic(
    kafka: KafkaSettings,
    topic: str,
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout_s: float = 15,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record from the beginning of every partition until ``until`` holds (no group)."""
    consumer = AIOKafkaConsumer(**connection_kwargs(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while not until(records) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


def ids_in(records: list[ConsumerRecord[bytes, bytes]]) -> list[str]:
    return [json.loads(r.value)["event_id"] for r in records]


async def marker_seen(ingest: Ingest) -> list[ConsumerRecord[bytes, bytes]]:
    """Produce a marker event and read until it appears: everything before it is visible."""
    marker = str(uuid.uuid4())
    status, _, _ = await ingest.post(event(user="marker", event_id=marker))
    assert status == 202
    return await read_topic(ingest.kafka, ingest.topic, lambda rs: marker in ids_in(rs))


# Every test runs against POST /v1/events as the hot path serves it and as FastAPI does:
# the two must keep one contract.
@pytest_asyncio.fixture(scope="module", params=[True, False], ids=["hot-path", "fastapi"])
async def ingest(
    kafka_server: RunningServer, redis_server: RunningServer, request: pytest.FixtureRequest
) -> AsyncIterator[Ingest]:
    topic = f"t.ingest.{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(kafka_bootstrap_servers=kafka_server.url())
    await ensure_topics(kafka, [TopicSpec(topic, PARTITIONS)])
    settings = settings_for(
        kafka_server.url(), redis_server.url(), topic, events_hot_path=request.param
    )
    async with serve_app(create_app(settings)) as url, aiohttp.ClientSession() as http:
        yield Ingest(url, topic, kafka, http)


async def test_events_land_on_the_key_partition_in_order_with_headers(
    ingest: Ingest, spans: InMemorySpanExporter
) -> None:
    users = [f"user-{i}" for i in range(8)]
    sent: dict[str, list[str]] = {u: [] for u in users}
    for round_ in range(5):
        batch = [event(user=u, item_id=f"m-{round_}") for u in users]
        status, body, _ = await ingest.post({"events": batch})
        assert status == 202, body
        assert body["accepted"] == len(users)
        for item, result in zip(batch, body["events"], strict=True):
            sent[item["user_id"]].append(result["event_id"])
        single_status, single, _ = await ingest.post(event(user=users[round_]))
        assert single_status == 202
        sent[users[round_]].append(single["events"][0]["event_id"])

    records = await marker_seen(ingest)
    by_user: dict[str, list[ConsumerRecord[bytes, bytes]]] = {}
    for record in records:
        value = json.loads(record.value)
        by_user.setdefault(value["user_id"], []).append(record)
    for user in users:
        expected_partition = (murmur2(user.encode()) & 0x7FFFFFFF) % PARTITIONS
        mine = by_user[user]
        assert {r.partition for r in mine} == {expected_partition}
        assert [r.key for r in mine] == [user.encode()] * len(mine)
        assert ids_in(mine) == sent[user], "one user's events keep their order"
        offsets = [r.offset for r in mine]
        assert offsets == sorted(offsets)
        for record in mine:
            headers = dict(record.headers)
            assert headers["rapport-schema"] == b"event.v1"
            assert headers["traceparent"].startswith(b"00-")
            value = json.loads(record.value)
            assert value["tenant"] == "acme"
            assert datetime.fromisoformat(value["received_at"]) <= datetime.now(UTC)
            assert uuid.UUID(value["event_id"]).version == 7

    # One producer span per request, and it parents the records' trace context.
    publish = [s for s in spans.get_finished_spans() if s.name == f"publish {ingest.topic}"]
    assert publish
    assert all(s.kind == SpanKind.PRODUCER for s in publish)
    trace_ids = {format(s.context.trace_id, "032x") for s in publish}
    header_traces = {dict(r.headers)["traceparent"].decode().split("-")[1] for r in records}
    assert header_traces <= trace_ids


async def test_the_request_span_continues_the_callers_trace_and_is_counted(
    ingest: Ingest, spans: InMemorySpanExporter
) -> None:
    status, _, _ = await ingest.post(event(user="traced"))
    assert status == 202
    status, _, _ = await ingest.post(event(type="teleport"))
    assert status == 422
    finished = spans.get_finished_spans()
    # The instrumented client's span carries the caller's context in `traceparent`.
    client, invalid_client = [s for s in finished if s.kind == SpanKind.CLIENT and s.name == "POST"]
    server = [s for s in finished if s.kind == SpanKind.SERVER]
    assert [s.name for s in server] == ["POST /v1/events", "POST /v1/events"]
    for caller, served in zip((client, invalid_client), server, strict=True):
        assert served.parent is not None
        assert served.parent.span_id == caller.context.span_id
        assert served.context.trace_id == caller.context.trace_id
    assert server[1].attributes is not None
    assert server[1].attributes["http.status_code"] == 422
    assert server[1].attributes["http.route"] == "/v1/events"
    publish = next(s for s in finished if s.name == f"publish {ingest.topic}")
    assert publish.parent is not None
    assert publish.parent.span_id == server[0].context.span_id
    async with ingest.http.get(f"{ingest.url}/metrics") as response:
        text = await response.text()
    for status_code in ("202", "422"):
        labels = f'method="POST",route="/v1/events",status="{status_code}"'
        assert f"rapport_http_requests_total{{{labels}}}" in text


async def test_a_batch_larger_than_a_kafka_batch_keeps_its_order(ingest: Ingest) -> None:
    # ~2.9 kB each, one user (one partition): spans many 64 kB producer batches.
    attributes = {f"k{i}": "x" * 80 for i in range(32)}
    batch = [event(user="big", item_id=f"m-{i}", attributes=attributes) for i in range(300)]
    status, body, _ = await ingest.post({"events": batch})
    assert status == 202, body
    sent = [e["event_id"] for e in body["events"]]
    records = await marker_seen(ingest)
    assert [i for i in ids_in(records) if i in set(sent)] == sent


async def test_a_mixed_batch_is_all_or_nothing(ingest: Ingest) -> None:
    good = [event(event_id=str(uuid.uuid4())) for _ in range(3)]
    bad = event(event_id=str(uuid.uuid4()))
    del bad["item_id"]
    status, body, headers = await ingest.post({"events": [good[0], bad, good[1], good[2]]})
    assert status == 422
    assert headers["Content-Type"] == "application/problem+json"
    assert body["errors"] == [{"index": 1, "field": "item_id", "reason": "Field required"}]
    records = await marker_seen(ingest)
    assert not {e["event_id"] for e in [*good, bad]} & set(ids_in(records))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"item_id": 42}, "item_id"),
        ({"query": "x" * 600, "type": "search"}, "query"),
        ({"type": "teleport"}, "type"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"occurred_at": (datetime.now(UTC) + timedelta(days=2)).isoformat()}, "occurred_at"),
        ({"tenant": "globex"}, "tenant"),
        ({"received_at": datetime.now(UTC).isoformat()}, "received_at"),
        ({"type": "exposure", "attributes": {"variant": "concise"}}, "attributes.experiment"),
    ],
)
async def test_bad_events_are_named_by_index_and_field(
    ingest: Ingest, change: dict[str, Any], field: str
) -> None:
    status, body, _ = await ingest.post({"events": [event(), event(**change)]})
    assert status == 422, body
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, field)]


async def test_an_exposure_is_accepted_and_produced_like_any_other_event(ingest: Ingest) -> None:
    exposure = event(
        type="exposure",
        event_id=str(uuid.uuid4()),
        attributes={"experiment": "tone-test", "variant": "concise"},
    )
    status, body, _ = await ingest.post(exposure)
    assert status == 202, body
    assert body["events"][0]["status"] == "accepted"
    produced = [r for r in await marker_seen(ingest) if ids_in([r]) == [exposure["event_id"]]]
    assert [json.loads(r.value)["attributes"] for r in produced] == [exposure["attributes"]]
    async with ingest.http.get(f"{ingest.url}/metrics") as response:
        text = await response.text()
    assert 'rapport_ingest_events_total{outcome="accepted",type="exposure"}' in text


async def test_duplicates_are_absorbed(ingest: Ingest) -> None:
    event_id = str(uuid.uuid4())
    first = await ingest.post(event(event_id=event_id))
    again = await ingest.post(event(event_id=event_id))
    in_batch = await ingest.post({"events": [event(event_id=event_id), event()]})
    twice_in_one = await ingest.post(
        {"events": [event(event_id=(other := str(uuid.uuid4()))), event(event_id=other)]}
    )
    assert first[1]["events"][0]["status"] == "accepted"
    assert again[0] == 202
    assert again[1]["events"][0]["status"] == "duplicate"
    assert [e["status"] for e in in_batch[1]["events"]] == ["duplicate", "accepted"]
    assert [e["status"] for e in twice_in_one[1]["events"]] == ["accepted", "duplicate"]
    records = await marker_seen(ingest)
    ids = ids_in(records)
    assert ids.count(event_id) == 1
    assert ids.count(other) == 1


async def test_same_event_id_in_two_tenants_is_two_events(ingest: Ingest) -> None:
    event_id = str(uuid.uuid4())
    acme = await ingest.post(event(event_id=event_id))
    globex = await ingest.post(event(event_id=event_id), key=GLOBEX)
    assert acme[1]["events"][0]["status"] == "accepted"
    assert globex[1]["events"][0]["status"] == "accepted"
    records = await marker_seen(ingest)
    tenants = sorted(json.loads(r.value)["tenant"] for r in records if ids_in([r]) == [event_id])
    assert tenants == ["acme", "globex"]


async def test_auth_refuses_missing_bad_and_wrong_scope_keys(ingest: Ingest) -> None:
    for key, expected in [(None, 401), ("rpk_test_nope", 401), (READER, 403)]:
        status, body, headers = await ingest.post(event(), key=key)
        assert status == expected, key
        assert body["status"] == expected
        assert headers["WWW-Authenticate"].startswith("Bearer")
    async with ingest.http.post(
        f"{ingest.url}/v1/events", json=event(), headers={"Authorization": f"Basic {WRITER}"}
    ) as response:
        assert response.status == 401


async def test_rate_limit_answers_429_with_retry_after(ingest: Ingest) -> None:
    status, _, _ = await ingest.post({"events": [event(), event(), event()]}, key=TIGHT)
    assert status == 202
    status, body, headers = await ingest.post(event(), key=TIGHT)
    assert status == 429, body
    assert int(headers["Retry-After"]) >= 1


async def test_too_large_bodies_and_batches_get_413(ingest: Ingest) -> None:
    status, body, _ = await ingest.post({"events": [event() for _ in range(501)]})
    assert status == 413, body
    huge = {"events": [event(attributes={f"k{i}": "x" * 256 for i in range(32)})] * 200}
    status, body, _ = await ingest.post(huge)
    assert status == 413
    assert body["status"] == 413
    assert "larger than" in body["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"events": ['
        for _ in range(2000):
            yield json.dumps(event(attributes={"k": "x" * 256})).encode() + b","
        yield json.dumps(event()).encode() + b"]}"

    async with ingest.http.post(
        f"{ingest.url}/v1/events",
        data=chunks(),
        headers={"Authorization": f"Bearer {WRITER}", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 413  # no Content-Length: caught while streaming


async def test_metrics_count_events_by_type_and_outcome(ingest: Ingest) -> None:
    assert (await ingest.post(event(type="search", query="boots", item_id=None)))[0] == 202
    assert (await ingest.post(event(type="teleport")))[0] == 422
    async with ingest.http.get(f"{ingest.url}/metrics") as response:
        text = await response.text()
    assert 'rapport_ingest_events_total{outcome="accepted",type="search"}' in text
    assert 'rapport_ingest_events_total{outcome="rejected",type="unknown"}' in text
    assert "rapport_ingest_produce_duration_seconds_bucket" in text


async def test_without_redis_events_are_still_accepted_and_produced(
    kafka_server: RunningServer, ingest: Ingest
) -> None:
    dead_redis = f"redis://127.0.0.1:{processes.free_port()}/0"
    settings = settings_for(kafka_server.url(), dead_redis, ingest.topic, redis_timeout_ms=100)
    async with serve_app(create_app(settings)) as url:
        status, body, _ = await Ingest(url, ingest.topic, ingest.kafka, ingest.http).post(event())
    assert status == 202, body
    assert body["dedup_checked"] is False
    records = await marker_seen(ingest)
    assert body["events"][0]["event_id"] in ids_in(records)


# ---- The broker paused and stopped: a private broker, so other tests are unaffected ----


@dataclass
class PrivateBroker:
    server: RunningServer
    kafka: KafkaSettings


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    server = servers.start(servers.kafka_spec(processes.free_port()), tmp_path)
    try:
        yield PrivateBroker(server, KafkaSettings(kafka_bootstrap_servers=server.url()))
    finally:
        processes.resume(server.handle)
        processes.stop(server.handle)


@asynccontextmanager
async def ingest_on(broker: PrivateBroker, redis: RunningServer, topic: str) -> AsyncIterator[str]:
    """An ingest with a 1 s produce deadline in front of the private broker."""
    await ensure_topics(broker.kafka, [TopicSpec(topic, PARTITIONS)])
    settings = settings_for(broker.server.url(), redis.url(), topic, produce_timeout_ms=1000)
    async with serve_app(create_app(settings)) as url:
        yield url


async def timed(call: Awaitable[tuple[int, Any, Any]]) -> tuple[float, tuple[int, Any, Any]]:
    start = time.perf_counter()
    result = await call
    return time.perf_counter() - start, result


async def test_paused_broker_gets_503_in_time_and_retries_do_not_duplicate(
    broker: PrivateBroker, redis_server: RunningServer, ingest: Ingest
) -> None:
    topic = "t.paused"
    async with ingest_on(broker, redis_server, topic) as url:
        client = Ingest(url, topic, broker.kafka, ingest.http)
        accepted: set[str] = set()
        status, body, _ = await client.post({"events": [event() for _ in range(5)]})
        assert status == 202
        accepted |= {e["event_id"] for e in body["events"]}

        # A stream of requests across a pause and resume: whatever got 202 must be on the topic.
        async def stream() -> set[str]:
            got: set[str] = set()
            for _ in range(60):
                status, body, _ = await client.post(event())
                if status == 202:
                    got |= {e["event_id"] for e in body["events"]}
                else:
                    assert status == 503, body
                await asyncio.sleep(0.02)
            return got

        streaming = asyncio.create_task(stream())
        await asyncio.sleep(0.3)
        processes.pause(broker.server.handle)
        batch = [event(event_id=str(uuid.uuid4())) for _ in range(5)]
        elapsed, (status, body, headers) = await timed(client.post({"events": batch}))
        assert status == 503, body
        assert elapsed < 1.0 + 0.5, f"answered after {elapsed:.2f}s, deadline 1s"
        assert int(headers["Retry-After"]) >= 1
        assert body["event_ids"] == [e["event_id"] for e in batch]
        processes.resume(broker.server.handle)

        # Retry with the same ids until accepted: each id lands exactly once.
        for _ in range(50):
            status, body, _ = await client.post({"events": batch})
            if status == 202:
                break
            await asyncio.sleep(0.2)
        assert status == 202, body
        accepted |= {e["event_id"] for e in body["events"]}
        accepted |= await streaming

        records = await read_topic(
            broker.kafka, topic, lambda rs: accepted <= set(ids_in(rs)), timeout_s=20
        )
        ids = ids_in(records)
        assert accepted <= set(ids), "every event that got a 202 is consumed"
        assert len(ids) == len(set(ids)), "no event id is on the topic twice"


async def test_stopped_broker_gets_503_within_the_deadline(
    broker: PrivateBroker, redis_server: RunningServer, ingest: Ingest
) -> None:
    topic = "t.stopped"
    async with ingest_on(broker, redis_server, topic) as url:
        client = Ingest(url, topic, broker.kafka, ingest.http)
        assert (await client.post(event()))[0] == 202
        # Off the loop: blocking it while a child dies was seen to reset the keep-alive socket.
        await asyncio.to_thread(processes.stop, broker.server.handle)
        for _ in range(3):
            elapsed, (status, body, headers) = await timed(client.post(event()))
            assert status == 503, body
            assert elapsed < 1.5
            assert "Retry-After" in headers
        async with ingest.http.get(f"{url}/readyz") as response:
            assert response.status == 503


async def test_admissions_of_one_turn_share_a_script_call_and_keep_their_own_answers(
    redis_server: RunningServer,
) -> None:
    redis = create_redis(RedisSettings(redis_url=redis_server.url()), client_name="test")
    store = AdmissionStore(redis, window_s=60, pending_ttl_s=5)
    run = uuid.uuid4().hex[:8]
    keys = [AdmissionStore.event_key("acme", f"{run}-{i}") for i in range(4)]
    try:
        await store.confirm([keys[0]])  # acknowledged before: a duplicate now
        first, second, refused, free = await asyncio.gather(
            store.admit(f"a-{run}", rate=1, burst=3, cost=2, event_keys=keys[:2]),
            store.admit(f"a-{run}", rate=1, burst=3, cost=2, event_keys=[keys[2]]),
            store.admit(f"b-{run}", rate=1, burst=1, cost=2, event_keys=[keys[3]]),
            store.admit(f"c-{run}", rate=1, burst=1, cost=0, event_keys=[]),
        )
        assert first.rate.allowed
        assert first.states == [ClaimState.DONE, ClaimState.NEW]
        assert not second.rate.allowed
        assert second.rate.retry_after_s > 0
        assert not refused.rate.allowed
        assert free.rate.allowed
        assert free.states == []
        # A refused admission claims nothing: the ids are still free to produce.
        assert await redis.exists(keys[2], keys[3]) == 0
    finally:
        await redis.delete(*keys)
        await redis.aclose()
