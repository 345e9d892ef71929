"""Memory through a vector store or a Redis that goes away, and the races around a forget
and an erasure, against the real servers (Tansu, the Mongo-wire server, Redis, Milvus
Lite). Faults come from a loopback proxy between profile and the store
(:class:`~rapport.devstack.faults.DelayProxy`); a race is held at its point by a hook,
never by a sleep.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from pymilvus import AsyncMilvusClient
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from rapport.common.mongo import Document
from rapport.common.profiles import profile_id
from rapport.common.published import ERASED_VERSION, PublishedProfiles, view_key
from rapport.common.settings import KafkaSettings
from rapport.common.vectors import MessageVector
from rapport.devstack.events import event, publish
from rapport.devstack.faults import DelayProxy
from rapport.devstack.pytest_plugin import serve_app
from rapport.devstack.servers import RunningServer
from rapport.devstack.waiting import eventually
from rapport.profile.adapters.memory import MemoryStore
from rapport.profile.app import create_app as create_profile_app
from rapport.profile.metrics import ProfileMetrics
from rapport.profile.settings import ProfileSettings
from rapport.profile.stream import Processor
from tests.integration import reply_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "rpk_test_acme-durable-012345678901"
SCOPES = ["events:write", "profiles:read", "profiles:write"]
PrivateProfile = Callable[[str, str], Awaitable[ProfileSettings]]


def vector(seed: int) -> dict[str, Any]:
    values = [0.0] * 384
    values[seed % 384] = 1.0
    return MessageVector.of(values, "encoder:1").model_dump()


def host_port(url: str) -> tuple[str, int]:
    host, _, port = url.split("://", 1)[-1].split("/", 1)[0].rpartition(":")
    return host, int(port)


@asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[DelayProxy]:
    proxy = await DelayProxy(*host_port(url)).start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@dataclass
class Profile:
    url: str
    settings: ProfileSettings
    http: aiohttp.ClientSession
    memory: MemoryStore
    mongo: AsyncMongoClient[Document]
    published: PublishedProfiles

    @property
    def waiting(self) -> Any:
        return self.mongo[self.settings.mongo_database]["waiting_writes"]

    async def say(self, user: str, text: str, seed: int) -> None:
        kafka = KafkaSettings(kafka_bootstrap_servers=self.settings.kafka_bootstrap_servers)
        message = event(user, "chat_message", tenant="acme", text=text, vector=vector(seed))
        await publish(kafka, self.settings.events_topic, message)

    async def call(self, method: str, path: str) -> tuple[int, Any]:
        async with self.http.request(method, f"{self.url}{path}") as response:
            return response.status, await response.json(content_type=None)

    async def view(self, user: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/v1/profiles/{user}")
        assert status == 200, body
        return dict(body)

    async def remembered(self, user: str, count: int) -> bool:
        return int((await self.view(user))["remembered_messages"]) >= count

    async def waiting_ops(self, user: str) -> dict[str, str]:
        pid = profile_id("acme", user)
        return {doc["_id"]: doc["op"] async for doc in self.waiting.find({"pid": pid})}

    async def applied(self, count: int) -> bool:
        """Whether the processor has committed ``count`` applied events."""
        return await self.metric(f'rapport_profile_events_total{{outcome="applied"}} {count}.0')

    async def waits(self, user: str) -> bool:
        return bool(await self.waiting_ops(user))

    async def metric(self, line: str) -> bool:
        async with self.http.get(f"{self.url}/metrics") as response:
            return line in await response.text()


@asynccontextmanager
async def profile(
    private_profile: PrivateProfile,
    milvus: RunningServer,
    *,
    milvus_url: str | None = None,
    redis_url: str | None = None,
) -> AsyncIterator[Profile]:
    """profile on the session's servers, reaching Milvus (or Redis) at ``milvus_url``
    (``redis_url``) when given: a proxy; the test reads the real servers directly."""
    base = await private_profile("durable", reply_path.keys_json((KEY, "acme", "acme", SCOPES)))
    settings = base.model_copy(
        update={
            "milvus_uri": milvus_url or milvus.url(),
            "memory_collection": f"test_durable_{uuid.uuid4().hex[:8]}",
            "memory_write_timeout_ms": 1000,
            "memory_retry_s": 0.5,
            "waiting_interval_s": 0.2,
            **({"redis_url": SecretStr(redis_url)} if redis_url else {}),
        }
    )
    client = AsyncMilvusClient(uri=milvus.url())
    memory = MemoryStore(
        client,
        collection=settings.memory_collection,
        dimension=settings.memory_dimension,
        metrics=ProfileMetrics("t"),
    )
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(settings.mongo_url.get_secret_value())
    redis = Redis.from_url(base.redis_url.get_secret_value())
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            serve_app(create_profile_app(settings)) as url,
        ):
            yield Profile(url, settings, http, memory, mongo, PublishedProfiles(redis))
    finally:
        await client.close()
        await mongo.close()
        await redis.aclose()


async def test_messages_wait_in_mongodb_while_milvus_is_away_and_are_written_after(
    private_profile: PrivateProfile, milvus_server: RunningServer
) -> None:
    async with (
        proxy_to(milvus_server.url()) as milvus,
        profile(private_profile, milvus_server, milvus_url=milvus.url) as p,
    ):
        user = f"u-{uuid.uuid4().hex[:8]}"
        pid = profile_id("acme", user)
        await p.say(user, "I'm vegan.", 1)
        await eventually(lambda: p.remembered(user, 1))
        assert await p.memory.texts(pid) == ["I'm vegan."]

        milvus.down()
        said = ["I live in Berlin.", "I have two kids.", "My budget is 50 EUR."]
        for seed, text in enumerate(said, start=2):
            await p.say(user, text, seed)
        await eventually(lambda: p.remembered(user, 4))
        ops = await p.waiting_ops(user)
        assert sorted(ops.values()) == ["upsert"] * 3, ops
        await eventually(lambda: p.metric("rapport_profile_memory_waiting 3.0"))
        assert await p.metric('rapport_profile_memory_total{kind="messages_delayed"} 3.0')

        milvus.up()

        async def written() -> bool:
            return await p.memory.texts(pid) == sorted(["I'm vegan.", *said])

        await eventually(written)
        await eventually(lambda: p.metric("rapport_profile_memory_waiting 0.0"))
        assert await p.waiting_ops(user) == {}


async def test_a_forget_and_an_erasure_reach_messages_that_wait(
    private_profile: PrivateProfile, milvus_server: RunningServer
) -> None:
    async with (
        proxy_to(milvus_server.url()) as milvus,
        profile(private_profile, milvus_server, milvus_url=milvus.url) as p,
    ):
        kept, forgotten, erased = (f"u-{uuid.uuid4().hex[:8]}" for _ in range(3))
        await p.say(erased, "I'm vegan.", 1)
        await eventually(lambda: p.remembered(erased, 1))
        assert len(await p.memory.texts(profile_id("acme", erased))) == 1

        milvus.down()
        await p.say(kept, "I live in Berlin.", 2)
        await p.say(forgotten, "I have two kids.", 3)
        await p.say(erased, "My budget is 50 EUR.", 4)
        for user in (kept, forgotten, erased):
            await eventually(partial(p.waits, user))

        recalled = await p.view(forgotten)
        assert recalled["remembered_messages"] == 1
        (memory_id,) = await p.waiting_ops(forgotten)
        status, _ = await p.call("DELETE", f"/v1/profiles/{forgotten}/memory/{memory_id}")
        assert status == 204
        assert await p.waiting_ops(forgotten) == {memory_id: "delete"}
        status, _ = await p.call("DELETE", f"/v1/profiles/{erased}")
        assert status == 204
        assert list((await p.waiting_ops(erased)).values()) == ["erase"]

        milvus.up()

        async def settled() -> bool:
            return (
                await p.memory.texts(profile_id("acme", kept)) == ["I live in Berlin."]
                and await p.waiting.count_documents({}) == 0
            )

        await eventually(settled)
        assert await p.memory.texts(profile_id("acme", forgotten)) == []
        assert await p.memory.texts(profile_id("acme", erased)) == []


async def test_a_forget_and_an_erasure_that_miss_redis_reach_it_when_it_answers(
    private_profile: PrivateProfile, milvus_server: RunningServer, redis_server: RunningServer
) -> None:
    """Redis away for the forget's or the erasure's own write: the cache must not keep
    serving what the user removed once Redis answers again."""
    async with (
        proxy_to(redis_server.url()) as redis,
        profile(private_profile, milvus_server, redis_url=f"redis://{redis.address}") as p,
    ):
        forgetful, erased = f"u-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
        for user in (forgetful, erased):
            await p.say(user, "I'm vegan.", 1)
            await eventually(partial(p.remembered, user, 1))

        async def published_facts(user: str) -> list[str] | None:
            view = (await p.published.read("acme", user)).view
            return None if view is None else [f.value for f in view.view.facts]

        await eventually(lambda: _equals(published_facts(forgetful), ["vegan"]))
        await eventually(lambda: _equals(published_facts(erased), ["vegan"]))
        (fact,) = (await p.view(forgetful))["facts"]

        redis.down()
        status, _ = await p.call("DELETE", f"/v1/profiles/{forgetful}/memory/{fact['memory_id']}")
        assert status == 204
        status, _ = await p.call("DELETE", f"/v1/profiles/{erased}")
        assert status == 204
        # Until Redis answers, the stale view is where it was (not reachable by anyone).
        assert await published_facts(forgetful) == ["vegan"]
        redis.up()

        await eventually(lambda: _equals(published_facts(forgetful), []), timeout_s=10)

        async def tombstone() -> bool:
            version = await p.published.redis.hget(_view_key(erased), "version")
            return version is not None and int(version) == ERASED_VERSION

        await eventually(tombstone, timeout_s=10)


def _view_key(user: str) -> bytes:
    return view_key(profile_id("acme", user))


async def _equals(found: Awaitable[Any], expected: Any) -> bool:
    return bool(await found == expected)


class HeldAtPublish:
    """A hook on the processor's Redis refresh, after its batch is saved in MongoDB: armed,
    the batch waits there until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        original = Processor._publish_views

        async def held(processor: Processor, saved: Any, recall: Any) -> None:
            if self.armed:
                self.reached.set()
                await self.release.wait()
            await original(processor, saved, recall)

        monkeypatch.setattr(Processor, "_publish_views", held)


