"""The profile API over real HTTP, with the stream processor running in the same app."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from rapport.common.cache import create_redis
from rapport.common.kafka import connection_kwargs
from rapport.common.mongo import create_mongo_client
from rapport.common.profiles import profile_id
from rapport.common.published import (
    ERASED_VERSION,
    VERSION_FIELD,
    PublishedProfiles,
    recall_key,
    view_key,
)
from rapport.common.settings import KafkaSettings
from rapport.devstack import processes, servers
from rapport.devstack.events import event, publish, wait_committed
from rapport.devstack.processes import free_port
from rapport.devstack.pytest_plugin import serve_app
from rapport.devstack.waiting import eventually
from rapport.profile.adapters.cache import trending_key
from rapport.profile.adapters.store import ProfileStore
from rapport.profile.app import create_app
from rapport.profile.settings import ProfileSettings
from tests.integration import reply_path

pytestmark = pytest.mark.integration

READ_WRITE = "rpk_test_profiles-acme-0123456789abc"
READ_ONLY = "rpk_test_reader-acme-0123456789abcde"
GLOBEX = "rpk_test_reader-globex-0123456789abc"
PAUSED = "rpk_test_reader-paused-0123456789abc"  # a tenant whose traffic stopped


def keys_json() -> str:
    return reply_path.keys_json(
        (READ_WRITE, "rw", "acme", ["profiles:read", "profiles:write"]),
        (READ_ONLY, "ro", "acme", ["profiles:read"]),
        (GLOBEX, "gx", "globex", ["profiles:read"]),
        (PAUSED, "pa", "paused", ["profiles:read"]),
    )


@dataclass
class Api:
    url: str
    settings: ProfileSettings
    kafka: KafkaSettings
    http: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, key: str = READ_WRITE, body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"}
        async with self.http.request(
            method, f"{self.url}{path}", json=body, headers=headers
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def send(self, user: str, type_: str, **fields: Any) -> str:
        sent = event(user, type_, **fields)
        await publish(self.kafka, self.settings.events_topic, sent)
        return str(sent["event_id"])


@pytest_asyncio.fixture(scope="module")
async def api(
    private_profile: Callable[[str, str], Awaitable[ProfileSettings]],
) -> AsyncIterator[Api]:
    settings = await private_profile("profile_api", keys_json())
    kafka = KafkaSettings(kafka_bootstrap_servers=settings.kafka_bootstrap_servers)
    async with serve_app(create_app(settings)) as url, aiohttp.ClientSession() as http:
        yield Api(url, settings, kafka, http)


async def test_unknown_user_gets_a_cold_start_default(api: Api) -> None:
    status, body = await api.call("GET", "/v1/profiles/nobody")
    assert status == 200
    assert body["known"] is False
    assert body["version"] == 0
    assert body["source"] == "default"
    assert body["consent"]["personalization"] is True


async def test_events_become_the_profile_read_from_cache_then_store(api: Api) -> None:
    user = f"u-{uuid.uuid4().hex[:6]}"
    await api.send(user, "item_view", item_id="m-1", category="drama")
    await api.send(user, "purchase", item_id="m-2", category="drama", value=120.0)

    async def applied() -> bool:
        return bool((await api.call("GET", f"/v1/profiles/{user}"))[1]["version"] == 2)

    await eventually(applied)
    status, body = await api.call("GET", f"/v1/profiles/{user}")
    assert status == 200
    assert body["known"] is True
    assert body["source"] == "cache"
    assert body["counters"] == {"item_view": 1, "purchase": 1}
    assert body["recent_items"][0] in {"m-1", "m-2"}
    assert set(body["segments"]) == {"buyer", "high_value"}
    assert body["affinities"]["drama"] > 0

    async with api.http.get(f"{api.url}/metrics") as response:
        metrics = await response.text()
    assert 'rapport_profile_events_total{outcome="applied"}' in metrics
    assert "rapport_profile_freshness_seconds_count" in metrics
    assert 'rapport_profile_consumer_lag{partition="' in metrics
    assert 'rapport_profile_store_duration_seconds_count{operation="mongo_bulk_write"}' in metrics

    # Another tenant's key never reaches this user.
    _, other = await api.call("GET", f"/v1/profiles/{user}", key=GLOBEX)
    assert other["known"] is False

    # Without Redis the same read comes from MongoDB, without an error.
    dead = f"redis://127.0.0.1:{free_port()}/0"
    no_redis = api.settings.model_copy(update={"redis_url": SecretStr(dead), "consume": False})
    async with serve_app(create_app(no_redis)) as url:
        status, body = await Api(url, no_redis, api.kafka, api.http).call(
            "GET", f"/v1/profiles/{user}"
        )
    assert status == 200
    assert (body["known"], body["source"], body["version"]) == (True, "store", 2)


async def test_after_opt_out_events_are_not_applied(api: Api) -> None:
    user = f"u-{uuid.uuid4().hex[:6]}"
    await api.send(user, "item_view", item_id="m-1")
    status, accepted = await api.call(
        "PUT", f"/v1/profiles/{user}/consent", body={"personalization": False}
    )
    assert status == 202
    assert accepted["personalization"] is False

    async def opted_out() -> bool:
        body = (await api.call("GET", f"/v1/profiles/{user}"))[1]
        return body["known"] and body["consent"]["personalization"] is False

    await eventually(opted_out)
    late = await api.send(user, "item_view", item_id="m-2")
    pid = profile_id("acme", user)
    mongo = create_mongo_client(api.settings, app_name="t")
    try:
        store = ProfileStore(mongo[api.settings.mongo_database])

        async def seen() -> bool:
            stored = (await store.load([pid])).get(pid)
            return stored is not None and late in stored.recent_event_ids

        await eventually(seen)
        stored = (await store.load([pid]))[pid]
    finally:
        await mongo.close()
    assert stored.counters == {"item_view": 1}, "the late view was not applied"
    # What is stored stays (until an erasure) but is not served, nor published.
    _, body = await api.call("GET", f"/v1/profiles/{user}")
    assert body["withheld"] is True
    assert (body["counters"], body["recent_items"], body["affinities"]) == ({}, [], {})
    assert body["version"] == stored.version
    redis = create_redis(api.settings, client_name="t")
    try:
        published = (await PublishedProfiles(redis).read("acme", user, recall=True)).view
    finally:
        await redis.aclose()
    assert published is not None
    assert published.view.withheld is True
    assert (published.view.counters, published.view.facts) == ({}, [])

    consent_path = f"/v1/profiles/{user}/consent"
    assert (await api.call("PUT", consent_path, READ_ONLY, {"personalization": True}))[0] == 403
    assert (await api.call("PUT", consent_path, body={"x": 1}))[0] == 422


async def test_erasure_removes_the_user_everywhere(api: Api) -> None:
    user = f"u-{uuid.uuid4().hex[:6]}"
    await api.send(user, "search", query="boots")

    async def known() -> bool:
        return bool((await api.call("GET", f"/v1/profiles/{user}"))[1]["known"])

    await eventually(known)
    assert (await api.call("DELETE", f"/v1/profiles/{user}", READ_ONLY))[0] == 403
    status, _ = await api.call("DELETE", f"/v1/profiles/{user}")
    assert status == 204
    _, body = await api.call("GET", f"/v1/profiles/{user}")
    assert body["known"] is False

    pid = profile_id("acme", user)
    redis = create_redis(api.settings, client_name="t")
    try:
        # Nothing published: a tombstone no batch in flight can overwrite, no recall set.
        assert (await PublishedProfiles(redis).read("acme", user, recall=True)).view is None
        assert await redis.hget(view_key(pid), VERSION_FIELD) == str(ERASED_VERSION).encode()
        assert not await redis.exists(recall_key(pid))
    finally:
        await redis.aclose()
    consumer = AIOKafkaConsumer(**connection_kwargs(api.kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(api.settings.changes_topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records = []
        while await consumer.position(tp) < end:
            records += (await consumer.getmany(tp, timeout_ms=200)).get(tp, [])
    finally:
        await consumer.stop()
    mine = [r for r in records if r.key == pid.encode()]
    assert mine[-1].value is None, "the last changelog record of an erased user is a tombstone"

    # An event of the erased user's past, arriving after the erasure, does not resurrect them.
    before_erasure = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    await api.send(user, "search", query="boots again", received_at=before_erasure)
    await caught_up(api)
    assert (await api.call("GET", f"/v1/profiles/{user}"))[1]["known"] is False


async def caught_up(api: Api) -> None:
    """Wait until the app's consumer group has committed everything on the events topic."""
    await wait_committed(api.kafka, api.settings.group_id, api.settings.events_topic, 2)


