"""Experiments through the real reply path: respond replicas over a real profile (Kafka,
MongoDB-wire, Redis) and recommend (trending serves, no Triton). The only fake is none:
no upstream LLM is needed here.

- assignment: the same variants from two respond replicas and from a restarted one, equal
  to the hash; nothing stored anywhere;
- what a variant changes reaches the reply (the tone, memory switched off) and the reply
  says so (``personalization.experiments``, in both APIs);
- an exposure is recorded on the stream only when the variant changed the reply, profile
  enrols the user from it, and the report counts them with their purchases;
- an opted-out user is never enrolled, and sends no exposure.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from rapport.common.experiments import ExperimentFile, ExperimentReport, load_experiments
from rapport.common.settings import KafkaSettings
from rapport.devstack.events import event, publish, read_topic
from rapport.devstack.pytest_plugin import serve_app
from rapport.devstack.waiting import eventually
from rapport.profile.app import create_app as create_profile_app
from rapport.profile.settings import ProfileSettings
from rapport.recommend.app import create_app as create_recommend_app
from rapport.respond.app import create_app as create_respond_app
from rapport.respond.settings import RespondSettings
from tests.integration import reply_path

pytestmark = pytest.mark.integration

KEY = "rpk_test_acme-expreply-0123456789ab"
SCOPES = [
    "respond:invoke",
    "profiles:read",
    "profiles:write",
    "recommend:invoke",
    "experiments:read",
]
USERS = [f"exp-user-{n}" for n in range(24)]


def experiments_yaml(now: datetime) -> str:
    start, stop = (now - timedelta(days=1)).isoformat(), (now + timedelta(days=30)).isoformat()
    return f"""
version: 1
experiments:
  - name: tone
    start: "{start}"
    stop: "{stop}"
    primary_kpi: purchase
    variants:
      - {{name: control, weight: 1}}
      - {{name: empathetic, weight: 1, changes: {{tone: empathetic}}}}
  - name: memory-off
    start: "{start}"
    stop: "{stop}"
    primary_kpi: purchase
    variants:
      - {{name: control, weight: 1}}
      - {{name: forgetful, weight: 1, changes: {{memory: false}}}}
