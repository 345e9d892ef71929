"""Issue 29's three messages, tried as a user would, through the real profile processor
(Kafka -> profile -> MongoDB, Redis, Milvus Lite): what memory keeps holds no password,
no street address, no postcode, and the social security number under its own label; the
city stays a location fact."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from pymilvus import AsyncMilvusClient

from rapport.common.cache import create_redis
from rapport.common.profiles import profile_id
from rapport.common.published import PublishedProfiles
from rapport.common.settings import KafkaSettings
from rapport.common.vectors import MessageVector
from rapport.devstack.events import event, publish
from rapport.devstack.pytest_plugin import serve_app
from rapport.devstack.servers import RunningServer
from rapport.devstack.waiting import eventually
from rapport.profile.adapters.memory import MemoryStore
from rapport.profile.app import create_app as create_profile_app
from rapport.profile.metrics import ProfileMetrics
from rapport.profile.settings import ProfileSettings
from tests.integration import reply_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "rpk_test_acme-redaction-012345678901"
MESSAGES = [
    "my account number is 12345678 and my password is hunter2",
    "I live at 221B Baker Street, London NW1 6XE",
    "my social security number is 078-05-1120, keep it safe",
]
LEAKS = ("12345678", "hunter2", "221B", "Baker Street", "NW1 6XE", "078-05-1120")


async def test_the_issues_three_messages_are_stored_redacted(
    private_profile: Callable[[str, str], Awaitable[ProfileSettings]],
    milvus_server: RunningServer,
) -> None:
    keys = reply_path.keys_json((KEY, "acme", "acme", ["profiles:read", "events:write"]))
    base = await private_profile("redaction", keys)
    settings = base.model_copy(
        update={
            "milvus_uri": milvus_server.url(),
            "memory_collection": f"test_redaction_{uuid.uuid4().hex[:8]}",
        }
    )
    kafka = KafkaSettings(kafka_bootstrap_servers=settings.kafka_bootstrap_servers)
    user = f"u-{uuid.uuid4().hex[:8]}"
    pid = profile_id("acme", user)
    events = [
        event(
            user,
            "chat_message",
            tenant="acme",
            text=text,
            vector=MessageVector.of(
                [1.0 if j == i else 0.0 for j in range(settings.memory_dimension)], "encoder:1"
            ).model_dump(),
        )
        for i, text in enumerate(MESSAGES)
    ]
    milvus = AsyncMilvusClient(uri=milvus_server.url())
    memory = MemoryStore(
        milvus,
        collection=settings.memory_collection,
        dimension=settings.memory_dimension,
        metrics=ProfileMetrics("t"),
    )
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            serve_app(create_profile_app(settings)) as url,
        ):
            await publish(kafka, settings.events_topic, *events)

            async def profile() -> dict[str, Any]:
                async with http.get(f"{url}/v1/profiles/{user}") as response:
                    assert response.status == 200
                    return dict(await response.json())

            async def all_remembered() -> bool:
                return bool((await profile())["remembered_messages"] == len(MESSAGES))

            await eventually(all_remembered)
            texts = await memory.texts(pid)
            assert sorted(texts) == sorted(
                [
                    "my account number is [account] and my password is [secret]",
                    "I live at [address], London [postcode]",
                    "my social security number is [ssn], keep it safe",
                ]
            )
            view = await profile()
            facts = {(f["type"], f["value"]) for f in view["facts"]}
            assert ("location", "London") in facts  # the city stays, as a location

            # What respond reads: the published view and recall set in Redis.
            redis = create_redis(settings, client_name="rapport-tests")
            try:
                found = await PublishedProfiles(redis).read("acme", user, recall=True)
            finally:
                await redis.aclose()
    finally:
        await milvus.drop_collection(settings.memory_collection)
        await milvus.close()
    assert found.recall is not None
    assert sorted(entry.text for entry in found.recall) == sorted(texts)
    stored = [*texts, str(view), found.view.model_dump_json() if found.view else ""]
    for leak in LEAKS:
        assert not any(leak in text for text in stored), leak
