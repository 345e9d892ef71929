"""The one-step ``reply`` model offline: an exported version folder, loaded as Triton does,
answers as the four standalone models' runtimes called one by one."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from rapport.models import encoder, export, intents, runtime_files, textdata
from rapport.models.runtime import reply_runtime

pytestmark = pytest.mark.unit

CLINC = Path(__file__).resolve().parents[2] / "data" / "clinc150"
MESSAGES = [  # in scope of the small intent model below (alarm, balance...) and not
    "please set an alarm for 7am tomorrow",
    "what is the balance in my checking account, I love this bank!",
    "are you a robot?",
    "what movie should I watch tonight?",
    "this is terrible and I am angry",
    "how do I say good night in Italian",
    "",
    "Ünïcödé façade, naïve café 😀",
]
# (history, weights, affinities, exclude, filter, k) as recommend sends them
QUERIES: list[tuple[list[str], list[float], dict[str, float], list[str], list[str], int]] = [
    ([], [], {}, [], [], 3),
    (["10", "unknown"], [1.0, 5.0], {}, [], [], 3),
    (["11"], [1.0], {"Drama": 1.0, "Comedy": 0.4}, ["12"], [], 10),
    ([], [], {"Comedy": 1.0}, [], ["Drama"], 2),
]


def tiny_items(out: Path) -> Path:
    """A four-item catalogue in the item scorer's artefact format."""
    out.mkdir()
    np.savez(
        out / "item_scorer.npz",
        item_ids=np.array(["10", "11", "12", "13"]),
        titles=np.array(["A", "B", "C", "D"]),
        genre_names=np.array(["Comedy", "Drama"]),
        genres=np.array([[1, 0], [1, 1], [0, 1], [1, 0]], np.float32),
        similarity=np.array(
            [[0, 0.9, 0.2, 0], [0, 0, 0.5, 0], [0.1, 0, 0, 0], [0, 0, 0, 0]], np.float32
        ),
        popularity=np.array([0.2, 0.1, 0.3, 1.0], np.float32),
        centroids=np.array([[1.0, 0.0], [0.0, 1.0]], np.float32),
        segment_names=np.array(["Comedy fans", "Drama fans"]),
        global_profile=np.array([0.6, 0.4], np.float32),
        affinity_weight=np.array(0.1, np.float32),
        popularity_weight=np.array(0.01, np.float32),
    )
    runtime_files.copy_runtime("item_runtime", out)
    return out


def small_intents(out: Path, encoder_dir: Path) -> Path:
    """Eight CLINC150 intents and oos, 25 examples each, on the encoder's real vectors."""
    train = textdata.read_labelled(CLINC / "train.csv")
    keep = set(train.in_scope_labels[:8]) | {textdata.OOS_LABEL}
    rows: dict[str, list[str]] = {}
    for text, intent in zip(train.texts, train.intents, strict=True):
        if intent in keep and len(rows.setdefault(intent, [])) < 25:
            rows[intent].append(text)
    data = textdata.Labelled(
        [t for texts in rows.values() for t in texts],
        [i for i, texts in rows.items() for _ in texts],
    )
    model = encoder.load(encoder_dir)
    vectors = encoder.encode_many(model, data.texts)
    trained = intents.train(
        data, intents.IntentParams(folds=3), vectors=vectors, encoder=model.id, progress=False
    )
    return intents.save(trained, out, source="unit test")


@dataclass(frozen=True)
class Exported:
    repository: Path
    versions: dict[str, int]

    def folder(self, model: str) -> Path:
        return self.repository / model / str(self.versions[model])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """An export as ``rapport-models export`` writes it, from small trained models."""
    root = tmp_path_factory.mktemp("reply")
    encoder_dir = encoder.build(root / "encoder")
    sources = export.served_models(
        tiny_items(root / "items"), encoder_dir, small_intents(root / "intents", encoder_dir)
    )
    repository = root / "repository"
    (repository / "encoder" / "4").mkdir(parents=True)  # the models' numbers differ
    return Exported(repository, export.export_repository(repository, sources))


def load(folder: Path, module: str) -> ModuleType:
    return runtime_files.load_runtime(folder, module)