"""


@dataclass
class Mesh:
    http: aiohttp.ClientSession
    profile_url: str
    respond_urls: list[str]
    respond_settings: RespondSettings
    kafka: KafkaSettings
    events_topic: str
    experiments: ExperimentFile

    async def reply(
        self, user: str, url: str, message: str = "what should I watch tonight?"
    ) -> dict[str, Any]:
        body = {"user_id": user, "session_id": f"s-{user}", "message": message}
        async with self.http.post(
            f"{url}/v1/respond", json=body, headers={"Authorization": f"Bearer {KEY}"}
        ) as response:
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
            return answer

    async def get(self, path: str) -> Any:
        async with self.http.get(
            f"{self.profile_url}{path}", headers={"Authorization": f"Bearer {KEY}"}
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def send(self, user: str, type_: str, **fields: Any) -> None:
        await publish(self.kafka, self.events_topic, event(user, type_, **fields))

    async def exposures(self) -> list[dict[str, Any]]:
        records = await read_topic(self.kafka, self.events_topic, 2)
        values = [json.loads(r.value) for r in records if r.value]
        return [v for v in values if v.get("type") == "exposure"]


def variants(answer: dict[str, Any]) -> dict[str, str]:
    return {a["experiment"]: a["variant"] for a in answer["personalization"]["experiments"]}


@pytest_asyncio.fixture(scope="module")
async def mesh(
    private_profile: Callable[[str, str], Awaitable[ProfileSettings]],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Mesh]:
    path: Path = tmp_path_factory.mktemp("experiments") / "experiments.yaml"
    path.write_text(experiments_yaml(datetime.now(UTC)))  # noqa: ASYNC240 - before any serving
    keys = reply_path.keys_json((KEY, "exp", "acme", SCOPES))
    profile_settings = (await private_profile("expreply", keys)).model_copy(
        update={"experiments_file": path}
    )
    kafka = KafkaSettings(kafka_bootstrap_servers=profile_settings.kafka_bootstrap_servers)
    async with (
        serve_app(create_profile_app(profile_settings)) as profile_url,
        aiohttp.ClientSession() as http,
    ):
        trending_only = reply_path.trending_recommend_settings(profile_settings, profile_url)
        async with serve_app(create_recommend_app(trending_only)) as recommend_url:
            settings = reply_path.respond_settings(
                profile_settings,
                profile_url,
                recommend_url,
                experiments_file=path,
                # Consent must be known to enrol: a profile read past the deadline (a
                # restarted replica's first) would leave the user out of that reply.
                deadline_ms=5000,
                max_deadline_ms=10000,
            )
            async with (
                serve_app(create_respond_app(settings)) as first,
                serve_app(create_respond_app(settings)) as second,
            ):
                yield Mesh(
                    http,
                    profile_url,
                    [first, second],
                    settings,
                    kafka,
                    profile_settings.events_topic,
                    load_experiments(path),
                )


async def test_assignment_is_the_hash_on_two_replicas_and_after_a_restart(mesh: Mesh) -> None:
    first, second = mesh.respond_urls
    seen = {user: variants(await mesh.reply(user, first)) for user in USERS}
    for user in USERS:
        assert variants(await mesh.reply(user, second)) == seen[user]
        expected = {e.name: e.assign("acme", user).name for e in mesh.experiments.experiments}
        assert seen[user] == expected
    assert {v["tone"] for v in seen.values()} == {"control", "empathetic"}
    async with serve_app(create_respond_app(mesh.respond_settings)) as restarted:
        for user in USERS:
            assert variants(await mesh.reply(user, restarted)) == seen[user]


async def test_the_variant_reaches_the_reply_and_is_exposed_on_the_stream(mesh: Mesh) -> None:
    tone = mesh.experiments.get("tone")
    assert tone is not None
    users = [f"exp-tone-{n}" for n in range(12)]
    for user in users:
        answer = await mesh.reply(user, mesh.respond_urls[0])
        personalization = answer["personalization"]
        variant = tone.assign("acme", user).name
        assigned = {a["experiment"]: a for a in personalization["experiments"]}
        # A neutral message's chosen tone is not empathetic: the variants differ, for both.
        assert assigned["tone"] == {"experiment": "tone", "variant": variant, "exposed": True}
        # A new user has nothing to remember: memory-off changed nothing, no exposure.
        assert assigned["memory-off"]["exposed"] is False
        assert personalization["tone"] == ("empathetic" if variant == "empathetic" else "neutral")

    async def recorded() -> bool:
        exposed = {e["user_id"]: e for e in await mesh.exposures()}
        return all(u in exposed for u in users)

    await eventually(recorded, timeout_s=30)
    exposures = [e for e in await mesh.exposures() if e["user_id"] in users]
    assert {e["attributes"]["experiment"] for e in exposures} == {"tone"}
    for exposure in exposures:
        expected = tone.assign("acme", exposure["user_id"]).name
        assert exposure["attributes"]["variant"] == expected

    # Purchases after the exposure: the report counts every exposed user once, and the
    # buyers, per variant.
    buyers = users[::3]
    for user in buyers:
        await mesh.send(user, "purchase", item_id="m-1", value=5.0)
    want: dict[str, tuple[int, int]] = {"control": (0, 0), "empathetic": (0, 0)}
    for user in users:
        variant = tone.assign("acme", user).name
        exposed, bought = want[variant]
        want[variant] = (exposed + 1, bought + (user in buyers))

    async def counted() -> bool:
        report = ExperimentReport.model_validate(await mesh.get("/v1/experiments/tone"))
        found = {v.variant: (v.users, v.conversions) for v in report.kpis[0].variants}
        # Other tests' users are enrolled too: count this test's on top of theirs.
        return all(found[v][0] >= want[v][0] for v in want) and sum(
            found[v][1] for v in found
        ) == len(buyers)

    await eventually(counted, timeout_s=30)


async def test_memory_off_leaves_out_what_was_remembered_and_only_then_exposes(
    mesh: Mesh,
) -> None:
    memory_off = mesh.experiments.get("memory-off")
    assert memory_off is not None
    candidates = [f"exp-mem-{n}" for n in range(100)]
    user = next(u for u in candidates if memory_off.assign("acme", u).name == "forgetful")
    kept = next(u for u in candidates if memory_off.assign("acme", u).name == "control")
    for who in (user, kept):
        await mesh.send(who, "chat_message", text="by the way, I'm vegetarian")

        async def learned(who: str = who) -> bool:
            profile = await mesh.get(f"/v1/profiles/{who}")
            return bool(profile["facts"])

        await eventually(learned, timeout_s=30)

    off = await mesh.reply(user, mesh.respond_urls[0], "any dinner ideas?")
    on = await mesh.reply(kept, mesh.respond_urls[0], "any dinner ideas?")
    assert off["memory"]["facts"] == []
    assert "vegetarian" in [f["value"] for f in on["memory"]["facts"]]
    for answer in (off, on):
        assigned = {a["experiment"]: a for a in answer["personalization"]["experiments"]}
        assert assigned["memory-off"]["exposed"] is True


async def test_an_opted_out_user_is_never_enrolled(mesh: Mesh) -> None:
    user = "exp-opted-out"  # never replied to before the opt-out
    async with mesh.http.put(
        f"{mesh.profile_url}/v1/profiles/{user}/consent",
        json={"personalization": False},
        headers={"Authorization": f"Bearer {KEY}"},
    ) as response:
        assert response.status == 202, await response.text()

    async def opted_out() -> bool:
        profile = await mesh.get(f"/v1/profiles/{user}")
        return profile["consent"]["personalization"] is False

    await eventually(opted_out, timeout_s=30)
    for url in mesh.respond_urls:
        answer = await mesh.reply(user, url)
        assert answer["personalization"]["personalized"] is False
        assert answer["personalization"]["experiments"] == []
    # The OpenAI-compatible API carries the same field.
    async with mesh.http.post(
        f"{mesh.respond_urls[0]}/v1/chat/completions",
        json={
            "model": "rapport",
            "user": "exp-user-0",
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"Authorization": f"Bearer {KEY}"},
    ) as response:
        completion = await response.json()
        assert response.status == 200, completion
    assigned = completion["rapport"]["personalization"]["experiments"]
    assert {a["experiment"] for a in assigned} == {"tone", "memory-off"}
    assert user not in {e["user_id"] for e in await mesh.exposures()}
