"""Triton Python backend: the item scorer. The logic is item_runtime.py beside this file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Triton imports this file as <version>.model with the version folder on sys.path, so the
# runtime module shipped beside it (not one installed anywhere) is the one imported.
import item_runtime
import numpy as np
import triton_python_backend_utils as pb_utils


def strings(request: Any, name: str) -> list[str]:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return []
    return [
        v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in tensor.as_numpy().ravel()
    ]


def floats(request: Any, name: str) -> np.ndarray:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return np.zeros(0, np.float32)
    return np.asarray(tensor.as_numpy(), np.float32).ravel()


def as_bytes(values: list[str]) -> np.ndarray:
    return np.array([v.encode("utf-8") for v in values], dtype=np.object_)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        directory = Path(args["model_repository"]) / args["model_version"]
        self.scorer = item_runtime.ItemScorer.load(directory)

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self.answer(request) for request in requests]

    def answer(self, request: Any) -> Any:
        try:
            k = pb_utils.get_input_tensor_by_name(request, "K").as_numpy().ravel()
            extra = {}
            if hasattr(self.scorer, "new_items"):  # a runtime exported before them has not
                extra["new_items"] = self.scorer.new_items(
                    strings(request, "NEW_ITEM_IDS"),
                    strings(request, "NEW_ITEM_TITLES"),
                    strings(request, "NEW_ITEM_CATEGORIES"),
                )
            ranked = self.scorer.recommend(
                history_items=strings(request, "HISTORY_ITEMS"),
                history_weights=floats(request, "HISTORY_WEIGHTS"),
                category_names=strings(request, "CATEGORY_NAMES"),
                category_weights=floats(request, "CATEGORY_WEIGHTS"),
                exclude_items=strings(request, "EXCLUDE_ITEMS"),
                category_filter=strings(request, "CATEGORY_FILTER"),
                k=int(k[0]) if len(k) else 10,
                **extra,
            )
        except ValueError as exc:  # the caller's input is inconsistent: say why
            return pb_utils.InferenceResponse(
                output_tensors=[], error=pb_utils.TritonError(str(exc))
            )
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("ITEM_IDS", as_bytes(ranked.item_ids)),
                pb_utils.Tensor("SCORES", ranked.scores.astype(np.float32)),
                pb_utils.Tensor("TITLES", as_bytes(ranked.titles)),
                pb_utils.Tensor("CATEGORIES", as_bytes(ranked.categories)),
                pb_utils.Tensor("BECAUSE_ITEMS", as_bytes(ranked.because)),
                pb_utils.Tensor("SEGMENT", np.array([ranked.segment], np.int32)),
                pb_utils.Tensor("SEGMENT_NAME", as_bytes([ranked.segment_name])),
            ]
        )
