"""Recommend over real HTTP, against a real Triton serving the exported models and a
real profile service (Kafka, MongoDB-wire, Redis). This module runs its own Triton,
so it can kill it, restart it and roll out a version without disturbing others."""

from __future__ import annotations

import asyncio
import csv
import itertools
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient

from rapport.common.cache import create_redis
from rapport.common.contracts import Reason, reason_text
from rapport.common.settings import KafkaSettings
from rapport.devstack import processes, servers, triton
from rapport.devstack.events import event, publish
from rapport.devstack.faults import DelayProxy
from rapport.devstack.models import private_copy
from rapport.devstack.pytest_plugin import serve_app
from rapport.devstack.servers import RunningServer, ServerSpec
from rapport.devstack.waiting import eventually
from rapport.profile.adapters.cache import trending_key
from rapport.profile.app import create_app as create_profile_app
from rapport.profile.settings import ProfileSettings
from rapport.recommend.app import create_app as create_recommend_app
from rapport.recommend.domain import history_weights
from rapport.recommend.service import EXTRA_CANDIDATES
from rapport.recommend.settings import RecommendSettings
from tests.integration import reply_path

pytestmark = pytest.mark.integration

ACME = "rpk_test_acme-recommend-0123456789ab"
GLOBEX = "rpk_test_globex-recommend-0123456789"
NO_SCOPE = "rpk_test_acme-profiles-only-01234567"
VAL_CSV = Path(__file__).resolve().parents[2] / "data" / "clinc150" / "val.csv"
STAR_WARS_FAN = ["50", "172", "181"]  # Star Wars, The Empire Strikes Back, Return of the Jedi
TITLES = ("Star Wars", "Empire Strikes Back, The", "Return of the Jedi")
NEIGHBOUR = ["1", "100", "127", "258"]  # Toy Story, Fargo, The Godfather, Contact


def keys_json() -> str:
    invoke = ["recommend:invoke", "profiles:read", "profiles:write"]
    return reply_path.keys_json(
        (ACME, "acme", "acme", invoke),
        (GLOBEX, "globex", "globex", invoke),
        (NO_SCOPE, "ro", "acme", ["profiles:read"]),
    )


class TritonProcess:
    """One Triton on fixed ports, so it can be killed and started again at the same address."""

    def __init__(self, repository: Path, log_dir: Path) -> None:
        self.spec: ServerSpec = triton.triton_spec(
            http_port=processes.free_port(),
            grpc_port=processes.free_port(),
            metrics_port=processes.free_port(),
            model_repository=repository,
        )
        self.log_dir = log_dir
        self.server: RunningServer | None = None

    @property
    def grpc_url(self) -> str:
        return self.spec.urls["triton_grpc"]

    def start(self) -> None:
        self.server = servers.start(self.spec, self.log_dir)

    def kill(self) -> None:
        if self.server is not None:
            processes.kill(self.server.handle)

    def stop(self) -> None:
        if self.server is not None:
            processes.stop(self.server.handle)


