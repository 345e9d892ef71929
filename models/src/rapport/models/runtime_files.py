"""The runtime modules travel verbatim: copied into model folders, imported back by path."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType


def runtime_source(name: str) -> Path:
    return Path(str(resources.files("rapport.models.runtime") / f"{name}.py"))


def triton_source(model: str) -> Path:
    return Path(str(resources.files("rapport.models") / "triton" / model))


def copy_runtime(name: str, directory: Path) -> Path:
    target = directory / f"{name}.py"
    shutil.copyfile(runtime_source(name), target)
    return target


def load_runtime(directory: Path, name: str) -> ModuleType:
    """Import ``directory/name.py`` as its own module, as Triton's model.py does."""
    path = Path(directory) / f"{name}.py"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: is {directory} a model folder?")
    spec = importlib.util.spec_from_file_location(f"{name}_{abs(hash(path.resolve()))}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module
