"""Triton Python backend: intents with out-of-scope detection (intent_runtime.py beside this)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Triton imports this file as <version>.model with the version folder on sys.path, so the
# runtime module shipped beside it (not one installed anywhere) is the one imported.
import intent_runtime
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        directory = Path(args["model_repository"]) / args["model_version"]
        self.model = intent_runtime.IntentModel.load(directory)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()  # (batch, 1)
            vectors = pb_utils.get_input_tensor_by_name(request, "EMBEDDING").as_numpy()
            found = [
                self.model.predict(t.decode("utf-8", "replace"), v)
                for t, v in zip(texts.ravel(), vectors, strict=True)
            ]
            shape = (len(found), 1)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor(
                            "INTENT",
                            np.array([p.intent.encode() for p in found], np.object_).reshape(shape),
                        ),
                        pb_utils.Tensor(
                            "CONFIDENCE",
                            np.array([p.confidence for p in found], np.float32).reshape(shape),
                        ),
                        pb_utils.Tensor(
                            "OUT_OF_SCOPE",
                            np.array([p.out_of_scope for p in found], np.bool_).reshape(shape),
                        ),
                    ]
                )
            )
        return responses
