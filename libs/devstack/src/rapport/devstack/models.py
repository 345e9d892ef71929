"""The Triton model repository the local mesh serves, built on first use.

devstack never imports the training code: it runs the ``rapport-models``
console script, which caches trained models, so only the first build trains
(about a minute on two cores) and later ones take seconds.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from rapport.devstack.servers import console_script

DEFAULT_REPOSITORY = Path("models/repository")
MODELS = ("item_scorer", "encoder", "intent_classifier", "sentiment", "reply")


class ModelBuildError(RuntimeError):
    pass


def is_complete(repository: Path) -> bool:
    """Every model has a config and at least one numbered version."""
    return all(
        (repository / name / "config.pbtxt").is_file()
        and any(p.name.isdigit() for p in (repository / name).iterdir())
        for name in MODELS
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
    beside it: a run may add versions to it or lose its Triton without touching the
    original."""
    built = ensure_repository(built)
    target = work / "repository"
    shutil.copytree(built, target)
    catalog = built.parent / "catalog.json"
    if catalog.is_file():
        shutil.copy2(catalog, work / "catalog.json")
    return target