async def test_reads_survive_redis_being_killed(api: Api, tmp_path: Path) -> None:
    """A private Redis behind a second app; kill it mid-traffic: every read still answers."""
    user = f"u-{uuid.uuid4().hex[:6]}"
    await api.send(user, "item_view", item_id="m-1")

    async def known() -> bool:
        return bool((await api.call("GET", f"/v1/profiles/{user}"))[1]["known"])

    await eventually(known)
    redis = await asyncio.to_thread(
        servers.start, servers.redis_spec(free_port(), tmp_path), tmp_path
    )
    settings = api.settings.model_copy(
        update={"redis_url": SecretStr(redis.url()), "consume": False, "redis_timeout_ms": 100}
    )
    try:
        async with serve_app(create_app(settings)) as url:
            reader = Api(url, settings, api.kafka, api.http)
            statuses = [(await reader.call("GET", f"/v1/profiles/{user}"))[0] for _ in range(20)]
            _, cached = await reader.call("GET", f"/v1/profiles/{user}")
            assert cached["source"] == "cache"
            await asyncio.to_thread(processes.stop, redis.handle)
            after = [await reader.call("GET", f"/v1/profiles/{user}") for _ in range(50)]
    finally:
        await asyncio.to_thread(processes.stop, redis.handle)
    assert statuses == [200] * 20
    assert [status for status, _ in after] == [200] * 50
    assert {body["source"] for _, body in after} == {"store"}
    assert all(body["known"] for _, body in after)


