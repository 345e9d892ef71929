"""The re-redaction job (``rapport-profile redact-again``) against real Milvus Lite,
MongoDB and Redis: rows stored by the old rules are redacted again in Milvus, in the
queue of messages waiting for Milvus and in the facts, Redis is republished, and a second
run changes nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from pymilvus import AsyncMilvusClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from rapport.common.cache import create_redis
from rapport.common.mongo import Document, create_mongo_client
from rapport.common.profiles import profile_id
from rapport.common.published import PublishedProfiles
from rapport.common.settings import MongoSettings, RedisSettings
from rapport.devstack.servers import RunningServer
from rapport.profile.adapters.memory import MemoryRow, MemoryStore
from rapport.profile.adapters.published import Publisher
from rapport.profile.adapters.store import ProfileStore
from rapport.profile.adapters.waiting import WaitingWrites
from rapport.profile.domain.memory import KnownFact, Remembered
from rapport.profile.domain.state import Profile, Rules
from rapport.profile.metrics import ProfileMetrics
from rapport.profile.redact_again import Counts, Job, redact_again

pytestmark = pytest.mark.integration

DIMENSION = 8
NOW = datetime.now(UTC).replace(microsecond=0)
RULES = Rules()
# What the rules before issue 29 stored for three messages (their output, verbatim).
OLD = {
    "secret": "my account number is [account] and my password is hunter2",
    "address": "I live at 221B Baker Street, London NW1 6XE",
    "ssn": "my social security number is [phone]",  # 078-05-1120, taken for a phone
    "token": "my key is sk-proj-4fGh7Jk2LmN9pQr3StU6vWx8Yz1AbC5dEf0GhI2jKl4MnO6",
}
CLEAN = ["I'm vegan", "any ideas for dinner?", "budget is 50 euros", "call me [phone]"] * 5
LEAKS = ("hunter2", "221B Baker Street", "NW1 6XE", "sk-proj-")


@dataclass
class Stores:
    db: AsyncDatabase[Document]
    redis: Redis
    milvus: AsyncMilvusClient
    memory: MemoryStore
    job: Job


@pytest_asyncio.fixture
async def stores(
    mongo_settings: MongoSettings, redis_settings: RedisSettings, milvus_server: RunningServer
) -> AsyncIterator[Stores]:
    mongo = create_mongo_client(mongo_settings, app_name="rapport-tests")
    redis = create_redis(redis_settings, client_name="rapport-tests")
    milvus = AsyncMilvusClient(uri=milvus_server.url())
    db = mongo[f"redact_{uuid.uuid4().hex[:8]}"]
    memory = MemoryStore(
        milvus,
        collection=f"test_redact_{uuid.uuid4().hex[:8]}",
        dimension=DIMENSION,
        metrics=ProfileMetrics("t"),
    )
    await asyncio.wait_for(memory.open_until_ready(retry_s=0.5), 120)  # as profile opens it
    job = Job(
        store=ProfileStore(db),
        publisher=Publisher(redis, RULES, ttl_s=600),
        memory=memory,
        waiting=WaitingWrites(db),
        page=3,  # several pages of every store
    )
    try:
        yield Stores(db, redis, milvus, memory, job)
    finally:
        await milvus.drop_collection(memory.collection)
        await mongo.drop_database(db.name)
        await milvus.close()
        await redis.aclose()
        await mongo.close()


def vector(seed: int) -> list[float]:
    return [float((seed * 7 + i) % 5) / 4 for i in range(DIMENSION)]


def row(pid: str, n: int, text: str) -> MemoryRow:
    return MemoryRow(f"m-{uuid.uuid4()}", pid, text, NOW - timedelta(minutes=n), "enc:1", vector(n))


async def seed(stores: Stores) -> tuple[list[str], dict[str, MemoryRow]]:
    """Three users as the old code stored them: messages in Milvus, one waiting for it,
    facts and the published view and recall set in Redis."""
    users = [f"u-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    pids = [profile_id("acme", user) for user in users]
    rows = {
        "secret": row(pids[0], 1, OLD["secret"]),
        "address": row(pids[0], 2, OLD["address"]),
        "ssn": row(pids[1], 3, OLD["ssn"]),
        "token": row(pids[2], 4, OLD["token"]),
    }
    clean = [row(pids[i % 3], 10 + i, text) for i, text in enumerate(CLEAN)]
    await stores.memory.write([*rows.values(), *clean])
    waiting = row(pids[1], 20, "my pin is 4821")
    await stores.job.waiting.hold([waiting], {})
    rows["waiting"] = waiting
    for user, pid in zip(users, pids, strict=True):
        mine = [r for r in [*rows.values(), *clean] if r.pid == pid]
        facts = {"diet": KnownFact(type="diet", value="vegan", event_id="e-1", at=NOW)}
        if pid == pids[0]:  # a value the old rules let through
            facts["location"] = KnownFact(type="location", value="NW1 6XE", event_id="e-2", at=NOW)
        profile = Profile(
            tenant="acme",
            user_id=user,
            version=3,
            facts=facts,
            remembered=[Remembered(memory_id=r.memory_id, at=r.at) for r in mine],
        )
        assert not await stores.job.store.save({pid: (-1, profile)})
        stored = await stores.memory.rows_of(pid)
        await stores.job.publisher.replace(pid, profile, NOW, [r.recall_entry() for r in stored])
    return users, rows


async def all_rows(memory: MemoryStore) -> list[MemoryRow]:
    return [r async for page in memory.pages(100) for r in page]


async def published_texts(redis: Redis, user: str) -> tuple[str, list[str]]:
    found = await PublishedProfiles(redis).read("acme", user, recall=True)
    assert found.view is not None
    assert found.recall is not None, "the recall set should be complete"
    return found.view.model_dump_json(), sorted(e.text for e in found.recall)


async def test_stored_secrets_are_redacted_again_and_a_second_run_changes_nothing(
    stores: Stores,
) -> None:
    users, rows = await seed(stores)
    before = {r.memory_id: r for r in await all_rows(stores.memory)}
    assert any("hunter2" in t for t in (await published_texts(stores.redis, users[0]))[1])

    dry = await redact_again(dataclasses.replace(stores.job, dry_run=True))
    assert (dry.messages_changed, dry.waiting_changed, dry.facts_dropped) == (3, 1, 1), dry
    assert {r.memory_id: r.text for r in await all_rows(stores.memory)} == {
        k: r.text for k, r in before.items()
    }  # a dry run writes nothing

    first = await redact_again(stores.job)
    assert first == Counts(
        messages_scanned=24,
        messages_changed=3,
        waiting_scanned=1,
        waiting_changed=1,
        profiles_scanned=3,
        profiles_changed=1,
        facts_dropped=1,
        users_republished=3,
        users_not_republished=0,
    )
    after = {r.memory_id: r for r in await all_rows(stores.memory)}
    assert set(after) == set(before)
    by_user = [await stores.memory.ids_of(profile_id("acme", user)) for user in users]
    assert sorted(i for ids in by_user for i in ids) == sorted(after)  # paging missed none
    assert after[rows["secret"].memory_id].text == (
        "my account number is [account] and my password is [secret]"
    )
    assert after[rows["address"].memory_id].text == "I live at [address], London [postcode]"
    # already hidden, under the wrong label: the number is gone, so is the way to relabel it
    assert after[rows["ssn"].memory_id].text == "my social security number is [phone]"
    assert after[rows["token"].memory_id].text == "my key is [token]"
    for memory_id, stored in after.items():
        assert not any(leak in stored.text for leak in LEAKS), stored.text
        old = before[memory_id]
        # same row otherwise: the vector (computed from the original wording) is kept
        assert (stored.pid, stored.at, stored.encoder) == (old.pid, old.at, old.encoder)
        assert stored.vector == pytest.approx(old.vector)
    waiting = await stores.job.waiting.collection.find_one({"_id": rows["waiting"].memory_id})
    assert waiting is not None
    assert waiting["text"] == "my pin is [secret]"

    profile = (await stores.job.store.load([profile_id("acme", users[0])]))[
        profile_id("acme", users[0])
    ]
    assert set(profile.facts) == {"diet"}
    assert profile.version == 4  # compare-and-set, as every writer
    for user in users:
        view, recalled = await published_texts(stores.redis, user)
        assert not any(leak in text for text in [view, *recalled] for leak in LEAKS), recalled
    assert "[secret]" in " ".join((await published_texts(stores.redis, users[0]))[1])
    # the waiting message is in the recall set too, as profile's own republish puts it
    assert "my pin is [secret]" in (await published_texts(stores.redis, users[1]))[1]

    second = await redact_again(stores.job)
    assert second == Counts(messages_scanned=24, waiting_scanned=1, profiles_scanned=3)


def test_the_command_runs_with_the_services_settings(
    mongo_settings: MongoSettings, redis_settings: RedisSettings, milvus_server: RunningServer
) -> None:
    """``python -m rapport.profile.redact_again`` as an operator runs it: settings from
    the environment, counts as JSON (an empty database: nothing to change)."""
    env = os.environ | {
        "RAPPORT_MONGO_URL": mongo_settings.mongo_url.get_secret_value(),
        "RAPPORT_MONGO_DATABASE": f"redact_cli_{uuid.uuid4().hex[:8]}",
        "RAPPORT_REDIS_URL": redis_settings.redis_url.get_secret_value(),
        "RAPPORT_PROFILE_MILVUS_URI": milvus_server.url(),
        "RAPPORT_PROFILE_MEMORY_COLLECTION": f"absent_{uuid.uuid4().hex[:8]}",
        "RAPPORT_PROFILE_LOG_LEVEL": "WARNING",
        "OTEL_SDK_DISABLED": "true",
    }
    done = subprocess.run(
        [sys.executable, "-m", "rapport.profile.redact_again", "--page", "50"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts == {"dry_run": False, **Counts().as_dict()}
