"""One chat reply in one step: the ranking, the message's vector, intent and sentiment.

The ``reply`` model's version folder holds one subfolder per component model
(``item_scorer/``, ``encoder/``, ``intent_classifier/``, ``sentiment/``): a copy of
that model's version folder from the same export, artefacts and runtime module, and
``components.json``, the versions copied. Each runtime is imported by path from its
subfolder, so a reply runs the standalone models' code on their artefacts, in one
Python-backend stub instead of four. numpy only, like the runtimes.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # at serve time they are imported by path (load), not as a package
    from .encoder_runtime import Encoder
    from .intent_runtime import IntentModel
    from .item_runtime import ItemScorer
    from .sentiment_runtime import SentimentModel

COMPONENTS = "components.json"
# Each component model (its subfolder) and the runtime module it holds.
RUNTIMES = {
    "item_scorer": "item_runtime",
    "encoder": "encoder_runtime",
    "intent_classifier": "intent_runtime",
    "sentiment": "sentiment_runtime",
}
DEFAULT_K = 10  # item_scorer's model.py, when K is empty


def import_path(path: Path) -> ModuleType:
    """Import ``path`` as a module of its own: two folders' files of one name never clash."""
    spec = importlib.util.spec_from_file_location(f"{path.stem}_{abs(hash(path.resolve()))}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def strings(array: np.ndarray | None, errors: str = "strict") -> list[str]:
    if array is None:
        return []
    return [v.decode("utf-8", errors) if isinstance(v, bytes) else str(v) for v in array.ravel()]


def floats(array: np.ndarray | None) -> np.ndarray:
    if array is None:
        return np.zeros(0, np.float32)
    return np.asarray(array, np.float32).ravel()


def as_bytes(values: list[str]) -> np.ndarray:
    return np.array([v.encode("utf-8") for v in values], dtype=np.object_)


@dataclass(frozen=True)
class Reply:
    scorer: ItemScorer
    encoder: Encoder
    intents: IntentModel
    sentiment: SentimentModel
    versions: dict[str, str]  # component model -> the version it was copied from

    @classmethod
    def load(cls, directory: Path) -> Reply:
        directory = Path(directory)
        versions = json.loads((directory / COMPONENTS).read_text())
        missing = sorted(set(RUNTIMES) - set(versions))
        if missing:
            raise ValueError(f"{directory / COMPONENTS} lacks {', '.join(missing)}")
        folders = {name: directory / name for name in RUNTIMES}
        modules = {
            name: import_path(folders[name] / f"{module}.py") for name, module in RUNTIMES.items()
        }
        # as each component's own model.py builds its runtime
        return cls(
            scorer=modules["item_scorer"].ItemScorer.load(folders["item_scorer"]),
            encoder=modules["encoder"].Encoder(folders["encoder"]),
            intents=modules["intent_classifier"].IntentModel.load(folders["intent_classifier"]),
            sentiment=modules["sentiment"].SentimentModel(),
            versions={str(name): str(version) for name, version in versions.items()},
        )

    def answer(self, inputs: Mapping[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        """One request's outputs, in the shapes the four-step ensemble returned.

        ``inputs`` maps a tensor name to its array; an optional input may be absent
        or None. A ValueError says what is wrong with the request.
        """
        given = inputs.get("K")
        k = np.zeros(0, np.int32) if given is None else given.ravel()
        extra = {}
        if hasattr(self.scorer, "new_items"):  # a runtime exported before them has not
            extra["new_items"] = self.scorer.new_items(
                strings(inputs.get("NEW_ITEM_IDS")),
                strings(inputs.get("NEW_ITEM_TITLES")),
                strings(inputs.get("NEW_ITEM_CATEGORIES")),
            )
        ranked = self.scorer.recommend(
            history_items=strings(inputs.get("HISTORY_ITEMS")),
            history_weights=floats(inputs.get("HISTORY_WEIGHTS")),
            category_names=strings(inputs.get("CATEGORY_NAMES")),
            category_weights=floats(inputs.get("CATEGORY_WEIGHTS")),
            exclude_items=strings(inputs.get("EXCLUDE_ITEMS")),
            category_filter=strings(inputs.get("CATEGORY_FILTER")),
            k=int(k[0]) if len(k) else DEFAULT_K,
            **extra,
        )
        texts = strings(inputs.get("TEXT"), "replace")  # TEXT is [1, 1]: one message
        vectors = self.encoder.encode(texts)
        found = [self.intents.predict(t, v) for t, v in zip(texts, vectors, strict=True)]
        moods = [self.sentiment.predict(t) for t in texts]
        column = (len(texts), 1)
        return {
            "ITEM_IDS": as_bytes(ranked.item_ids),
            "SCORES": ranked.scores.astype(np.float32),
            "TITLES": as_bytes(ranked.titles),
            "CATEGORIES": as_bytes(ranked.categories),
            "BECAUSE_ITEMS": as_bytes(ranked.because),
            "SEGMENT": np.array([ranked.segment], np.int32),
            "SEGMENT_NAME": as_bytes([ranked.segment_name]),
            "INTENT": as_bytes([p.intent for p in found]).reshape(column),
            "CONFIDENCE": np.array([p.confidence for p in found], np.float32).reshape(column),
            "OUT_OF_SCOPE": np.array([p.out_of_scope for p in found], np.bool_).reshape(column),
            "SENTIMENT": as_bytes([m.label for m in moods]).reshape(column),
            "SENTIMENT_SCORE": np.array([m.score for m in moods], np.float32).reshape(column),
            "EMBEDDING": np.ascontiguousarray(vectors, np.float32),
            "COMPONENTS": as_bytes([json.dumps(self.versions)]),
        }
