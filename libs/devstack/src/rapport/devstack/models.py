"""The Triton model repository the local mesh serves, built on first use.

devstack never imports the training code: it runs the ``rapport-models``
console script, which caches trained models, so only the first build trains
(about a minute on two cores) and later ones take seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from rapport.devstack.servers import console_script

DEFAULT_REPOSITORY = Path("models/repository")
MODELS = ("item_scorer", "encoder", "intent_classifier", "sentiment", "reply")
REPLY_COMPONENTS = "components.json"  # rapport.models' reply_runtime.COMPONENTS
REFERENCES = "references.json"  # beside the repository: rapport.models' export.references_path
REFERENCED = ("item_scorer", "intent_classifier")  # the models with a drift reference


class ModelBuildError(RuntimeError):
    pass


def _latest(model_dir: Path) -> Path | None:
    found = [p for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.is_dir() else []
    return max(found, key=lambda p: int(p.name)) if found else None


def is_complete(repository: Path) -> bool:
    """Every model has a config and at least one numbered version, the reply model's
    latest carries its components (a repository from before it was one step, when its
    versions were an ensemble's empty folders, is exported again), and references.json
    beside it holds the drift reference of the latest item scorer and intent model (one
    exported before references existed lacks them, and its configs lack the new-item
    inputs: it is exported again)."""
    if not all((repository / name / "config.pbtxt").is_file() for name in MODELS):
        return False
    latest = {name: _latest(repository / name) for name in MODELS}
    reply = latest["reply"]
    if not (all(latest.values()) and reply is not None and (reply / REPLY_COMPONENTS).is_file()):
        return False
    try:
        references = json.loads((repository.parent / REFERENCES).read_text())
    except (OSError, ValueError):
        return False
    return all(
        isinstance(references.get(name), dict) and found.name in references[name]
        for name in REFERENCED
        if (found := latest[name]) is not None
    )


def ensure_repository(repository: Path = DEFAULT_REPOSITORY) -> Path:
    if is_complete(repository):
        return repository
    print(f"building the model repository {repository} (trained models are cached)...")
    try:
        subprocess.run(  # noqa: S603 - our own console script, fixed arguments
            [console_script("rapport-models"), "export", "--repository", str(repository)],
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ModelBuildError(f"rapport-models export failed: {exc}") from exc
    return repository


def private_copy(work: Path, built: Path = DEFAULT_REPOSITORY) -> Path:
    """A copy of the repository (built first if missing) in ``work``, with its catalogue
    and drift references beside it: a run may add versions to it or lose its Triton without
    touching the original."""
    built = ensure_repository(built)
    target = work / "repository"
    shutil.copytree(built, target)
    for beside in ("catalog.json", "references.json"):  # the titles; the drift references
        if (built.parent / beside).is_file():
            shutil.copy2(built.parent / beside, work / beside)
    return target
