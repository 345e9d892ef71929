"""The exported model repository, served by a real Triton: ranking, intents, sentiment, reload."""

from __future__ import annotations

import asyncio
import csv
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from rapport.devstack.models import MODELS
from rapport.devstack.servers import RunningServer, console_script
from rapport.models import encoder, movielens, ranking, runtime_files, textdata
from rapport.models.runtime import reply_runtime
from rapport.models.runtime.item_runtime import ItemScorer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VAL_CSV = Path(__file__).resolve().parents[2] / "data" / "clinc150" / "val.csv"
# Hand-written sanity set for sentiment (not a benchmark: no labelled data is available offline).
SENTIMENT_SANITY = [
    ("I love this, thank you so much!", "positive"),
    ("Great recommendations, really helpful", "positive"),
    ("this is terrible and I am angry", "negative"),
    ("I hate waiting, the service is awful", "negative"),
    ("what time does the store open", "neutral"),
    ("is the store on main street open on sunday", "neutral"),
]


def bytes_input(name: str, values: list[str]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(values)], "BYTES")
    tensor.set_data_from_numpy(np.array([v.encode() for v in values], dtype=np.object_))
    return tensor


def fp32_input(name: str, values: list[float]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(values)], "FP32")
    tensor.set_data_from_numpy(np.array(values, dtype=np.float32))
    return tensor


