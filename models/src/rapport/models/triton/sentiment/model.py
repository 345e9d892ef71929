"""Triton Python backend: message sentiment (sentiment_runtime.py beside this file)."""

from __future__ import annotations

from typing import Any

import numpy as np

# Triton imports this file as <version>.model with the version folder on sys.path, so the
# runtime module shipped beside it (not one installed anywhere) is the one imported.
import sentiment_runtime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.model = sentiment_runtime.SentimentModel()

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