async def test_trending_overall_and_by_category_and_the_cold_start_default(api: Api) -> None:
    suffix = uuid.uuid4().hex[:6]
    category = f"cat-{suffix}"
    hit, miss = f"hit-{suffix}", f"miss-{suffix}"
    users = [f"t-{suffix}-{i}" for i in range(4)]
    for user in users[:3]:
        await api.send(user, "item_view", item_id=hit, category=category)
    await api.send(users[3], "item_view", item_id=miss, category=category)

    async def applied() -> bool:
        bodies = [(await api.call("GET", f"/v1/profiles/{u}"))[1] for u in users]
        return all(body["known"] for body in bodies)

    await eventually(applied)
    redis = create_redis(api.settings, client_name="t")
    try:
        await redis.delete(trending_key("acme"))  # a read before this test may have cached it
    finally:
        await redis.aclose()
    status, body = await api.call("GET", f"/v1/trending?category={category}")
    assert status == 200
    assert [item["item_id"] for item in body["items"]] == [hit, miss]
    assert body["items"][0]["score"] == pytest.approx(3.0, rel=0.01)
    assert category in {c["category"] for c in body["categories"]}

    _, default = await api.call("GET", f"/v1/profiles/stranger-{suffix}")
    assert default["known"] is False
    assert hit in default["popular_items"]
    assert max(default["affinities"].values()) == 1.0
    assert (await api.call("GET", "/v1/trending?limit=0"))[0] == 422

    # A user who opts out stops counting: their views are theirs, not the crowd's.
    await api.call("PUT", f"/v1/profiles/{users[0]}/consent", body={"personalization": False})

    async def opted_out() -> bool:
        return bool((await api.call("GET", f"/v1/profiles/{users[0]}"))[1]["withheld"])

    await eventually(opted_out)
    redis = create_redis(api.settings, client_name="t")
    try:
        await redis.delete(trending_key("acme"))
    finally:
        await redis.aclose()
    _, body = await api.call("GET", f"/v1/trending?category={category}")
    assert body["items"][0]["item_id"] == hit
    assert body["items"][0]["score"] == pytest.approx(2.0, rel=0.01)


