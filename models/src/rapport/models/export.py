"""Writing the Triton model repository: ``<repository>/<model>/config.pbtxt`` and ``<model>/<N>/``.

Each export adds version N = highest existing + 1 for every model. A version
folder is assembled beside the repository and renamed into place in one step,
so Triton's repository poll never sees half a model; with the default version
policy (latest one) Triton loads N and unloads N-1 without a restart.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rapport.models import runtime_files

KEEP_VERSIONS = 3


@dataclass(frozen=True)
class ModelSource:
    name: str  # the Triton model name
    runtime: str | None  # the runtime module copied beside model.py (None: an ensemble)
    directory: Path | None  # trained artefacts to copy (None: code only)


def versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: Path) -> int:
    found = versions(model_dir)
    return found[-1] + 1 if found else 1


def _write_if_changed(path: Path, content: bytes) -> None:
    # Triton reloads a model whose config file changes: leave an identical one untouched.
    if path.exists() and path.read_bytes() == content:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    tmp.replace(path)


def export_model(repository: Path, source: ModelSource, keep: int = KEEP_VERSIONS) -> int:
    model_dir = repository / source.name
    model_dir.mkdir(parents=True, exist_ok=True)
    code = runtime_files.triton_source(source.name)
    _write_if_changed(model_dir / "config.pbtxt", (code / "config.pbtxt").read_bytes())
    version = next_version(model_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{source.name}-", dir=repository.parent))
    try:
        if source.directory is not None:
            for item in source.directory.iterdir():
                if item.is_file():
                    shutil.copyfile(item, staging / item.name)
        # An ensemble is its config alone; Triton still wants a (then empty) version folder.
        if source.runtime is not None:
            shutil.copyfile(code / "model.py", staging / "model.py")
            if not (staging / f"{source.runtime}.py").exists():
                # a trained folder carries the runtime its artefacts were written for
                runtime_files.copy_runtime(source.runtime, staging)
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
    return {s.name: export_model(repository, s, keep) for s in sources}


def write_catalog(path: Path, catalog: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(catalog, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
