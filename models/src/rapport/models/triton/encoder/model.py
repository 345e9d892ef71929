"""Triton Python backend: unit-length sentence vectors (encoder_runtime.py beside this)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Triton imports this file as <version>.model with the version folder on sys.path, so the
# runtime module shipped beside it (not one installed anywhere) is the one imported.
import encoder_runtime
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        directory = Path(args["model_repository"]) / args["model_version"]
        self.encoder = encoder_runtime.Encoder(directory)

    def execute(self, requests: list[Any]) -> list[Any]:
        # One encode call for all the requests the dynamic batcher gathered (an int8 graph
        # still runs each text alone: encoder_runtime.Encoder.one_at_a_time).
        texts = [pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy().ravel() for r in requests]
        flat = [t.decode("utf-8", "replace") for batch in texts for t in batch]
        vectors = self.encoder.encode(flat)
        responses, start = [], 0
        for batch in texts:
            rows = vectors[start : start + len(batch)]
            start += len(batch)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("EMBEDDING", np.ascontiguousarray(rows))]
                )
            )
        return responses