def text_input(texts: list[str]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("TEXT", [len(texts), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
    return tensor


def scorer_inputs(
    history: list[str],
    *,
    weights: list[float] | None = None,
    categories: dict[str, float] | None = None,
    exclude: list[str] | None = None,
    only: list[str] | None = None,
    k: int = 10,
) -> list[grpcclient.InferInput]:
    """Every input present, empty ones as zero-length arrays (as recommend sends them)."""
    k_input = grpcclient.InferInput("K", [1], "INT32")
    k_input.set_data_from_numpy(np.array([k], np.int32))
    cats = categories or {}
    return [
        bytes_input("HISTORY_ITEMS", history),
        fp32_input("HISTORY_WEIGHTS", weights if weights is not None else [1.0] * len(history)),
        bytes_input("CATEGORY_NAMES", list(cats)),
        fp32_input("CATEGORY_WEIGHTS", list(cats.values())),
        bytes_input("EXCLUDE_ITEMS", exclude or []),
        bytes_input("CATEGORY_FILTER", only or []),
        k_input,
    ]


async def rapport_models(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        console_script("rapport-models"), "--quiet", *args
    )
    assert await process.wait() == 0, args


def decoded(result: grpcclient.InferResult, name: str) -> list[str]:
    return [v.decode() for v in result.as_numpy(name).ravel()]


@pytest.fixture
async def client(models_triton: RunningServer) -> AsyncIterator[grpcclient.InferenceServerClient]:
    triton = grpcclient.InferenceServerClient(url=models_triton.url("triton_grpc"))
    try:
        for model in MODELS:
            assert await triton.is_model_ready(model), model
        yield triton
    finally:
        await triton.close()


@pytest.fixture(scope="module")
def data() -> movielens.MovieLens:
    return movielens.load()


def history_of(data: movielens.MovieLens, user_id: str) -> list[str]:
    """The user's rated items, most recent first (as a profile would list them)."""
    u = data.user_ids.index(user_id)
    rows = np.flatnonzero(data.users == u)
    rows = rows[np.argsort(-data.timestamps[rows], kind="stable")]
    return [data.item_ids[i] for i in data.items[rows]]


def version_dir(repository: Path, model: str) -> Path:
    return repository / model / "1"


async def embedded(
    client: grpcclient.InferenceServerClient, texts: list[str]
) -> tuple[grpcclient.InferInput, np.ndarray]:
    """The encoder's vectors for ``texts``, and them as the intent model's EMBEDDING input."""
    result = await client.infer("encoder", [text_input(texts)], client_timeout=10)
    vectors = result.as_numpy("EMBEDDING")
    tensor = grpcclient.InferInput("EMBEDDING", list(vectors.shape), "FP32")
    tensor.set_data_from_numpy(vectors)
    return tensor, vectors


async def test_the_encoder_gives_the_offline_vectors(
    client: grpcclient.InferenceServerClient, served_models: Path
) -> None:
    """The served encoder and the offline runtime give the same vectors; unit length."""
    val = textdata.read_labelled(VAL_CSV)
    texts = [val.texts[i] for i in random.Random(7).sample(range(len(val.texts)), 300)]
    texts += ["", "a", "Ünïcödé façade, naïve café 😀", "word " * 600]  # empty, long: truncated
    offline = encoder.load(version_dir(served_models, "encoder"))
    expected = np.concatenate([offline.encode([t]) for t in texts])
    # one by one, concurrently (the dynamic batcher pads them together) and as one batch
    ones = await asyncio.gather(*(embedded(client, [t]) for t in texts))
    served_one = np.concatenate([vectors for _, vectors in ones])
    _, served_batch = await embedded(client, texts[:64])
    assert served_one.shape == (len(texts), 384)
    assert served_one.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(served_one, axis=1), 1.0, atol=1e-4)
    assert (np.einsum("ij,ij->i", served_one, expected) >= 0.999).all()
    assert (np.einsum("ij,ij->i", served_batch, expected[:64]) >= 0.999).all()
    # different texts, different vectors
    assert np.einsum("ij,ij->i", served_one[:-1], served_one[1:]).max() < 0.999


async def test_ranking_for_a_known_user_matches_an_independent_ease(
    client: grpcclient.InferenceServerClient, served_models: Path, data: movielens.MovieLens
) -> None:
    history = history_of(data, "1")
    result = await client.infer("item_scorer", scorer_inputs(history, k=10), client_timeout=10)
    served = decoded(result, "ITEM_IDS")
    # Recompute from the ratings with the training code, not with the served artefacts.
    meta = json.loads((version_dir(served_models, "item_scorer") / "metadata.json").read_text())
    matrix = ranking.full_matrix(data)
    weights = ranking.ease(matrix, float(meta["ease_lambda"]))
    user = matrix[data.user_ids.index("1")].toarray().ravel()
    scores = user @ weights + ranking.POPULARITY_WEIGHT * ranking.popularity(matrix)
    scores[user > 0] = -np.inf
    expected = [data.item_ids[i] for i in np.argsort(-scores, kind="stable")[:10]]
    assert served == expected
    np.testing.assert_allclose(result.as_numpy("SCORES"), np.sort(scores)[::-1][:10], rtol=1e-4)
    assert set(served).isdisjoint(history)
    because = decoded(result, "BECAUSE_ITEMS")
    assert all(b in history for b in because), because  # explained by the user's own history
    titles = dict(zip(data.item_ids, data.titles, strict=True))
    assert decoded(result, "TITLES") == [titles[i] for i in served]
    assert decoded(result, "SEGMENT_NAME")[0]


async def test_seen_and_excluded_items_are_never_returned(
    client: grpcclient.InferenceServerClient, data: movielens.MovieLens
) -> None:
    history = history_of(data, "13")[:30]
    first = decoded(await client.infer("item_scorer", scorer_inputs(history, k=20)), "ITEM_IDS")
    excluded = first[:5]
    second = decoded(
        await client.infer("item_scorer", scorer_inputs(history, exclude=excluded, k=200)),
        "ITEM_IDS",
    )
    assert len(second) == 200
    assert set(second).isdisjoint(history)
    assert set(second).isdisjoint(excluded)
    assert second[:15] == first[5:20]  # the rest of the order is unchanged


async def test_cold_start_is_popularity_and_filters_apply(
    client: grpcclient.InferenceServerClient, data: movielens.MovieLens
) -> None:
    result = await client.infer("item_scorer", scorer_inputs([], k=10))
    counts = np.bincount(data.items, minlength=data.n_items)
    most_popular = [data.item_ids[i] for i in np.argsort(-counts, kind="stable")[:10]]
    assert decoded(result, "ITEM_IDS") == most_popular
    assert decoded(result, "BECAUSE_ITEMS") == [""] * 10

    only = await client.infer(
        "item_scorer", scorer_inputs(history_of(data, "7")[:10], only=["Documentary"], k=10)
    )
    assert all("Documentary" in c.split("|") for c in decoded(only, "CATEGORIES"))

    liked = await client.infer("item_scorer", scorer_inputs([], categories={"Horror": 1.0}, k=10))
    horror = sum("Horror" in c.split("|") for c in decoded(liked, "CATEGORIES"))
    assert horror >= 8, decoded(liked, "TITLES")


async def test_inconsistent_input_is_an_error_that_says_why(
    client: grpcclient.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException, match="HISTORY_WEIGHTS"):
        await client.infer("item_scorer", scorer_inputs(["50", "181"], weights=[1.0]))


async def test_offline_runtime_gives_the_same_ranking(
    client: grpcclient.InferenceServerClient, served_models: Path, data: movielens.MovieLens
) -> None:
    folder = version_dir(served_models, "item_scorer")
    scorer: ItemScorer = runtime_files.load_runtime(folder, "item_runtime").ItemScorer.load(folder)
    history = history_of(data, "42")[:25]
    offline = scorer.recommend(
        history_items=history,
        history_weights=np.linspace(1.0, 0.5, len(history), dtype=np.float32),
        category_names=["Comedy"],
        category_weights=np.array([1.0], np.float32),
        exclude_items=[],
        category_filter=[],
        k=10,
    )
    result = await client.infer(
        "item_scorer",
        scorer_inputs(
            history,
            weights=np.linspace(1.0, 0.5, len(history)).tolist(),
            categories={"Comedy": 1.0},
        ),
    )
    assert decoded(result, "ITEM_IDS") == offline.item_ids
    assert decoded(result, "BECAUSE_ITEMS") == offline.because
    assert int(result.as_numpy("SEGMENT")[0]) == offline.segment


async def test_val_intents_come_back_as_predicted_offline(
    client: grpcclient.InferenceServerClient, served_models: Path, tmp_path: Path
) -> None:
    val = textdata.read_labelled(VAL_CSV)
    rows = random.Random(5).sample(range(len(val.texts)), 300)
    texts = [val.texts[i] for i in rows]
    gold = [val.intents[i] for i in rows]

    async def one(text: str) -> tuple[str, float, bool]:
        vector, _ = await embedded(client, [text])
        result = await client.infer(
            "intent_classifier", [text_input([text]), vector], client_timeout=10
        )
        return (
            decoded(result, "INTENT")[0],
            float(result.as_numpy("CONFIDENCE")[0, 0]),
            bool(result.as_numpy("OUT_OF_SCOPE")[0, 0]),
        )

    served = await asyncio.gather(*(one(t) for t in texts))  # concurrent: dynamic batches
    assert all(oos == (intent == "oos") for intent, _, oos in served)
    assert sum(s[0] == g for s, g in zip(served, gold, strict=True)) / len(gold) >= 0.9

    # `rapport-models predict` runs the same runtime module on the same model folder.
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as handle:
        csv.writer(handle).writerows([["text"], *([t] for t in texts)])
    out = tmp_path / "out.csv"
    await rapport_models(
        "predict",
        "intents",
        "--model",
        str(version_dir(served_models, "intent_classifier")),
        "--data",
        str(source),
        "--out",
        str(out),
    )
    with out.open(newline="") as handle:
        predicted = list(csv.DictReader(handle))
    assert [p["text"] for p in predicted] == texts
    assert [p["intent"] for p in predicted] == [s[0] for s in served]
    np.testing.assert_allclose(
        [float(p["confidence"]) for p in predicted], [s[1] for s in served], atol=1e-4
    )


def test_exported_runtime_is_the_packaged_module(served_models: Path) -> None:
    reply = version_dir(served_models, "reply")
    for model, module in [*reply_runtime.RUNTIMES.items(), ("reply", "reply_runtime")]:
        exported = version_dir(served_models, model) / f"{module}.py"
        assert exported.read_bytes() == runtime_files.runtime_source(module).read_bytes()
    # the reply carries each model's version folder from the same export, less its model.py
    assert json.loads((reply / reply_runtime.COMPONENTS).read_text()) == dict.fromkeys(
        reply_runtime.RUNTIMES, "1"
    )
    for model in reply_runtime.RUNTIMES:
        own = version_dir(served_models, model)
        names = sorted(p.name for p in own.iterdir() if p.is_file() and p.name != "model.py")
        assert sorted(p.name for p in (reply / model).iterdir() if p.is_file()) == names
        for name in names:
            assert (reply / model / name).read_bytes() == (own / name).read_bytes(), name


async def test_the_reply_model_answers_as_its_models_do(
    client: grpcclient.InferenceServerClient, data: movielens.MovieLens
) -> None:
    with VAL_CSV.open(newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][::300][:8]
    texts += [t for t, _ in SENTIMENT_SANITY]
    users = ["1", "42", "300", None]  # None: a cold start, no history
    for i, text in enumerate(texts):
        user = users[i % len(users)]
        history = history_of(data, user)[:20] if user else []
        ranked = scorer_inputs(history, categories={"Drama": 1.0}, k=5)
        vector, vectors = await embedded(client, [text])
        together, *apart = await asyncio.gather(
            client.infer("reply", [*ranked, text_input([text])]),
            client.infer("item_scorer", ranked),
            client.infer("intent_classifier", [text_input([text]), vector]),
            client.infer("sentiment", [text_input([text])]),
        )
        shapes = {name: together.as_numpy(name).shape for name in ("INTENT", "EMBEDDING")}
        assert shapes == {"INTENT": (1, 1), "EMBEDDING": (1, 384)}  # the ensemble's
        versions = {
            "item_scorer": apart[0].get_response().model_version,
            "encoder": max((await client.get_model_metadata("encoder")).versions, key=int),
            "intent_classifier": apart[1].get_response().model_version,
            "sentiment": apart[2].get_response().model_version,
        }
        assert json.loads(together.as_numpy("COMPONENTS")[0]) == versions
        for result, names in zip(
            apart,
            [
                ("ITEM_IDS", "SCORES", "BECAUSE_ITEMS", "SEGMENT_NAME"),
                ("INTENT", "OUT_OF_SCOPE"),
                ("SENTIMENT", "SENTIMENT_SCORE"),
            ],
            strict=True,
        ):
            for name in names:
                assert together.as_numpy(name).tolist() == result.as_numpy(name).tolist(), name
        # a float32 vector, computed alone either way: the same up to rounding
        np.testing.assert_allclose(together.as_numpy("EMBEDDING"), vectors, atol=1e-5)
        np.testing.assert_allclose(
            together.as_numpy("CONFIDENCE"), apart[1].as_numpy("CONFIDENCE"), atol=1e-5
        )


async def test_the_reply_model_answers_what_is_asked_for(
    client: grpcclient.InferenceServerClient,
) -> None:
    """Any outputs may be asked for (the ensemble's scheduler failed an intent without
    its EMBEDDING); optional scorer inputs may be left out; a bad one says why."""
    k = grpcclient.InferInput("K", [1], "INT32")
    k.set_data_from_numpy(np.array([3], np.int32))
    result = await client.infer(
        "reply",
        [k, text_input(["recommend me a movie please"])],
        outputs=[grpcclient.InferRequestedOutput("INTENT")],
    )
    assert result.as_numpy("INTENT").shape == (1, 1)
    assert result.as_numpy("EMBEDDING") is None
    with pytest.raises(InferenceServerException, match="HISTORY_WEIGHTS"):
        await client.infer(
            "reply", [*scorer_inputs(["50", "181"], weights=[1.0]), text_input(["hi"])]
        )


async def test_sentiment_sanity_set(client: grpcclient.InferenceServerClient) -> None:
    texts = [t for t, _ in SENTIMENT_SANITY]
    result = await client.infer("sentiment", [text_input(texts)])
    assert decoded(result, "SENTIMENT") == [label for _, label in SENTIMENT_SANITY]
    scores = result.as_numpy("SENTIMENT_SCORE").ravel()
    assert ((scores >= -1) & (scores <= 1)).all()


async def test_a_new_version_is_served_without_a_restart(
    client: grpcclient.InferenceServerClient, served_models: Path
) -> None:
    """Export into the served repository; Triton's poll (5 s) loads version 2 and drops 1.
    The reply model's version 2 is built from the others' version 2."""
    await rapport_models(
        "export",
        "--repository",
        str(served_models),
        "--items",
        str(version_dir(served_models, "item_scorer")),
        "--intents",
        str(version_dir(served_models, "intent_classifier")),
    )
    assert (served_models / "item_scorer" / "2").is_dir()
    deadline = time.monotonic() + 60
    version = ""
    while time.monotonic() < deadline:
        result = await client.infer("item_scorer", scorer_inputs(["50"], k=3))
        version = result.get_response().model_version
        others = [
            await client.is_model_ready(m, "2")
            for m in ("encoder", "intent_classifier", "sentiment", "reply")
        ]
        if version == "2" and all(others) and not await client.is_model_ready("item_scorer", "1"):
            break
        await asyncio.sleep(0.5)
    assert version == "2"
    # Each model loads on its own (a poll may catch one before another): all within the deadline.
    for model in ("encoder", "intent_classifier", "sentiment", "reply"):
        assert await client.is_model_ready(model, "2")
    reply = await client.infer("reply", [*scorer_inputs(["50"], k=3), text_input(["hello"])])
    assert json.loads(reply.as_numpy("COMPONENTS")[0]) == dict.fromkeys(reply_runtime.RUNTIMES, "2")