@pytest.fixture(scope="module")
def reply(exported: Exported) -> reply_runtime.Reply:
    folder = exported.folder("reply")
    loaded: reply_runtime.Reply = load(folder, "reply_runtime").Reply.load(folder)
    return loaded


def bytes_array(values: list[str], shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.array([v.encode() for v in values], dtype=np.object_)
    return array.reshape(shape) if shape else array


def request(
    message: str, query: tuple[list[str], list[float], dict[str, float], list[str], list[str], int]
) -> dict[str, np.ndarray | None]:
    history, weights, affinities, exclude, only, k = query
    return {
        "HISTORY_ITEMS": bytes_array(history),
        "HISTORY_WEIGHTS": np.array(weights, np.float32),
        "CATEGORY_NAMES": bytes_array(list(affinities)),
        "CATEGORY_WEIGHTS": np.array(list(affinities.values()), np.float32),
        "EXCLUDE_ITEMS": bytes_array(exclude),
        "CATEGORY_FILTER": bytes_array(only),
        "K": np.array([k], np.int32),
        "TEXT": bytes_array([message], (1, 1)),
    }


def test_the_reply_folder_carries_its_components_as_exported(exported: Exported) -> None:
    folder = exported.folder("reply")
    assert exported.versions["encoder"] == 5
    assert exported.versions["reply"] == 1
    components = json.loads((folder / reply_runtime.COMPONENTS).read_text())
    # the standalone encoder's number, which knowledge's index and recommend's vectors share
    assert components == {name: str(exported.versions[name]) for name in reply_runtime.RUNTIMES}
    for name in reply_runtime.RUNTIMES:
        own = exported.folder(name)
        copied = sorted(p.name for p in (folder / name).iterdir() if p.is_file())
        assert copied == sorted(
            p.name for p in own.iterdir() if p.is_file() and p.name != "model.py"
        )
        for file in copied:
            assert (folder / name / file).read_bytes() == (own / file).read_bytes(), file
    assert (folder / "reply_runtime.py").read_bytes() == Path(reply_runtime.__file__).read_bytes()


@pytest.fixture(scope="module")
def standalone(exported: Exported) -> dict[str, Any]:
    """Each standalone model's runtime from its own version folder, as its model.py builds it."""
    folder = {name: exported.folder(name) for name in reply_runtime.RUNTIMES}
    return {
        "item_scorer": load(folder["item_scorer"], "item_runtime").ItemScorer.load(
            folder["item_scorer"]
        ),
        "encoder": load(folder["encoder"], "encoder_runtime").Encoder(folder["encoder"]),
        "intent_classifier": load(folder["intent_classifier"], "intent_runtime").IntentModel.load(
            folder["intent_classifier"]
        ),
        "sentiment": load(folder["sentiment"], "sentiment_runtime").SentimentModel(),
    }


@pytest.mark.parametrize("message", MESSAGES)
def test_the_reply_answers_as_the_four_runtimes_one_by_one(
    reply: reply_runtime.Reply, standalone: dict[str, Any], message: str
) -> None:
    scorer, classifier = standalone["item_scorer"], standalone["intent_classifier"]
    vector = standalone["encoder"].encode([message])
    intent = classifier.predict(message, vector[0])
    mood = standalone["sentiment"].predict(message)
    for query in QUERIES:
        history, weights, affinities, exclude, only, k = query
        ranked = scorer.recommend(
            history_items=history,
            history_weights=np.array(weights, np.float32),
            category_names=list(affinities),
            category_weights=np.array(list(affinities.values()), np.float32),
            exclude_items=exclude,
            category_filter=only,
            k=k,
        )
        out = reply.answer(request(message, query))
        assert [v.decode() for v in out["ITEM_IDS"]] == ranked.item_ids
        np.testing.assert_array_equal(out["SCORES"], ranked.scores)
        assert [v.decode() for v in out["TITLES"]] == ranked.titles
        assert [v.decode() for v in out["CATEGORIES"]] == ranked.categories
        assert [v.decode() for v in out["BECAUSE_ITEMS"]] == ranked.because
        assert out["SEGMENT"].tolist() == [ranked.segment]
        assert out["SEGMENT_NAME"].tolist() == [ranked.segment_name.encode()]
        np.testing.assert_array_equal(out["EMBEDDING"], vector)
        assert out["INTENT"].tolist() == [[intent.intent.encode()]]
        assert out["CONFIDENCE"].tolist() == [[np.float32(intent.confidence)]]
        assert out["OUT_OF_SCOPE"].tolist() == [[intent.out_of_scope]]
        assert out["SENTIMENT"].tolist() == [[mood.label.encode()]]
        assert out["SENTIMENT_SCORE"].tolist() == [[np.float32(mood.score)]]
        assert json.loads(out["COMPONENTS"][0]) == reply.versions


def test_the_messages_are_not_all_alike(reply: reply_runtime.Reply) -> None:
    """Else the comparison above would hold for a model that ignores its input."""
    answers = [reply.answer(request(m, QUERIES[0])) for m in MESSAGES]
    assert len({a["INTENT"].item() for a in answers}) >= 3
    assert {a["SENTIMENT"].item() for a in answers} == {b"negative", b"neutral", b"positive"}


def test_the_outputs_have_the_ensembles_shapes_and_types(reply: reply_runtime.Reply) -> None:
    out = reply.answer(request("hello there", QUERIES[2]))
    declared = {  # the config's dims and types (the four-step ensemble's, plus COMPONENTS)
        "ITEM_IDS": ((2,), np.object_),
        "SCORES": ((2,), np.float32),
        "TITLES": ((2,), np.object_),
        "CATEGORIES": ((2,), np.object_),
        "BECAUSE_ITEMS": ((2,), np.object_),
        "SEGMENT": ((1,), np.int32),
        "SEGMENT_NAME": ((1,), np.object_),
        "INTENT": ((1, 1), np.object_),
        "CONFIDENCE": ((1, 1), np.float32),
        "OUT_OF_SCOPE": ((1, 1), np.bool_),
        "SENTIMENT": ((1, 1), np.object_),
        "SENTIMENT_SCORE": ((1, 1), np.float32),
        "EMBEDDING": ((1, 384), np.float32),
        "COMPONENTS": ((1,), np.object_),
    }
    assert {name: (a.shape, a.dtype.type) for name, a in out.items()} == declared
    assert out["EMBEDDING"].flags["C_CONTIGUOUS"]


def test_optional_inputs_may_be_left_out_and_bad_ones_say_why(
    reply: reply_runtime.Reply,
) -> None:
    full = request("hi", QUERIES[0])
    bare: dict[str, np.ndarray | None] = {
        "K": full["K"],
        "TEXT": full["TEXT"],
        "EXCLUDE_ITEMS": None,
    }
    assert reply.answer(bare)["ITEM_IDS"].tolist() == reply.answer(full)["ITEM_IDS"].tolist()
    with pytest.raises(ValueError, match="HISTORY_WEIGHTS"):
        reply.answer({**full, "HISTORY_ITEMS": bytes_array(["10", "11"])})


# New items (recommend's catalogue overlay): one per row, categories joined with "|".
NEW_ITEMS = {
    "NEW_ITEM_IDS": bytes_array(["n1", "13", "n2"]),
    "NEW_ITEM_TITLES": bytes_array(["New drama", "Not the model's D", "New podcast"]),
    "NEW_ITEM_CATEGORIES": bytes_array(["Drama|Podcasts", "Comedy", "Podcasts"]),
}
NEW_ITEM_PARTS = ("IDS", "TITLES", "CATEGORIES")  # ItemScorer.new_items' argument order


def test_the_reply_ranks_new_items_as_the_scorer_does(
    reply: reply_runtime.Reply, standalone: dict[str, Any]
) -> None:
    scorer = standalone["item_scorer"]
    history, weights, affinities, exclude, only, k = QUERIES[2]
    ranked = scorer.recommend(
        history_items=history,
        history_weights=np.array(weights, np.float32),
        category_names=list(affinities),
        category_weights=np.array(list(affinities.values()), np.float32),
        exclude_items=exclude,
        category_filter=only,
        k=k,
        new_items=scorer.new_items(
            *([v.decode() for v in NEW_ITEMS[f"NEW_ITEM_{part}"]] for part in NEW_ITEM_PARTS)
        ),
    )
    out = reply.answer(request("hi", QUERIES[2]) | NEW_ITEMS)
    ids = [v.decode() for v in out["ITEM_IDS"]]
    assert ids == ranked.item_ids
    assert {"n1", "n2"} <= set(ids)  # the liked drama and the unknown category's prior
    np.testing.assert_array_equal(out["SCORES"], ranked.scores)
    assert [v.decode() for v in out["TITLES"]] == ranked.titles
    assert out["TITLES"][ids.index("13")] == b"D"  # the model's own item keeps its data
    assert out["CATEGORIES"][ids.index("n1")] == b"Drama|Podcasts"


class OlderScorer:
    """An item runtime exported before new items: no ``new_items``, no such argument."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer

    def recommend(self, **inputs: Any) -> Any:
        assert "new_items" not in inputs
        return self.scorer.recommend(**inputs)


def test_a_reply_on_an_older_item_runtime_ranks_as_before(reply: reply_runtime.Reply) -> None:
    older = dataclasses.replace(reply, scorer=OlderScorer(reply.scorer))  # type: ignore[arg-type]
    with_new = older.answer(request("hi", QUERIES[2]) | NEW_ITEMS)
    assert (
        with_new["ITEM_IDS"].tolist()
        == reply.answer(request("hi", QUERIES[2]))["ITEM_IDS"].tolist()
    )


# ---- model.py as Triton's stub runs it, with a stand-in triton_python_backend_utils ----


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


class Response:
    def __init__(self, output_tensors: list[Tensor], error: str | None = None) -> None:
        self.outputs = {t.name: t.array for t in output_tensors}
        self.error = error


def fake_pb_utils() -> ModuleType:
    module = ModuleType("triton_python_backend_utils")
    module.Tensor = Tensor  # type: ignore[attr-defined]
    module.InferenceResponse = Response  # type: ignore[attr-defined]
    module.TritonError = str  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: request.get(name)  # type: ignore[attr-defined]
    return module


@pytest.fixture
def stub(exported: Exported, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The reply's model.py, imported with its version folder on sys.path as Triton does."""
    folder = exported.folder("reply")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils())
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "reply_runtime", raising=False)
    model = runtime_files.load_runtime(folder, "model").TritonPythonModel()
    model.initialize({"model_repository": str(folder.parent), "model_version": folder.name})
    yield model
    sys.modules.pop("reply_runtime", None)


