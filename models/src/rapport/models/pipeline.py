"""Where data, trained models and outputs live, and the cached default models."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from pathlib import Path

import numpy as np

from rapport.models import encoder, intents, movielens, ranking, references, textdata
from rapport.models.runtime.intent_runtime import IntentModel

DATA_ENV = "RAPPORT_DATA_DIR"
CACHE_ENV = "RAPPORT_MODELS_CACHE"
DEFAULT_REPOSITORY = Path("models/repository")
DEFAULT_CATALOG_NAME = "catalog.json"
DEFAULT_REPORTS = Path("models/reports")


class PipelineError(RuntimeError):
    pass


def data_dir() -> Path:
    """``$RAPPORT_DATA_DIR``, else the repository's ``data/`` (CLINC150 ships there)."""
    configured = os.environ.get(DATA_ENV)
    if configured:
        return Path(configured)
    for start in (Path.cwd().resolve(), Path(__file__).resolve()):
        for directory in (start, *start.parents):
            if (directory / "data" / "clinc150").is_dir():
                return directory / "data"
    raise PipelineError(f"no data/clinc150 found above the working directory; set {DATA_ENV}")


def clinc150(split: str) -> Path:
    return data_dir() / "clinc150" / f"{split}.csv"


def served_intents_data() -> list[Path]:
    """What the default model learns: CLINC150 train and Rapport's own chatbot intents."""
    return [clinc150("train"), data_dir() / "rapport" / "intents.csv"]


def default_catalog(repository: Path) -> Path:
    """``models/catalog.json`` for ``models/repository``: beside it, not inside it."""
    return repository.parent / DEFAULT_CATALOG_NAME


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rapport-models"


def fingerprint(*files: Path) -> str:
    """A hash of the training code and the given data files: a cached model's key."""
    digest = hashlib.sha256()
    package = Path(str(resources.files("rapport.models")))
    for path in sorted(package.rglob("*.py")) + sorted(package.rglob("*.pbtxt")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cached(name: str, key: str, build: Callable[[Path], object]) -> Path:
    target = cache_root() / f"{name}-{key}"
    if (target / "metadata.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        build(staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def sentence_vectors(texts: list[str], *, progress: bool = True) -> tuple[np.ndarray, str]:
    """The default encoder's vectors for ``texts``, and that encoder's id."""
    model = encoder.load(default_encoder(progress=progress))
    return encoder.encode_many(model, texts), str(model.id)


def train_intents(
    data: list[Path], out: Path, *, progress: bool = True, held_out: Path | None = None
) -> Path:
    """``held_out``: the texts the drift reference predicts (default CLINC150 val)."""
    labelled = textdata.read_labelled(*data)
    vectors, encoder_id = sentence_vectors(labelled.texts, progress=progress)
    trained = intents.train(
        labelled, intents.IntentParams(), vectors=vectors, encoder=encoder_id, progress=progress
    )
    sample = held_out or clinc150("val")
    texts = textdata.read_texts(sample)
    model = IntentModel(trained.arrays)  # the runtime, as Triton runs it
    reference = references.intent_reference(
        model,
        texts,
        sentence_vectors(texts, progress=progress)[0] if model.uses_vectors else None,
        sample=sample.name if held_out else "CLINC150 val",
        train_vectors=vectors,
        train_labels=labelled.intents,
    )
    return intents.save(
        trained,
        out,
        source=" + ".join(str(d) for d in data),
        reference=reference.model_dump(mode="json"),
    )


def train_items(out: Path, *, progress: bool = True, before: datetime | None = None) -> Path:
    """``before``: only the ratings made before then (a model that has not seen what a
    later time-split holdout holds, as bench/retrain.py needs)."""
    data = movielens.load()
    source = "MovieLens-100K (recbole 1.2.1)"
    if before is not None:
        data = data.before(before.timestamp())
        source += f", ratings before {before.isoformat()}"
    lam = ranking.choose_lambda(data, progress=progress)
    arrays = ranking.train_served(data, lam)
    reference = references.item_reference(data, arrays).model_dump(mode="json")
    return ranking.save(
        arrays,
        out,
        {"source": source, "ease_lambda": lam, "reference": reference},
    )


def default_encoder(*, progress: bool = True) -> Path:
    """all-MiniLM-L6-v2 as an int8 ONNX graph, built on first use and cached."""
    weights = encoder.weights_dir()
    return _cached(
        "encoder-minilm",
        fingerprint(weights / "config.json", weights / "tokenizer.json"),
        encoder.build,
    )


def encoder_for(model_dir: Path, fit_on: str, *, progress: bool = True) -> Path:
    """The default encoder's folder, once it is the one the intent model in ``model_dir``
    was fit on (``fit_on``, its id; empty when the model reads no vectors)."""
    directory = default_encoder(progress=progress)
    found = encoder.model_id(directory)
    if fit_on and fit_on != found:
        raise PipelineError(
            f"{model_dir} was fit on encoder {fit_on}, the default encoder is {found}: retrain it"
        )
    return directory


def default_intents(*, progress: bool = True) -> Path:
    """The served model, trained on first use and cached by code + data hash."""
    data = served_intents_data()
    return _cached(
        "intents-clinc150",
        fingerprint(*data),
        lambda out: train_intents(data, out, progress=progress),
    )


def default_items(*, progress: bool = True) -> Path:
    files = [Path(str(movielens.dataset_dir() / f"ml-100k.{x}")) for x in ("inter", "item")]
    return _cached(
        "items-ml100k", fingerprint(*files), lambda out: train_items(out, progress=progress)
    )