async def test_a_batch_in_flight_never_brings_back_a_forgotten_fact_or_an_erased_user(
    private_profile: PrivateProfile, milvus_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: the processor saved a profile that still holds the fact (or the user),
    then a forget (an erasure) runs and publishes, then the processor's refresh lands.
    The refresh is versioned, so it must lose."""
    hook = HeldAtPublish(monkeypatch)
    async with profile(private_profile, milvus_server) as p:
        forgetful, erased = f"u-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
        for user in (forgetful, erased):
            await p.say(user, "I'm vegan.", 1)
            await eventually(partial(p.remembered, user, 1))

        for applied, user in enumerate((forgetful, erased), start=3):
            hook.armed, hook.reached, hook.release = True, asyncio.Event(), asyncio.Event()
            await p.say(user, "I live in Berlin.", 2)
            await asyncio.wait_for(hook.reached.wait(), 30)  # saved, not yet published
            hook.armed = False
            if user == forgetful:
                vegan = next(f for f in (await p.view(user))["facts"] if f["value"] == "vegan")
                status, _ = await p.call(
                    "DELETE", f"/v1/profiles/{user}/memory/{vegan['memory_id']}"
                )
            else:
                status, _ = await p.call("DELETE", f"/v1/profiles/{user}")
            assert status == 204
            hook.release.set()
            await eventually(partial(p.applied, applied))

        view = (await p.published.read("acme", forgetful)).view
        assert view is not None
        assert "vegan" not in {f.value for f in view.view.facts}
        assert "Berlin" in {f.value for f in view.view.facts}, "the batch's own change is in"
        version = await p.published.redis.hget(_view_key(erased), "version")
        assert version is not None
        assert int(version) == ERASED_VERSION


async def test_a_mongodb_that_does_not_answer_is_a_503_to_retry_not_a_500(
    private_profile: PrivateProfile, mongo_server: RunningServer
) -> None:
    base = await private_profile("mongo-away", reply_path.keys_json((KEY, "acme", "acme", SCOPES)))
    async with proxy_to(mongo_server.url()) as mongo:
        proxied = mongo_server.url().replace(
            ":".join(map(str, host_port(mongo_server.url()))), mongo.address
        )
        settings = base.model_copy(
            update={"mongo_url": SecretStr(proxied), "mongo_timeout_ms": 500, "consume": False}
        )
        headers = {"Authorization": f"Bearer {KEY}"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            serve_app(create_profile_app(settings)) as url,
        ):
            mongo.blackhole()
            async with http.get(f"{url}/v1/profiles/u-{uuid.uuid4().hex[:8]}") as response:
                assert response.status == 503, await response.text()
                assert response.headers["Retry-After"] == "1"
                assert (await response.json())["type"].endswith("store-unavailable")
            mongo.up()
