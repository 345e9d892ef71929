"""recommend's Triton adapter against a stand-in client: where a reply's versions come from."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from purgatory import AsyncCircuitBreakerFactory

from rapport.recommend.adapters.triton import REPLY_OUTPUTS, RankingQuery, TritonModels
from rapport.recommend.metrics import RecommendMetrics

pytestmark = pytest.mark.unit

COMPONENTS = {"item_scorer": "7", "encoder": "7", "intent_classifier": "7", "sentiment": "7"}


def strings(*values: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.array([v.encode() for v in values], dtype=np.object_)
    return array.reshape(shape) if shape else array


REPLY = {  # one reply model answer, in the config's shapes
    "ITEM_IDS": strings("50", "181"),
    "SCORES": np.array([0.9, 0.4], np.float32),
    "TITLES": strings("Star Wars", "Return of the Jedi"),
    "CATEGORIES": strings("Action|Sci-Fi", "Action|Sci-Fi"),
    "BECAUSE_ITEMS": strings("172", ""),
    "SEGMENT": np.array([2], np.int32),
    "SEGMENT_NAME": strings("Sci-Fi & Action"),
    "INTENT": strings("recommendation_request", shape=(1, 1)),
    "CONFIDENCE": np.array([[0.8]], np.float32),
    "OUT_OF_SCOPE": np.array([[False]]),
    "SENTIMENT": strings("positive", shape=(1, 1)),
    "SENTIMENT_SCORE": np.array([[0.6]], np.float32),
    "EMBEDDING": np.full((1, 384), 0.05, np.float32),
}


@dataclass
class Result:
    outputs: dict[str, np.ndarray]
    version: str

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self.outputs.get(name)

    def get_response(self) -> Any:
        return type("Response", (), {"model_version": self.version})()


@dataclass
class Client:
    """Answers like Triton: the reply model (version 1) with ``components``, the rest
    with the versions the repository index lists."""

    components: dict[str, str]
    index: dict[str, str] = field(default_factory=lambda: dict(COMPONENTS, reply="1"))
    asked: list[tuple[str, list[str]]] = field(default_factory=list)

    async def infer(self, model: str, inputs: list[Any], **options: Any) -> Result:
        names = [o.name() for o in options["outputs"]]
        self.asked.append((model, names))
        answer = {**REPLY, "COMPONENTS": strings(json.dumps(self.components))}
        return Result({n: answer[n] for n in names}, self.index[model])

    async def get_model_repository_index(self, **_: Any) -> Any:
        entry = type("Entry", (), {})
        models = []
        for name, version in self.index.items():
            model = entry()
            model.name, model.version, model.state = name, version, "READY"
            models.append(model)
        return type("Index", (), {"models": models})()


async def models(client: Client) -> TritonModels:
    breakers = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=5.0)
    await breakers.initialize()
    return TritonModels(
        client,
        item_model="item_scorer",
        encoder_model="encoder",
        intent_model="intent_classifier",
        sentiment_model="sentiment",
        reply_model="reply",
        timeout_s=1.0,
        breakers=breakers,
        metrics=RecommendMetrics("rapport-recommend"),
    )


QUERY = RankingQuery(history=["172"], weights=[1.0], affinities={}, exclude=(), categories=(), k=2)


async def test_a_replys_versions_are_its_components() -> None:
    # the index says 8 for every model: the reply was built from 7s, and says so
    client = Client(COMPONENTS, index=dict.fromkeys([*COMPONENTS, "reply"], "8"))
    ranking, intent, sentiment = await (await models(client)).rank_and_read(QUERY, "any ideas?")
    assert client.asked == [("reply", list(REPLY_OUTPUTS))]
    assert "COMPONENTS" in REPLY_OUTPUTS
    assert "EMBEDDING" in REPLY_OUTPUTS
    assert (ranking.version, intent.version, intent.encoder_version, sentiment.version) == (
        "7",
        "7",
        "7",
        "7",
    )
    assert [i.item_id for i in ranking.items] == ["50", "181"]
    assert intent.intent == "recommendation_request"
    assert intent.vector is not None
    assert intent.vector.shape == (384,)
    assert sentiment.label == "positive"


async def test_warm_up_says_when_the_replys_encoder_is_not_the_served_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="rapport.recommend.adapters.triton"):
        await (await models(Client(COMPONENTS))).warm_up()
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="rapport.recommend.adapters.triton"):
        await (await models(Client({**COMPONENTS, "encoder": "6"}))).warm_up()
    assert [r.getMessage() for r in caplog.records] == [
        "the reply model's encoder is not the served encoder's version"
    ]