class MovableClock:
    """Now, or ``offset`` from now: the app reads as if that much time had passed."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class PausedTenant:
    reader: Api  # a second app on the same store, with a movable clock
    clock: MovableClock


@pytest_asyncio.fixture(scope="module")
async def paused(api: Api) -> AsyncIterator[PausedTenant]:
    """Tenant ``paused``: three users viewed ``hit`` (drama), one viewed ``miss`` (comedy),
    then nothing more."""
    views = [("hit", "drama")] * 3 + [("miss", "comedy")]
    await publish(
        api.kafka,
        api.settings.events_topic,
        *[
            event(f"p-{i}", "item_view", tenant="paused", item_id=item, category=category)
            for i, (item, category) in enumerate(views)
        ],
    )

    async def applied() -> bool:
        reads = [await api.call("GET", f"/v1/profiles/p-{i}", PAUSED) for i in range(len(views))]
        return all(status == 200 and body["known"] for status, body in reads)

    await eventually(applied)
    clock = MovableClock()
    settings = api.settings.model_copy(update={"consume": False})
    async with serve_app(create_app(settings, clock=clock)) as url:
        yield PausedTenant(Api(url, settings, api.kafka, api.http), clock)


@pytest.mark.parametrize("days", [60, 365])
@pytest.mark.parametrize("pool", ["cached", "cold"])
async def test_reads_after_a_long_pause_keep_order_and_never_fail(
    paused: PausedTenant, pool: str, days: int
) -> None:
    """Trending (24 h half-life) is 2^-60 and 2^-365 of what it was; affinities (7 days)
    2^-8.6 and 2^-52. Read from a pool cached before the pause, and from one computed after."""
    reader, key = paused.reader, trending_key("paused")
    redis = create_redis(reader.settings, client_name="t")
    try:
        paused.clock.offset = timedelta(0)
        await redis.delete(key)
        if pool == "cached":
            assert (await reader.call("GET", "/v1/trending", PAUSED))[0] == 200
            cached = await redis.get(key)
            assert cached is not None
            await redis.expire(key, 600)  # a recompute would write it again with a 30 s TTL
        paused.clock.offset = timedelta(days=days)

        status, default = await reader.call("GET", "/v1/profiles/newcomer", PAUSED)
        assert status == 200, default
        assert default["known"] is False
        assert default["affinities"] == {"drama": 1.0, "comedy": pytest.approx(1 / 3, rel=1e-5)}
        assert default["popular_items"] == ["hit", "miss"]

        status, popular = await reader.call("GET", "/v1/trending", PAUSED)
        assert status == 200, popular
        left = 0.5**days
        assert [(i["item_id"], i["score"]) for i in popular["items"]] == [
            ("hit", pytest.approx(3 * left, rel=1e-3, abs=0)),
            ("miss", pytest.approx(left, rel=1e-3, abs=0)),
        ]
        assert [c["category"] for c in popular["categories"]] == ["drama", "comedy"]

        status, known = await reader.call("GET", "/v1/profiles/p-0", PAUSED)
        assert status == 200, known
        assert known["affinities"] == {"drama": pytest.approx(0.5 ** (days / 7), rel=1e-3, abs=0)}
        if pool == "cached":
            assert await redis.ttl(key) > 30, "the reads used the pool cached before the pause"
            assert await redis.get(key) == cached
    finally:
        paused.clock.offset = timedelta(0)
        await redis.aclose()
