"""Triton Python backend: message sentiment (sentiment_runtime.py beside this file)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

RUNTIME = "sentiment_runtime"


def load_runtime(directory: Path, name: str) -> ModuleType:
    """Import the runtime module shipped in this version folder (not one on sys.path)."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_{abs(hash(directory))}", directory / f"{name}.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {name} from {directory}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        directory = Path(args["model_repository"]) / args["model_version"]
        self.model = load_runtime(directory, RUNTIME).SentimentModel()

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()  # (batch, 1)
            found = [self.model.predict(t.decode("utf-8", "replace")) for t in texts.ravel()]
            shape = (len(found), 1)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor(
                            "SENTIMENT",
                            np.array([p.label.encode() for p in found], np.object_).reshape(shape),
                        ),
                        pb_utils.Tensor(
                            "SENTIMENT_SCORE",
                            np.array([p.score for p in found], np.float32).reshape(shape),
                        ),
                    ]
                )
            )
        return responses
