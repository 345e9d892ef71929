"""The runtime modules travel verbatim: copied into model folders, imported back by path."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from types import ModuleType

from rapport.models.runtime import reply_runtime


def runtime_source(name: str) -> Path:
    return Path(str(resources.files("rapport.models.runtime") / f"{name}.py"))


def triton_source(model: str) -> Path:
    return Path(str(resources.files("rapport.models") / "triton" / model))


def copy_runtime(name: str, directory: Path) -> Path:
    target = directory / f"{name}.py"
    shutil.copyfile(runtime_source(name), target)
    return target


def load_runtime(directory: Path, name: str) -> ModuleType:
    """Import ``directory/name.py`` as its own module, as Triton's model.py does (the reply
    model imports its components' runtimes with the same function)."""
    path = Path(directory) / f"{name}.py"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: is {directory} a model folder?")
    return reply_runtime.import_path(path)
