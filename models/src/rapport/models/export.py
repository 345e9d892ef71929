"""Writing the Triton model repository: ``<repository>/<model>/config.pbtxt`` and ``<model>/<N>/``.

Each export adds version N = highest existing + 1 for every model. A version
folder is assembled beside the repository and renamed into place in one step,
so Triton's repository poll never sees half a model; with the default version
policy (latest one) Triton loads N and unloads N-1 without a restart. A model that
bundles others (``reply``) copies the versions written earlier in the same run into
subfolders of its own, with ``components.json`` naming them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rapport.models import runtime_files
from rapport.models.runtime import reply_runtime

KEEP_VERSIONS = 3


@dataclass(frozen=True)
class ModelSource:
    name: str  # the Triton model name
    runtime: str  # the runtime module copied beside model.py
    directory: Path | None  # trained artefacts to copy (None: code only)
    # Models whose versions exported in the same run this one carries, each in a subfolder.
    components: tuple[str, ...] = ()


# The four models in one Triton step, carrying the versions exported before it.
REPLY = ModelSource("reply", "reply_runtime", None, tuple(reply_runtime.RUNTIMES))


def served_models(items: Path, encoder: Path, intents: Path) -> list[ModelSource]:
    """What ``rapport-models export`` writes, in order: a bundle after its components."""
    return [
        ModelSource("item_scorer", "item_runtime", items),
        ModelSource("encoder", "encoder_runtime", encoder),
        ModelSource("intent_classifier", "intent_runtime", intents),
        ModelSource("sentiment", "sentiment_runtime", None),
        REPLY,
    ]


def versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: Path) -> int:
    found = versions(model_dir)
    return found[-1] + 1 if found else 1


def _replace(path: Path, content: bytes) -> None:
    """Written whole or not at all: a reader (Triton, recommend, profile) never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    tmp.replace(path)


def _write_if_changed(path: Path, content: bytes) -> None:
    # Triton reloads a model whose config file changes: leave an identical one untouched.
    if path.exists() and path.read_bytes() == content:
        return
    _replace(path, content)


def _copy_files(source: Path, target: Path, *, skip: tuple[str, ...] = ()) -> None:
    for item in source.iterdir():
        if item.is_file() and item.name not in skip:
            shutil.copyfile(item, target / item.name)


def export_model(
    repository: Path,
    source: ModelSource,
    keep: int = KEEP_VERSIONS,
    exported: Mapping[str, int] | None = None,
) -> int:
    """Add the next version of ``source``; ``exported``: the versions this run wrote so far
    (a bundle's components are copied from them)."""
    exported = exported or {}
    if missing := [c for c in source.components if c not in exported]:
        raise ValueError(f"{source.name} carries {', '.join(missing)}: export them first")
    model_dir = repository / source.name
    model_dir.mkdir(parents=True, exist_ok=True)
    code = runtime_files.triton_source(source.name)
    _write_if_changed(model_dir / "config.pbtxt", (code / "config.pbtxt").read_bytes())
    version = next_version(model_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{source.name}-", dir=repository.parent))
    try:
        if source.directory is not None:
            _copy_files(source.directory, staging)
        shutil.copyfile(code / "model.py", staging / "model.py")
        if not (staging / f"{source.runtime}.py").exists():
            # a trained folder carries the runtime its artefacts were written for
            runtime_files.copy_runtime(source.runtime, staging)
        for component in source.components:
            # what the component's own version folder holds, less the model.py Triton runs
            (staging / component).mkdir()
            version_dir = repository / component / str(exported[component])
            _copy_files(version_dir, staging / component, skip=("model.py",))
        if source.components:
            found = {c: str(exported[c]) for c in source.components}
            (staging / reply_runtime.COMPONENTS).write_text(json.dumps(found, indent=1) + "\n")
        staging.chmod(0o755)
        staging.rename(model_dir / str(version))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in versions(model_dir)[:-keep]:
        shutil.rmtree(model_dir / str(old))
    return version


def export_repository(
    repository: Path, sources: list[ModelSource], keep: int = KEEP_VERSIONS
) -> dict[str, int]:
    repository.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    for source in sources:
        written[source.name] = export_model(repository, source, keep, written)
    return written


def served_version(repository: Path, name: str) -> int:
    """The version Triton serves of ``name`` (the default policy: the highest)."""
    found = versions(repository / name)
    if not found:
        raise FileNotFoundError(f"{repository / name} holds no version")
    return found[-1]


def export_items(repository: Path, items: Path, keep: int = KEEP_VERSIONS) -> dict[str, int]:
    """A new ``item_scorer`` from ``items``, and a new ``reply`` bundling it with the
    versions of the other models served now (retraining changes the ranker only)."""
    written = {c: served_version(repository, c) for c in REPLY.components if c != "item_scorer"}
    written["item_scorer"] = export_model(
        repository, ModelSource("item_scorer", "item_runtime", items), keep
    )
    written["reply"] = export_model(repository, REPLY, keep, written)
    return {name: written[name] for name in ("item_scorer", "reply")}


def write_catalog(path: Path, catalog: list[dict[str, object]]) -> None:
    _replace(path, (json.dumps(catalog, ensure_ascii=False, indent=1) + "\n").encode())


REFERENCES_NAME = "references.json"


def references_path(catalog_path: Path) -> Path:
    """``references.json`` beside the catalogue (the image ships both in /models/catalog)."""
    return catalog_path.parent / REFERENCES_NAME


def repository_references(repository: Path) -> dict[str, dict[str, object]]:
    """``{model: {version: reference}}`` for every version in ``repository`` whose
    ``metadata.json`` has a drift reference (rapport.models.references)."""
    found: dict[str, dict[str, object]] = {}
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
        for version in versions(model_dir):
            metadata = model_dir / str(version) / "metadata.json"
            if not metadata.is_file():
                continue
            reference = json.loads(metadata.read_text(encoding="utf-8")).get("reference")
            if reference is not None:
                found.setdefault(model_dir.name, {})[str(version)] = reference
    return found


def write_references(path: Path, repository: Path) -> None:
    """The references of every version in ``repository``, written whole or not at all:
    recommend and profile reload the file when it changes."""
    _replace(path, (json.dumps(repository_references(repository)) + "\n").encode())


def write_beside_repository(
    catalog_path: Path, catalog: list[dict[str, object]], repository: Path
) -> None:
    """After an export: ``catalog.json`` and, beside it, ``references.json`` for every
    version now in ``repository`` (what recommend and profile read)."""
    write_catalog(catalog_path, catalog)
    write_references(references_path(catalog_path), repository)
