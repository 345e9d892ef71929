"""The whole mesh as `make up` runs it: every server and service a real process, found
through stack.json, with the dev key. Traces arrive over OTLP/HTTP at the tier's collector
(conftest.py; protobuf from our services, JSON from Triton), so the spans checked are the
ones an SRE would see in Jaeger."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from rapport.devstack.waiting import eventually, wait_until
from tests.e2e.mesh import Collector, Mesh

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STAR_WARS = ["50", "172", "181"]  # Star Wars, The Empire Strikes Back, Return of the Jedi


async def test_one_reply_is_two_stages_and_one_trace(mesh: Mesh, collector: Collector) -> None:
    """The reply's call graph, from its trace: respond reads the published view (Redis)
    beside recommend (one Triton call), then searches knowledge's index (Milvus). Neither
    the profile service nor the knowledge service is on the path."""
    user = f"traced-{uuid.uuid4().hex[:6]}"
    await mesh.events(user, {"type": "item_view", "item_id": "50", "category": "Sci-Fi"})

    async def published() -> bool:
        return bool((await mesh.profile(user))["source"] == "cache")

    await eventually(published)
    body = await mesh.respond(user)
    assert body["personalization"]["degraded"] == []
    trace_id = body["trace_id"]

    def found() -> dict[str, bool]:
        respond = collector.names_in(trace_id, "rapport-respond")
        recommend = collector.names_in(trace_id, "rapport-recommend")
        return {
            "respond server span": any("/v1/respond" in n for n in respond),
            "respond reads Redis": any("HMGET" in n or "HGETALL" in n for n in respond),
            "respond searches Milvus": any("Search" in n for n in respond),
            "recommend server span": any("/v1/recommendations" in n for n in recommend),
            "recommend reads Redis": any("HGET" in n for n in recommend),
            # ranking, the message's vector, intent and sentiment in one call, which
            # Triton runs as one model (its four inside)
            "one Triton call": sum("ModelInfer" in n for n in recommend) == 1,
            "the reply model": "reply" in collector.triton_names(trace_id),
        }

    # Each process exports its spans in batches: wait for every span asserted on, not
    # only for each service's first batch.
    async def complete() -> bool:
        return all(found().values())

    await wait_until(complete, timeout_s=30)
    assert all(found().values()), (found(), collector.report(trace_id))
    names = collector.trace(trace_id)
    # No hop through profile's or knowledge's API on the reply's path (profile applies the
    # chat message the reply recorded, in the same trace, after the reply).
    profile = names.get("rapport-profile", [])
    assert not [n for n in profile if "/v1/profiles/" in n], profile
    assert "rapport-knowledge" not in names, names


async def test_one_trace_covers_ingest_kafka_and_the_profile_apply(
    mesh: Mesh, collector: Collector
) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    user = f"streamed-{uuid.uuid4().hex[:6]}"
    await mesh.events(user, {"type": "item_view", "item_id": "50"}, traceparent=traceparent)

    def found() -> dict[str, bool]:
        ingest = collector.names_in(trace_id, "rapport-ingest")
        return {
            "ingest server span": any("/v1/events" in n for n in ingest),
            "publish to Kafka": any(n.startswith("send") or "publish" in n for n in ingest),
            # the consumer applied it, in the same trace
            "profile apply": "apply event" in collector.names_in(trace_id, "rapport-profile"),
        }

    # As above: spans arrive in batches, so wait for each one asserted on.
    async def complete() -> bool:
        return all(found().values())

    await wait_until(complete, timeout_s=30)
    assert all(found().values()), (found(), collector.report(trace_id))


async def test_an_event_changes_the_reply(mesh: Mesh) -> None:
    user = f"fan-{uuid.uuid4().hex[:6]}"
    before = await mesh.respond(user)
    assert before["personalization"]["profile_version"] is None
    await mesh.events(
        user, *({"type": "item_view", "item_id": i, "category": "Sci-Fi"} for i in STAR_WARS)
    )

    async def applied() -> bool:
        return len((await mesh.profile(user))["recent_items"]) == len(STAR_WARS)

    await eventually(applied)
    after = await mesh.respond(user)
    # The views, and the first turn's chat_message event.
    assert after["personalization"]["profile_version"] == len(STAR_WARS) + 1
    assert after["reply"] != before["reply"]
    assert "Sci-Fi" in after["reply"]
    shown = {r["item_id"] for r in after["recommendations"]}
    assert not shown & set(STAR_WARS), "what the user has seen is not recommended again"


async def test_erasure_removes_the_user_everywhere(mesh: Mesh) -> None:
    user = f"erased-{uuid.uuid4().hex[:6]}"
    await mesh.events(user, {"type": "item_view", "item_id": "50", "category": "Sci-Fi"})

    async def known() -> bool:
        return bool((await mesh.profile(user))["known"])

    await eventually(known)
    await mesh.respond(user)  # the profile is now published in Redis too
    status, _ = await mesh.call("DELETE", "profile", f"/v1/profiles/{user}")
    assert status == 204
    assert (await mesh.profile(user))["known"] is False
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mesh.data["infra"]["mongo"])
    redis = Redis.from_url(mesh.data["infra"]["redis"])
    try:
        stored = await mongo["rapport"]["profiles"].find_one({"user_id": user})
        assert stored is None
        assert [k async for k in redis.scan_iter(match=f"*{user}*")] == []
    finally:
        await mongo.close()
        await redis.aclose()
    reply = await mesh.respond(user)
    assert reply["personalization"]["profile_version"] is None


async def test_consent_is_honoured_end_to_end(mesh: Mesh) -> None:
    user = f"private-{uuid.uuid4().hex[:6]}"
    await mesh.events(
        user, *({"type": "item_view", "item_id": i, "category": "Sci-Fi"} for i in STAR_WARS)
    )

    async def applied() -> bool:
        return len((await mesh.profile(user))["recent_items"]) == len(STAR_WARS)

    await eventually(applied)
    status, _ = await mesh.call(
        "PUT", "profile", f"/v1/profiles/{user}/consent", json={"personalization": False}
    )
    assert status == 202

    async def opted_out() -> bool:
        return (await mesh.profile(user))["consent"]["personalization"] is False

    await eventually(opted_out)
    version = (await mesh.profile(user))["version"]
    recorded = ("rapport_respond_events_total", {"outcome": "skipped_consent"})
    skipped = await mesh.metric("respond", recorded[0], **recorded[1])
    reply = await mesh.respond(user)
    assert reply["personalization"]["personalized"] is False
    assert "Sci-Fi" not in reply["reply"]
    assert not any(r["reason"].startswith(("because", "matches")) for r in reply["recommendations"])
    after_reply = await mesh.metric("respond", recorded[0], **recorded[1])
    assert after_reply == skipped + 1, "the chat was skipped, not recorded"
    not_consented = {"outcome": "not_consented"}
    dropped = await mesh.metric("profile", "rapport_profile_events_total", **not_consented)
    await mesh.events(user, {"type": "item_view", "item_id": "1", "category": "Comedy"})

    async def refused() -> bool:
        applied = await mesh.metric("profile", "rapport_profile_events_total", **not_consented)
        return applied > dropped

    await eventually(refused)
    after = await mesh.profile(user)
    assert after["version"] == version, "nothing but consent is applied after an opt-out"
    assert "1" not in after["recent_items"]
