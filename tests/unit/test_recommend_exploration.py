"""recommend's explore slot against a stand-in Triton: a request's ``exploration_rate``
(an experiment's variant) decides instead of the service's setting."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from purgatory import AsyncCircuitBreakerFactory
from redis.asyncio import Redis

from rapport.common.auth import SCOPE_PROFILES_READ, ApiKey
from rapport.common.contracts import ProfileView, RecommendationRequest, Recommendations
from rapport.common.limits import InFlightLimit
from rapport.common.profiles import ProfileClient
from rapport.common.published import ProfileReader, PublishedProfiles
from rapport.recommend.adapters.triton import TritonModels
from rapport.recommend.domain import ThompsonSampler
from rapport.recommend.metrics import RecommendMetrics
from rapport.recommend.service import EXTRA_CANDIDATES, RecommendService, _Bandit

pytestmark = pytest.mark.unit

CALLER = ApiKey(id="k", sha256="0" * 64, tenant="acme", scopes=frozenset({SCOPE_PROFILES_READ}))
PROFILE = ProfileView(user_id="u", recent_items=["172"])
K = 5
RANKED = [str(i) for i in range(1, K + EXTRA_CANDIDATES + 1)]


def strings(values: list[str]) -> np.ndarray:
    return np.array([v.encode() for v in values], dtype=np.object_)


@dataclass
class Result:
    outputs: dict[str, np.ndarray]

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self.outputs.get(name)

    def get_response(self) -> Any:
        return type("Response", (), {"model_version": "1"})()


class Scorer:
    """Answers the item scorer with ``RANKED``, as Triton would."""

    async def infer(self, model: str, inputs: list[Any], **options: Any) -> Result:
        return Result(
            {
                "ITEM_IDS": strings(RANKED),
                "SCORES": np.linspace(1.0, 0.1, len(RANKED), dtype=np.float32),
                "TITLES": strings([f"title {i}" for i in RANKED]),
                "CATEGORIES": strings(["Drama"] * len(RANKED)),
                "BECAUSE_ITEMS": strings([""] * len(RANKED)),
                "SEGMENT": np.array([0], np.int32),
                "SEGMENT_NAME": strings(["Drama"]),
            }
        )


@pytest_asyncio.fixture
async def service() -> AsyncIterator[RecommendService]:
    metrics = RecommendMetrics("rapport-recommend")
    breakers = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=5.0)
    await breakers.initialize()
    models = TritonModels(
        Scorer(),
        item_model="item_scorer",
        encoder_model="encoder",
        intent_model="intent_classifier",
        sentiment_model="sentiment",
        reply_model="reply",
        timeout_s=1.0,
        breakers=breakers,
        metrics=metrics,
    )
    # Nothing here is called: the profile comes with the request, and the bandit has
    # fresh counts and one arm (the model's own item), so no trending read either.
    async with aiohttp.ClientSession() as http:
        profiles = ProfileClient(http, "http://profile.invalid", 1.0)
        yield RecommendService(
            models=models,
            profiles=profiles,
            reader=ProfileReader(PublishedProfiles(Redis()), profiles),
            metrics=metrics,
            catalog={},
            history_decay=0.85,
            history_items=10,
            explore=True,
            bandit_refresh_s=3600.0,
            admission=InFlightLimit(4),
            bandits={"acme": _Bandit(ThompsonSampler(["model"]), fetched_at=time.monotonic())},
            rng=random.Random(30),
        )


async def recommend(service: RecommendService, **fields: Any) -> Recommendations:
    request = RecommendationRequest(user_id="u", profile=PROFILE, k=K, **fields)
    return await service.recommend(request, caller=CALLER, authorization="Bearer k")


def explored(result: Recommendations) -> bool:
    slots = [i.slot for i in result.items]
    if result.exploration is None:
        assert slots == ["ranked"] * K
        return False
    assert slots == ["ranked"] * (K - 1) + ["explore"]
    assert result.exploration.item_id == result.items[-1].item_id
    return True


async def test_unset_the_services_setting_decides(service: RecommendService) -> None:
    assert all([explored(await recommend(service)) for _ in range(20)])
    service.explore = False
    assert not any([explored(await recommend(service)) for _ in range(20)])


async def test_a_rate_of_0_never_explores_and_1_always_whatever_the_setting(
    service: RecommendService,
) -> None:
    never = [await recommend(service, exploration_rate=0.0) for _ in range(20)]
    assert not any(explored(r) for r in never)
    assert all([i.item_id for i in r.items] == RANKED[:K] for r in never), "the model's"
    service.explore = False
    assert all([explored(await recommend(service, exploration_rate=1.0)) for _ in range(20)])


async def test_a_rate_between_explores_that_share_of_requests(service: RecommendService) -> None:
    draws = [explored(await recommend(service, exploration_rate=0.3)) for _ in range(400)]
    # Seeded: the same draws every run; 0.3 of 400 is 120, and the binomial's sd is 9.2.
    assert 90 <= sum(draws) <= 150
