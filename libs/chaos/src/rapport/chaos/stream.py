"""Faults around the profile stream processor: the state must come out exact.

Each scenario produces events whose effect is known in advance (an oracle: one
``version`` per applied event and user), breaks something while real
``rapport-profile`` processes consume them, and then compares MongoDB with the
oracle, the DLQ with the poison it was sent, or the state hash with itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from pymilvus import AsyncMilvusClient

from rapport.chaos.harness import (
    TENANT,
    GroupWatch,
    Harness,
    Lane,
    Row,
    event,
    eventually,
    metric,
    state_hash,
    tally,
)
from rapport.chaos.scale import Scale
from rapport.common.milvus import literal
from rapport.common.profiles import profile_id
from rapport.common.vectors import MessageVector
from rapport.devstack import processes, servers
from rapport.devstack.events import Record, produce, read_topic, record
from rapport.devstack.stack import infra_spec


def item_views(rng: random.Random, count: int, users: int) -> tuple[list[Record], Counter[str]]:
    """``count`` item views over the last week, spread over ``users``, and how many each
    user got. Dated from the clock: reads decay with age, so fixed dates would age."""
    now = datetime.now(UTC).replace(microsecond=0)  # MongoDB keeps milliseconds
    per_user: Counter[str] = Counter()
    records = []
    for i in range(count):
        user = f"user-{rng.randrange(users)}"
        per_user[user] += 1
        at = now - timedelta(seconds=rng.randrange(86_400 * 7))
        view = event(user, "item_view", at, item_id=f"m-{i % 500}", category=f"c-{i % 12}")
        records.append(record(view))
    return records, per_user


# ---- 1. kill -9 the consumer ---------------------------------------------------------------


async def kill_profile_consumer(h: Harness, rows: list[Row], scale: Scale) -> None:
    row = Row(
        "1",
        f"kill -9 profile consumer x{scale.kills} during {scale.kill_events:,} events",
        "0 lost, 0 applied twice",
    )
    rows.append(row)
    lane = Lane("kill9")
    await h.open_lane(lane)
    rng = random.Random(11)
    records, expected = item_views(rng, scale.kill_events, users=2000)
    # Produced in chunks, each while no consumer runs, and each consumer is killed
    # soon after it commits: every kill lands with work left, on any machine.
    chunk = scale.kill_events // (scale.kills + 1)

    kafka = h.kafka()
    async with GroupWatch(kafka, lane.topic, lane.group()) as watch:
        started = time.monotonic()
        at_start, at_kill, produced = [], [], []
        for i in range(scale.kills):
            await produce(kafka, lane.topic, records[i * chunk : (i + 1) * chunk])
            produced.append((i + 1) * chunk)
            at_start.append(await watch.committed())
            consumer = await h.start(h.service("profile", lane))
            await eventually(lambda: committed_at_least(watch, at_start[-1] + 1), 60)
            await asyncio.sleep(rng.uniform(0.05, 0.5))
            await h.kill(consumer)
            at_kill.append(await watch.committed())
        await produce(kafka, lane.topic, records[scale.kills * chunk :])
        consumer = await h.start(h.service("profile", lane))
        # Against the known total: the tail's high watermark can lag a fresh produce.
        caught_up = await eventually(
            lambda: committed_at_least(watch, scale.kill_events), scale.drain_timeout_s
        )
        seconds = time.monotonic() - started
    lost, twice = tally(expected, await h.versions(lane))

    row.figures = {
        "kills": len(at_kill),
        "committed at each kill": ", ".join(f"{n:,}" for n in at_kill),
        "lost": lost,
        "applied twice": twice,
        "seconds": round(seconds, 1),
        "events/s": round(scale.kill_events / seconds),
    }
    row.check(
        "every kill mid-stream, after progress",
        all(s < k < p for s, k, p in zip(at_start, at_kill, produced, strict=True)),
    )
    row.check("drained", caught_up is not None)
    row.check("0 lost", lost == 0)
    row.check("0 applied twice", twice == 0)


# ---- 4. kill the Mongo-wire server ----------------------------------------------------------


async def kill_mongo(h: Harness, rows: list[Row], scale: Scale) -> None:
    row = Row("4", "kill -9 nx-27017, restart on same port+file", "0 lost, 0 twice; peak lag shown")
    rows.append(row)
    lane = Lane("mongo")
    await h.open_lane(lane)
    # A private, file-backed server: it is killed, and must come back with its data.
    mongo_spec = servers.mongo_spec(processes.free_port(), h.log_dir, db_file=h.log_dir / "m.db")
    mongo = await h.start(mongo_spec)
    infra = {**h.infra, "mongo": mongo.url()}
    profile = await h.start(h.service("profile", lane, infra=infra))

    rng = random.Random(4)
    expected: Counter[str] = Counter()
    stop = asyncio.Event()
    lags: list[tuple[float, int]] = []

    async def producer() -> None:
        # A steady stream: scale.stream_rate events/s in 20 ms slices, straight to the topic.
        while not stop.is_set():
            records, per_user = item_views(rng, max(1, scale.stream_rate // 50), users=300)
            await produce(h.kafka(), lane.topic, records)
            expected.update(per_user)
            await asyncio.sleep(0.02)

    async with GroupWatch(h.kafka(), lane.topic, lane.group()) as watch:

        async def sampler() -> None:
            while not stop.is_set():
                with contextlib.suppress(Exception):
                    lags.append((time.monotonic(), await watch.lag()))
                await asyncio.sleep(0.1)

        tasks = [asyncio.create_task(producer()), asyncio.create_task(sampler())]
        try:
            await asyncio.sleep(3.0)
            await h.kill(mongo)
            killed = time.monotonic()
            await asyncio.sleep(scale.outage_s)
            mongo = await h.start(mongo_spec)  # same port, same file
            down_s = time.monotonic() - killed
            # The backlog of the outage: how long until it is committed.
            backlog = await watch.end()
            clearing = asyncio.create_task(
                eventually(lambda: committed_at_least(watch, backlog), scale.drain_timeout_s)
            )
            await asyncio.sleep(4.0)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        cleared = await clearing
        drained = await watch.caught_up(timeout_s=scale.drain_timeout_s)
    lost, twice = tally(expected, await h.versions(lane, mongo.url()))
    peak = max((lag for _, lag in lags), default=0)
    before = max((lag for at, lag in lags if at < killed), default=0)
    row.figures = {
        "events": sum(expected.values()),
        "down s": round(down_s, 1),
        "peak lag": peak,
        "lag before kill": before,
        "backlog cleared s after restart": None if cleared is None else round(cleared, 1),
        "lost": lost,
        "applied twice": twice,
    }
    row.check("profile process survived", processes.is_running(profile.handle))
    row.check("lag grew while down", peak > before)
    row.check("drained", drained is not None)
    row.check("0 lost", lost == 0)
    row.check("0 applied twice", twice == 0)


async def committed_at_least(watch: GroupWatch, target: int) -> bool:
    return await watch.committed() >= target


# ---- 7. poison records ---------------------------------------------------------------------

POISON: list[tuple[bytes | None, list[tuple[str, bytes]]]] = [
    (b"{not json", [("rapport-schema", b"event.v1")]),
    (json.dumps({"type": "page_view"}).encode(), [("rapport-schema", b"event.v1")]),
    (json.dumps({"type": "teleport", "user_id": "x"}).encode(), []),
    (None, []),  # a null value on the events topic
    (json.dumps({"type": "page_view", "user_id": "x"}).encode(), [("rapport-schema", b"event.v9")]),
]


async def poison_records(h: Harness, rows: list[Row], scale: Scale) -> None:
    row = Row("7", "1% poison records on the events topic", "DLQ count = poison count, exactly")
    rows.append(row)
    lane = Lane("poison")
    await h.open_lane(lane)
    rng = random.Random(7)
    good, expected = item_views(rng, scale.poison_events, users=200)
    poison_at = set(rng.sample(range(len(good)), len(good) // 100))
    records: list[Record] = []
    for i, good_record in enumerate(good):
        records.append(good_record)
        if i in poison_at:
            value, headers = POISON[i % len(POISON)]
            records.append((f"poison-{i}".encode(), value, headers))
    metadata = await produce(h.kafka(), lane.topic, records)
    poisoned = {
        (meta.partition, meta.offset)
        for meta, (key, _, _) in zip(metadata, records, strict=True)
        if key and key.startswith(b"poison-")
    }

    await h.start(h.service("profile", lane))
    async with GroupWatch(h.kafka(), lane.topic, lane.group()) as watch:
        drained = await watch.caught_up(timeout_s=scale.drain_timeout_s)
    dlq = await read_topic(h.kafka(), lane.dlq, 1)
    dead = {
        (int(headers["original-partition"]), int(headers["original-offset"]))
        for headers in (dict(r.headers) for r in dlq)
        if headers.get("original-topic") == lane.topic.encode()
    }
    lost, twice = tally(expected, await h.versions(lane))
    row.figures = {
        "records": len(records),
        "poison": len(poisoned),
        "on DLQ": len(dlq),
        "DLQ = poison offsets": dead == poisoned,
        "good lost": lost,
        "good twice": twice,
    }
    row.check("drained", drained is not None)
    row.check("DLQ count exact", len(dlq) == len(poisoned))
    row.check("DLQ names each poison offset", dead == poisoned)
    row.check("good events exact", lost == 0 and twice == 0)


# ---- 8. duplicates, then a replay from offset 0 -------------------------------------------------


def mixed_events(rng: random.Random, count: int, users: int) -> list[dict[str, Any]]:
    """Every kind of event the reducer handles, so the state hash covers every field,
    over the last three days."""
    now = datetime.now(UTC).replace(microsecond=0)  # MongoDB keeps milliseconds
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("item_view", {"item_id": "m-1", "category": "Drama"}),
        ("click", {"item_id": "m-2", "category": "Comedy"}),
        ("add_to_cart", {"item_id": "m-3", "category": "Drama"}),
        ("purchase", {"item_id": "m-4", "category": "Action", "value": 12.5}),
        ("search", {"query": "space opera"}),
        ("page_view", {}),
        ("preference", {"attributes": {"tone": "concise"}}),
        ("chat_message", {"text": "hello", "attributes": {"intent": "greeting", "sentiment": 0.4}}),
        ("feedback", {"item_id": "m-5", "rating": 5, "attributes": {"policy": "p", "arm": "a"}}),
        ("consent", {"attributes": {"personalization": True}}),
    ]
    events = []
    for i in range(count):
        type_, fields = kinds[i % len(kinds)] if rng.random() < 0.5 else kinds[0]
        at = now - timedelta(seconds=rng.randrange(86_400 * 3))
        events.append(event(f"user-{rng.randrange(users)}", type_, at, **fields))
    return events


async def duplicates_and_replay(h: Harness, rows: list[Row], scale: Scale) -> None:
    row = Row(
        "8",
        "duplicates, then replay from offset 0 (new group)",
        "state hash unchanged, 0 applied",
    )
    rows.append(row)
    lane = Lane("replay")
    await h.open_lane(lane)
    rng = random.Random(8)
    events = mixed_events(rng, scale.replay_events, users=scale.replay_users)
    await produce(h.kafka(), lane.topic, [record(e) for e in events])
    first = await h.start(h.service("profile", lane))
    async with GroupWatch(h.kafka(), lane.topic, lane.group()) as watch:
        drained = await watch.caught_up(timeout_s=scale.drain_timeout_s)
        before = state_hash(await h.profiles(lane))
        # Client or producer retries: the same event ids again, at new offsets, soon after.
        duplicates = rng.sample(events, len(events) // 10)
        await produce(h.kafka(), lane.topic, [record(e) for e in duplicates])
        drained_dups = await watch.caught_up(timeout_s=scale.drain_timeout_s)
    after_duplicates = state_hash(await h.profiles(lane))
    await h.stop(first)

    # A new group on the same store reads the whole topic again from offset 0.
    replayer = await h.start(h.service("profile", lane, generation=2))
    async with GroupWatch(h.kafka(), lane.topic, lane.group(2)) as watch:
        replayed = await watch.caught_up(timeout_s=scale.drain_timeout_s)
        total = await watch.end()
    after_replay = state_hash(await h.profiles(lane))
    applied = await metric(
        replayer.url(), h.http, "rapport_profile_events_total", outcome="applied"
    )
    skipped = await metric(
        replayer.url(), h.http, "rapport_profile_events_total", outcome="duplicate"
    )
    row.figures = {
        "events": len(events),
        "duplicates": len(duplicates),
        "replayed": total,
        "applied on replay": int(applied),
        "skipped as duplicate": int(skipped),
        "hash": before[:12],
        "after dups": after_duplicates[:12],
        "after replay": after_replay[:12],
    }
    row.check("drained", None not in (drained, drained_dups, replayed))
    row.check("hash unchanged by duplicates", after_duplicates == before)
    row.check("hash unchanged by replay", after_replay == before)
    row.check("replay applied nothing", applied == 0 and skipped == total)


# ---- 9. erasure, then a replay -------------------------------------------------------------------


MEMORY_MODEL = "encoder:chaos"
MEMORY_DIMENSION = 384
STATEMENTS = ("I'm vegetarian.", "I live in Berlin.", "I have two kids.", "I'm allergic to nuts.")


def chat_messages(rng: random.Random, users: int) -> tuple[list[Record], Counter[str]]:
    """Each user states every one of ``STATEMENTS``, each message with a unit vector, as
    respond records them: what memory turns into facts and remembered messages."""
    now = datetime.now(UTC).replace(microsecond=0)
    per_user: Counter[str] = Counter()
    records = []
    for n in range(users):
        user = f"user-{n}"
        for i, text in enumerate(STATEMENTS):
            values = [rng.gauss(0.0, 1.0) for _ in range(MEMORY_DIMENSION)]
            norm = math.sqrt(sum(v * v for v in values))
            vector = MessageVector.of([v / norm for v in values], MEMORY_MODEL)
            at = now - timedelta(minutes=len(STATEMENTS) - i)
            message = event(user, "chat_message", at, text=text, vector=vector.model_dump())
            records.append(record(message))
            per_user[user] += 1
    return records, per_user


async def erasure_then_replay(h: Harness, rows: list[Row], scale: Scale) -> None:
    row = Row("9", "erase a user, then replay from offset 0", "user not resurrected")
    rows.append(row)
    lane = Lane("erase")
    await h.open_lane(lane)
    rng = random.Random(9)
    records, expected = item_views(rng, scale.erase_events, users=20)
    chats, said = chat_messages(rng, users=5)
    expected += said
    await produce(h.kafka(), lane.topic, records + chats)
    victim = "user-0"
    # Memory on: facts in MongoDB, remembered messages in a vector store of this row's own.
    milvus = await h.start(infra_spec("milvus", h.log_dir))
    infra = {**h.infra, "milvus": milvus.url()}
    vectors = Vectors(milvus.url(), lane)
    first = await h.start(h.service("profile", lane, infra=infra))
    async with GroupWatch(h.kafka(), lane.topic, lane.group()) as watch:
        drained = await watch.caught_up(timeout_s=scale.drain_timeout_s)
    others_before = state_hash(d for d in await h.profiles(lane) if d["user_id"] != victim)
    url = f"{first.url()}/v1/profiles/{victim}"
    async with h.http.get(url, headers=h.auth) as response:
        facts_before = len((await response.json())["facts"])
    vectors_before = await vectors.count(victim)
    others_vectors_before = await vectors.others(victim, said)
    async with h.http.delete(url, headers=h.auth) as response:
        erased_status = response.status
    await h.stop(first)

    replayer = await h.start(h.service("profile", lane, infra=infra, generation=2))
    async with GroupWatch(h.kafka(), lane.topic, lane.group(2)) as watch:
        replayed = await watch.caught_up(timeout_s=scale.drain_timeout_s)
    docs = await h.profiles(lane)
    stored = sum(1 for d in docs if d["user_id"] == victim)
    others_after = state_hash(d for d in docs if d["user_id"] != victim)
    read_status, read = await _read_profile(h, replayer.url(), victim)
    skipped = await metric(replayer.url(), h.http, "rapport_profile_events_total", outcome="erased")
    republished = await _changes_after_tombstone(h, lane, victim)
    vectors_after = await vectors.count(victim)
    others_vectors_after = await vectors.others(victim, said)
    await vectors.close()
    row.figures = {
        "victim events": expected[victim],
        "victim facts / vectors before": f"{facts_before} / {vectors_before}",
        "DELETE": erased_status,
        "stored after replay": stored,
        "GET": read_status,
        "GET known": read.get("known"),
        "facts / vectors after replay": f"{len(read.get('facts', []))} / {vectors_after}",
        "replayed events skipped as erased": int(skipped),
        "changelog after tombstone": republished,
        "others unchanged": others_after == others_before,
    }
    row.check("drained", drained is not None and replayed is not None)
    row.check("memory before: facts and vectors", facts_before > 0 and vectors_before > 0)
    row.check("erased (204)", erased_status == 204)
    row.check("not in MongoDB", stored == 0)
    row.check("GET answers (200)", read_status == 200)
    row.check("GET says unknown", read.get("known") is False)
    row.check("no fact after replay", read.get("facts") == [])
    row.check("no vector after replay", vectors_after == 0)
    row.check("every replayed event of the user skipped", skipped == expected[victim])
    row.check("no changelog record after the tombstone", republished == 0)
    row.check("other users unchanged", others_after == others_before)
    row.check("other users' vectors unchanged", others_vectors_after == others_vectors_before)


async def _read_profile(h: Harness, base_url: str, user: str) -> tuple[int, dict[str, Any]]:
    async with h.http.get(f"{base_url}/v1/profiles/{user}", headers=h.auth) as response:
        return response.status, await response.json() if response.status == 200 else {}


class Vectors:
    """The lane's remembered messages in Milvus, counted by user (a scan, not a search)."""

    def __init__(self, uri: str, lane: Lane) -> None:
        self.client = AsyncMilvusClient(uri=uri)
        self.collection = f"{lane.database}_memory"

    async def count(self, user: str) -> int:
        rows = await self.client.query(
            self.collection,
            filter=f"pid == {literal(profile_id(TENANT, user))}",
            output_fields=["id"],
            consistency_level="Strong",
        )
        return len(rows)

    async def others(self, victim: str, users: Counter[str]) -> int:
        return sum([await self.count(user) for user in users if user != victim])

    async def close(self) -> None:
        await self.client.close()


async def _changes_after_tombstone(h: Harness, lane: Lane, user: str) -> int | None:
    """Changelog records for ``user`` after its tombstone; None if there is no tombstone."""
    changes = await read_topic(h.kafka(), lane.changes, 1)
    keys = {r.key for r in changes if r.value and json.loads(r.value).get("user_id") == user}
    mine = [r for r in changes if r.key in keys]
    tombstones = [r.offset for r in mine if r.value is None]
    if not tombstones:
        return None
    return sum(1 for r in mine if r.offset > tombstones[0])
