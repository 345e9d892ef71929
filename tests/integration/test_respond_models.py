"""Respond end to end with the real models: profile (Kafka, MongoDB-wire, Redis), recommend
and Triton serving the exported item scorer, intent and sentiment models.

What a user does changes what the gateway says next, and one trace runs from the chatbot's
request through profile, recommend and Triton. Budgets are generous here (a loaded 2-core
CI machine); ``bench/respond.py`` measures latency.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rapport.common.settings import KafkaSettings
from rapport.devstack.events import event, publish
from rapport.devstack.pytest_plugin import serve_app
from rapport.devstack.servers import RunningServer
from rapport.devstack.waiting import eventually
from rapport.profile.app import create_app as create_profile_app
from rapport.profile.settings import ProfileSettings
from rapport.recommend.app import create_app as create_recommend_app
from rapport.respond.app import create_app as create_respond_app
from tests.integration import reply_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "rpk_test_acme-respond-models-0123456"
STAR_WARS = ["50", "172", "181"]  # Star Wars, The Empire Strikes Back, Return of the Jedi
ASK = "what should i watch tonight"


def keys_json() -> str:
    scopes = ["respond:invoke", "profiles:read", "recommend:invoke"]
    return reply_path.keys_json(
        (KEY, "acme", "acme", scopes),
    )


@dataclass
class Mesh:
    respond_url: str
    profile_url: str
    http: aiohttp.ClientSession
    kafka: KafkaSettings
    events_topic: str

    async def respond(self, user: str, message: str = ASK) -> dict[str, Any]:
        async with self.http.post(
            f"{self.respond_url}/v1/respond",
            json={"user_id": user, "session_id": f"s-{user}", "message": message},
            headers={"Authorization": f"Bearer {KEY}"},
        ) as response:
            body: dict[str, Any] = await response.json(content_type=None)
            assert response.status == 200, body
            return body

    async def profile(self, user: str) -> dict[str, Any]:
        async with self.http.get(
            f"{self.profile_url}/v1/profiles/{user}", headers={"Authorization": f"Bearer {KEY}"}
        ) as response:
            body: dict[str, Any] = await response.json()
            return body

    async def send(self, user: str, type_: str, **fields: Any) -> None:
        await publish(self.kafka, self.events_topic, event(user, type_, **fields))


@pytest_asyncio.fixture(scope="module")
async def mesh(
    private_profile: Callable[[str, str], Awaitable[ProfileSettings]],
    models_triton: RunningServer,
    served_models: Path,
) -> AsyncIterator[Mesh]:
    profile_settings = await private_profile("respond_models", keys_json())
    kafka = KafkaSettings(kafka_bootstrap_servers=profile_settings.kafka_bootstrap_servers)
    async with (
        serve_app(create_profile_app(profile_settings)) as profile_url,
        aiohttp.ClientSession() as http,
    ):
        recommending = reply_path.recommend_settings(
            profile_settings,
            profile_url,
            models_triton,
            served_models,
            explore=False,  # the replies compared below come from the ranking alone
        )
        async with serve_app(create_recommend_app(recommending)) as recommend_url:
            settings = reply_path.respond_settings(
                profile_settings, profile_url, recommend_url, deadline_ms=5000, max_deadline_ms=5000
            )
            async with serve_app(create_respond_app(settings)) as respond_url:
                mesh = Mesh(respond_url, profile_url, http, kafka, profile_settings.events_topic)
                await mesh.respond("warm-up")  # model caches, connections
                yield mesh


async def test_a_viewed_item_changes_the_next_reply(mesh: Mesh) -> None:
    user = f"fan-{uuid.uuid4().hex[:6]}"
    before = await mesh.respond(user)
    assert before["personalization"]["intent"], before
    assert "ranking" not in before["personalization"]["degraded"], "the model ranked"
    assert "because you watched" not in before["reply"]

    for item in STAR_WARS:
        await mesh.send(user, "item_view", item_id=item, category="Sci-Fi")
        await asyncio.sleep(0.002)  # distinct occurred_at: the order is the history

    async def viewed() -> bool:
        return len((await mesh.profile(user))["recent_items"]) == len(STAR_WARS)

    await eventually(viewed)
    after = await mesh.respond(user)
    assert before["personalization"]["profile_version"] is None  # a stranger
    assert after["personalization"]["profile_version"] >= len(STAR_WARS)
    assert after["reply"] != before["reply"]
    assert "Sci-Fi" in after["reply"]
    reasons = [r["reason"] for r in after["recommendations"]]
    assert any(
        r.startswith("because you watched") or r == "matches your interest in Sci-Fi"
        for r in reasons
    ), reasons
    assert any(reason in after["reply"] for reason in reasons), "the reasons are in the reply"
    ids_before = {r["item_id"] for r in before["recommendations"]}
    ids_after = {r["item_id"] for r in after["recommendations"]}
    assert ids_after != ids_before
    assert not ids_after & set(STAR_WARS), "seen items are not offered again"


async def test_a_stated_preference_changes_the_next_reply(mesh: Mesh) -> None:
    user = f"pref-{uuid.uuid4().hex[:6]}"
    question = "what is the balance of my checking account"  # in scope, neutral
    before = await mesh.respond(user, question)
    assert before["personalization"]["tone"] == "neutral", before["personalization"]
    await mesh.send(user, "preference", attributes={"tone": "concise"})

    async def stated() -> bool:
        return bool((await mesh.profile(user))["preferences"].get("tone") == "concise")

    await eventually(stated)
    after = await mesh.respond(user, question)
    assert after["personalization"]["tone"] == "concise"
    assert after["reply"] != before["reply"]
    assert len(after["reply"]) < len(before["reply"])


async def test_an_upset_user_gets_empathy_and_steps(mesh: Mesh) -> None:
    body = await mesh.respond(
        f"upset-{uuid.uuid4().hex[:6]}",
        "my card was declined again and I am really angry and upset about it",
    )
    p = body["personalization"]
    assert p["sentiment"] == "negative", p
    assert p["tone"] == "empathetic"
    assert "step" in body["reply"]
    assert "\n1. " in body["reply"]


async def test_one_trace_runs_through_profile_recommend_and_triton(
    mesh: Mesh, spans: InMemorySpanExporter
) -> None:
    body = await mesh.respond(f"traced-{uuid.uuid4().hex[:6]}")
    trace_id = int(body["trace_id"], 16)

    def names() -> list[str]:
        return [s.name for s in spans.get_finished_spans() if s.context.trace_id == trace_id]

    async def complete() -> bool:
        return any("ModelInfer" in n for n in names()) and any("send" in n for n in names())

    await eventually(complete, timeout_s=10)
    found = names()
    assert any(n.startswith("POST /v1/respond") for n in found), found
    assert any(n.startswith("GET /v1/profiles/") for n in found), found
    assert any(n.startswith("POST /v1/recommendations") for n in found), found
    # ranking, intent and sentiment in one call: the reply model
    assert sum("ModelInfer" in n for n in found) == 1, found