@pytest.fixture(scope="module")
def served_repository(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy: this module adds versions to it."""
    return private_copy(tmp_path_factory.mktemp("recommend-models"), model_repository)


@pytest.fixture(scope="module")
def triton_process(served_repository: Path, devstack_dir: Path) -> Iterator[TritonProcess]:
    process = TritonProcess(served_repository, devstack_dir)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@dataclass
class Mesh:
    recommend_url: str
    profile_url: str
    http: aiohttp.ClientSession
    triton: TritonProcess
    kafka: KafkaSettings
    events_topic: str
    settings: RecommendSettings

    async def recommend(
        self, body: dict[str, Any], key: str = ACME, url: str | None = None
    ) -> tuple[int, Any]:
        async with self.http.post(
            f"{url or self.recommend_url}/v1/recommendations",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            return response.status, await response.json(content_type=None)

    async def get(self, url: str, key: str = ACME) -> tuple[int, Any]:
        async with self.http.get(url, headers={"Authorization": f"Bearer {key}"}) as response:
            return response.status, await response.json(content_type=None)

    async def send_views(self, user: str, items: list[str], tenant: str = "acme") -> None:
        now = datetime.now(UTC)
        views = [
            # Distinct occurred_at: the order is the history.
            event(
                user,
                at=now + timedelta(milliseconds=i),
                tenant=tenant,
                item_id=item,
                category="Sci-Fi",
            )
            for i, item in enumerate(items)
        ]
        await publish(self.kafka, self.events_topic, *views)


@pytest_asyncio.fixture(scope="module")
async def mesh(
    private_profile: Callable[[str, str], Awaitable[ProfileSettings]],
    triton_process: TritonProcess,
    served_repository: Path,
) -> AsyncIterator[Mesh]:
    profile_settings = await private_profile("recommend", keys_json())
    kafka = KafkaSettings(kafka_bootstrap_servers=profile_settings.kafka_bootstrap_servers)
    async with (
        serve_app(create_profile_app(profile_settings)) as profile_url,
        aiohttp.ClientSession() as http,
    ):
        settings = RecommendSettings(
            api_keys=keys_json(),
            profile_url=profile_url,
            redis_url=profile_settings.redis_url,
            triton_grpc_url=triton_process.grpc_url,
            # Generous for a loaded 2-core CI machine; bench/recommend.py measures latency.
            triton_timeout_ms=1000,
            profile_timeout_ms=1000,
            breaker_reset_s=1.0,
            catalog_path=served_repository.parent / "catalog.json",
            max_model_in_flight=64,  # the val test sends 20 at once; admission has its own test
        )
        async with serve_app(create_recommend_app(settings)) as recommend_url:
            mesh = Mesh(
                recommend_url,
                profile_url,
                http,
                triton_process,
                kafka,
                profile_settings.events_topic,
                settings,
            )
            await mesh.send_views("fan", STAR_WARS_FAN)
            await mesh.send_views("neighbour", NEIGHBOUR)  # what trending will offer

            async def profiles_ready() -> bool:
                for user, items in (("fan", STAR_WARS_FAN), ("neighbour", NEIGHBOUR)):
                    status, body = await mesh.get(f"{profile_url}/v1/profiles/{user}")
                    if status != 200 or len(body["recent_items"]) != len(items):
                        return False
                return True

            await eventually(profiles_ready)
            # Reading a user not applied yet served a cold-start default, which computed
            # trending and cached it for 30 s, perhaps without the neighbour's views.
            redis = create_redis(profile_settings, client_name="t")
            try:
                await redis.delete(trending_key("acme"))
            finally:
                await redis.aclose()
            yield mesh


async def direct_ranking(
    grpc_url: str, history: list[str], affinities: dict[str, float], k: int
) -> list[str]:
    """The scorer called straight on Triton with what recommend should send for ``history``."""

    def strings(name: str, values: list[str]) -> InferInput:
        tensor = InferInput(name, [len(values)], "BYTES")
        tensor.set_data_from_numpy(np.array([v.encode() for v in values], dtype=np.object_))
        return tensor

    def floats(name: str, values: list[float]) -> InferInput:
        tensor = InferInput(name, [len(values)], "FP32")
        tensor.set_data_from_numpy(np.asarray(values, dtype=np.float32))
        return tensor

    k_tensor = InferInput("K", [1], "INT32")
    k_tensor.set_data_from_numpy(np.asarray([k], dtype=np.int32))
    client = InferenceServerClient(grpc_url)
    try:
        result = await client.infer(
            "item_scorer",
            [
                strings("HISTORY_ITEMS", history),
                floats("HISTORY_WEIGHTS", history_weights(len(history), 0.85)),
                strings("CATEGORY_NAMES", list(affinities)),
                floats("CATEGORY_WEIGHTS", list(affinities.values())),
                strings("EXCLUDE_ITEMS", history),
                strings("CATEGORY_FILTER", []),
                k_tensor,
            ],
            outputs=[InferRequestedOutput("ITEM_IDS")],
        )
    finally:
        await client.close()
    ids = result.as_numpy("ITEM_IDS")
    assert ids is not None
    return [v.decode() for v in ids.reshape(-1)]


async def test_a_known_user_gets_the_models_ranking_with_reasons(mesh: Mesh) -> None:
    status, body = await mesh.recommend({"user_id": "fan", "k": 5})
    assert status == 200, body
    assert body["fallback"] is False
    assert body["personalized"] is True
    assert body["models"]["item_scorer"]
    assert body["profile_version"] == len(STAR_WARS_FAN)
    items = body["items"]
    assert len(items) == 5
    # The service sends the profile's history (newest first, decayed) and affinities.
    _, profile = await mesh.get(f"{mesh.profile_url}/v1/profiles/fan")
    history = profile["recent_items"]
    assert history == list(reversed(STAR_WARS_FAN))
    expected = await direct_ranking(
        mesh.triton.grpc_url, history, profile["affinities"], 5 + EXTRA_CANDIDATES
    )
    ranked = [i["item_id"] for i in items if i["slot"] == "ranked"]
    assert ranked == expected[: len(ranked)]
    assert not {i["item_id"] for i in items} & set(STAR_WARS_FAN), "seen items came back"
    ranked_items = [i for i in items if i["slot"] == "ranked"]
    for item in ranked_items:
        why = item["why"]
        assert why in (
            {"kind": "because_you_watched", "label": why["label"], "item_id": why["item_id"]},
            {"kind": "matches_interest", "label": "Sci-Fi", "item_id": None},
        ), item
        if why["kind"] == "because_you_watched":
            assert why["label"] in TITLES, item
            assert why["item_id"] in STAR_WARS_FAN, item
        assert item["reason"] == reason_text(Reason.model_validate(why)), "the text follows `why`"
    assert all(i["title"] and i["title"] != i["item_id"] for i in items)
    assert body["segment"]["name"]
    assert body["exploration"]["policy"] == "explore_slot"
    assert items[-1]["slot"] == "explore"


async def test_a_requests_exploration_rate_decides_the_explore_slot(mesh: Mesh) -> None:
    """The mesh explores every ranking; an experiment's variant can say never or always."""
    status, body = await mesh.recommend({"user_id": "fan", "k": 5, "exploration_rate": 0})
    assert status == 200, body
    assert body["exploration"] is None
    assert [i["slot"] for i in body["items"]] == ["ranked"] * 5
    _, profile = await mesh.get(f"{mesh.profile_url}/v1/profiles/fan")
    expected = await direct_ranking(
        mesh.triton.grpc_url, profile["recent_items"], profile["affinities"], 5 + EXTRA_CANDIDATES
    )
    assert [i["item_id"] for i in body["items"]] == expected[:5], "the model's ranking"

    status, body = await mesh.recommend({"user_id": "fan", "k": 5, "exploration_rate": 1})
    assert status == 200, body
    assert body["exploration"]["policy"] == "explore_slot"
    assert body["items"][-1]["slot"] == "explore"
    assert body["items"][-1]["item_id"] == body["exploration"]["item_id"]

    status, body = await mesh.recommend({"user_id": "fan", "exploration_rate": 1.5})
    assert status == 422, body
    assert any(e["field"] == "exploration_rate" for e in body["errors"]), body


async def test_reasons_name_the_watched_item_that_led_to_a_recommendation(mesh: Mesh) -> None:
    """No stated affinities: the history alone drives the scores, and the reasons say which."""
    profile = {"user_id": "inline", "recent_items": list(reversed(STAR_WARS_FAN))}
    status, body = await mesh.recommend({"user_id": "inline", "k": 5, "profile": profile})
    assert status == 200
    ranked = [i for i in body["items"] if i["slot"] == "ranked"]
    because = [i["why"]["label"] for i in ranked if i["why"]["kind"] == "because_you_watched"]
    assert sum(title in TITLES for title in because) >= 3, ranked


async def test_affinities_decayed_below_fp32_still_steer_the_ranking(mesh: Mesh) -> None:
    """A user back after years away: affinities of 1e-60 are 0 in FP32, but their ratio is
    what the scorer uses, so they must rank as the same ratio of ordinary numbers does."""

    async def ranked(affinities: dict[str, float]) -> list[str]:
        profile = {"user_id": "back", "affinities": affinities}
        status, body = await mesh.recommend({"user_id": "back", "k": 8, "profile": profile})
        assert status == 200, body
        assert body["fallback"] is False
        return [i["item_id"] for i in body["items"] if i["slot"] == "ranked"]

    ordinary = await ranked({"Horror": 1.0, "Musical": 0.5})
    assert ordinary != await ranked({}), "the affinities change the ranking"
    assert await ranked({"Horror": 1e-60, "Musical": 5e-61}) == ordinary


async def test_excluded_and_seen_items_never_come_back(mesh: Mesh) -> None:
    status, first = await mesh.recommend({"user_id": "fan", "k": 10})
    assert status == 200
    exclude = [i["item_id"] for i in first["items"][:5]]
    status, body = await mesh.recommend({"user_id": "fan", "k": 10, "exclude": exclude})
    assert status == 200
    returned = {i["item_id"] for i in body["items"]}
    assert not returned & (set(exclude) | set(STAR_WARS_FAN))
    assert len(returned) == 10


async def test_a_category_filter_keeps_only_that_category(mesh: Mesh) -> None:
    status, body = await mesh.recommend({"user_id": "fan", "k": 5, "category": "Comedy"}, key=ACME)
    assert status == 200
    ranked = [i for i in body["items"] if i["slot"] == "ranked"]
    assert ranked
    assert all("Comedy" in i["categories"] for i in ranked), ranked


async def test_the_intents_of_val_examples_come_back_right(mesh: Mesh) -> None:
    with VAL_CSV.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["intent"] != "oos"]
    sample = rows[:: len(rows) // 20][:20]  # one from every ~7th intent, fixed
    answers = await asyncio.gather(
        *(mesh.recommend({"user_id": "fan", "k": 1, "message": r["text"]}) for r in sample)
    )
    right = 0
    for row, (status, body) in zip(sample, answers, strict=True):
        assert status == 200
        message = body["message"]
        assert message["sentiment"] in {"negative", "neutral", "positive"}
        assert 0.0 <= message["confidence"] <= 1.0
        right += message["intent"] == row["intent"]
        assert {"encoder", "intent_classifier", "sentiment"} <= set(body["models"])
    assert right >= 17, f"{right}/20 val intents right"
    status, body = await mesh.recommend(
        {"user_id": "fan", "k": 1, "message": "what is the airspeed of an unladen swallow"}
    )
    assert status == 200
    assert body["message"]["out_of_scope"] is True
    assert body["message"]["intent"] == "oos"


async def test_an_opted_out_user_gets_nothing_personal(mesh: Mesh) -> None:
    profile = {
        "user_id": "private",
        "consent": {"personalization": False},
        "recent_items": STAR_WARS_FAN,
        "affinities": {"Sci-Fi": 1.0},
    }
    status, body = await mesh.recommend({"user_id": "private", "k": 5, "profile": profile})
    assert status == 200
    assert body["personalized"] is False
    personal = {"because_you_watched", "matches_interest"}
    assert not any(i["why"]["kind"] in personal for i in body["items"])


async def test_another_tenants_key_never_sees_this_users_profile(mesh: Mesh) -> None:
    status, body = await mesh.recommend({"user_id": "fan", "k": 5}, key=GLOBEX)
    assert status == 200
    assert body["profile_version"] is None  # globex has no user "fan"
    assert not any(i["why"]["kind"] == "because_you_watched" for i in body["items"])


async def test_auth_and_bad_input_are_problems(mesh: Mesh) -> None:
    async with mesh.http.post(
        f"{mesh.recommend_url}/v1/recommendations", json={"user_id": "fan"}
    ) as response:
        assert response.status == 401
        assert response.content_type == "application/problem+json"
    status, body = await mesh.recommend({"user_id": "fan"}, key=NO_SCOPE)
    assert status == 403
    assert "recommend:invoke" in body["detail"]
    status, body = await mesh.recommend({"user_id": "fan", "k": 0})
    assert status == 422
    assert any(e["field"] == "k" for e in body["errors"]), body


async def test_a_new_model_version_is_served_without_a_restart(
    mesh: Mesh, served_repository: Path
) -> None:
    status, body = await mesh.recommend({"user_id": "fan", "k": 3})
    assert status == 200
    current = int(body["models"]["item_scorer"])
    scorer = served_repository / "item_scorer"
    shutil.copytree(scorer / str(current), scorer / str(current + 1))

    async def rolled_out() -> bool:
        _, answer = await mesh.recommend({"user_id": "fan", "k": 3})
        return bool(answer["models"].get("item_scorer") == str(current + 1))

    await eventually(rolled_out, timeout_s=60)  # Triton polls the repository every 5 s


async def test_killing_triton_mid_traffic_falls_back_then_recovers(mesh: Mesh) -> None:
    statuses: list[int] = []
    answers: list[dict[str, Any]] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            status, body = await mesh.recommend({"user_id": "fan", "k": 5, "message": "hi"})
            statuses.append(status)
            answers.append(body)
            await asyncio.sleep(0.01)

    workers = [asyncio.create_task(traffic()) for _ in range(4)]
    try:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(mesh.triton.kill)
        await asyncio.sleep(3.0)

        async def degraded() -> bool:
            status, body = await mesh.get(f"{mesh.recommend_url}/readyz")
            return status == 200 and body["status"] == "degraded"

        await eventually(degraded, timeout_s=10)
        killed_at = len(answers)
        await asyncio.to_thread(mesh.triton.start)

        async def recovered() -> bool:
            return bool(answers) and answers[-1]["fallback"] is False

        await eventually(recovered, timeout_s=60)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert statuses
    assert set(statuses) == {200}, "a 5xx (or other error) reached the caller"
    fallbacks = [a for a in answers if a["fallback"]]
    assert fallbacks, "no request was served by the fallback"
    assert all(a["fallback_reason"] for a in fallbacks)
    # Trending served meanwhile, without the items the user has seen.
    served = [
        a
        for a in answers[killed_at:]
        if a["fallback"] and a["items"] and "profile" not in a["degraded"]
    ]
    assert served, "the fallback served no items"
    assert all(not {i["item_id"] for i in a["items"]} & set(STAR_WARS_FAN) for a in served)
    assert all(i["why"]["kind"] in {"trending_in", "trending_now"} for i in served[-1]["items"])
    status, ready = await mesh.get(f"{mesh.recommend_url}/readyz")
    assert status == 200
    assert ready["status"] == "ready", ready
    async with mesh.http.get(f"{mesh.recommend_url}/metrics") as response:
        metrics = await response.text()
    assert "rapport_recommend_fallbacks_total" in metrics
    assert 'rapport_recommend_circuit_state{circuit="triton"} 0.0' in metrics


async def test_past_max_model_in_flight_a_request_waits_briefly_then_gets_the_fallback(
    mesh: Mesh,
) -> None:
    host, port = mesh.triton.grpc_url.rsplit(":", 1)
    slow_triton = await DelayProxy(host, int(port)).start()
    settings = mesh.settings.model_copy(
        update={
            "triton_grpc_url": slow_triton.address,
            "triton_timeout_ms": 5000,
            "max_model_in_flight": 1,
            "min_model_in_flight": 1,
            "model_target_ms": 0,
            "model_wait_ms": 30,
        }
    )
    body = {"user_id": "fan", "k": 3, "message": "my card was declined"}

    async def until_warm(url: str) -> None:
        async def warm() -> bool:
            _, ready = await mesh.get(f"{url}/readyz")
            return bool(ready.get("status") == "ready")

        await eventually(warm, timeout_s=30)

    try:
        async with serve_app(create_recommend_app(settings)) as url:
            await until_warm(url)
            # The one admitted request is held at Triton until the other four are shed,
            # however far apart the box's load spreads their arrivals.
            slow_triton.blackhole()
            calls = [asyncio.create_task(mesh.recommend(body, url=url)) for _ in range(5)]
            for shed_one in itertools.islice(asyncio.as_completed(calls, timeout=30), 4):
                await shed_one
            slow_triton.up()
            answers = await asyncio.gather(*calls)
            # A place that frees within the wait is taken: one at a time, all five served.
            slow_triton.delay_s = 0.005
            patient = settings.model_copy(update={"model_wait_ms": 2000})
            async with serve_app(create_recommend_app(patient)) as patient_url:
                await until_warm(patient_url)
                waited = await asyncio.gather(
                    *(mesh.recommend(body, url=patient_url) for _ in range(5))
                )
            slow_triton.up()
            _, after = await mesh.recommend(body, url=url)
            _, ready = await mesh.get(f"{url}/readyz")
            async with mesh.http.get(f"{url}/metrics") as response:
                metrics = await response.text()
    finally:
        await slow_triton.stop()

    assert [status for status, _ in answers] == [200] * 5
    reasons = sorted(str(answer["fallback_reason"]) for _, answer in answers)
    assert reasons == ["None"] + ["overloaded"] * 4, reasons
    shed = [answer for _, answer in answers if answer["fallback"]]
    assert all(a["items"] and "message" in a["degraded"] for a in shed), shed
    # Shedding is not a Triton failure: the circuit stays closed and the models serve on.
    assert 'rapport_recommend_fallbacks_total{reason="overloaded"} 4.0' in metrics
    assert 'rapport_recommend_circuit_state{circuit="triton"} 0.0' in metrics
    assert ready["status"] == "ready", ready
    assert after["fallback"] is False
    assert [answer["fallback"] for _, answer in waited] == [False] * 5
