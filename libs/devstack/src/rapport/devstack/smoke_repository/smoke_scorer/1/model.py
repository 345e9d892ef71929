"""Scores a user vector against 100 seeded item vectors (runs inside Triton)."""

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

CATALOGUE_SEED = 7
N_ITEMS = 100
DIM = 16


def catalogue() -> np.ndarray:
    return np.random.default_rng(CATALOGUE_SEED).standard_normal((N_ITEMS, DIM)).astype(np.float32)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.items = catalogue()

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            users = pb_utils.get_input_tensor_by_name(request, "USER_VECTOR").as_numpy()
            scores = users.astype(np.float32) @ self.items.T
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor("SCORES", scores.astype(np.float32))])
            )
        return responses