def test_model_py_answers_each_request_once(stub: Any, reply: reply_runtime.Reply) -> None:
    requests = [
        {name: Tensor(name, a) for name, a in request(m, q).items() if a is not None}
        for m, q in zip(MESSAGES[:3], QUERIES, strict=False)
    ]
    bad = dict(requests[0])
    bad["HISTORY_ITEMS"] = Tensor("HISTORY_ITEMS", bytes_array(["10"]))
    responses = stub.execute([*requests, bad])
    assert len(responses) == 4
    for response, m, q in zip(responses[:3], MESSAGES, QUERIES, strict=False):
        expected = reply.answer(request(m, q))
        assert response.error is None
        assert response.outputs.keys() == expected.keys()
        assert response.outputs["INTENT"].tolist() == expected["INTENT"].tolist()
        assert response.outputs["ITEM_IDS"].tolist() == expected["ITEM_IDS"].tolist()
        np.testing.assert_array_equal(response.outputs["EMBEDDING"], expected["EMBEDDING"])
    assert "HISTORY_WEIGHTS" in (responses[3].error or "")


def test_the_item_scorers_model_py_takes_new_items(
    exported: Exported, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = exported.folder("item_scorer")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils())
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "item_runtime", raising=False)
    try:
        model = runtime_files.load_runtime(folder, "model").TritonPythonModel()
        model.initialize({"model_repository": str(folder.parent), "model_version": folder.name})
        inputs = {n: a for n, a in request("", QUERIES[2]).items() if n != "TEXT"} | NEW_ITEMS
        good = {name: Tensor(name, a) for name, a in inputs.items() if a is not None}
        bad = good | {"NEW_ITEM_TITLES": Tensor("NEW_ITEM_TITLES", bytes_array(["one"]))}
        answered, refused = model.execute([good, bad])
    finally:
        sys.modules.pop("item_runtime", None)
    assert {b"n1", b"n2"} <= set(answered.outputs["ITEM_IDS"].tolist())
    assert "NEW_ITEM_TITLES" in (refused.error or "")
