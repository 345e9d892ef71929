"""Triton Python backend: one reply's four models in one step (reply_runtime.py beside this)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Triton imports this file as <version>.model with the version folder on sys.path, so the
# runtime module shipped beside it (not one installed anywhere) is the one imported; it
# imports the four component runtimes by path from their subfolders.
import reply_runtime
import triton_python_backend_utils as pb_utils

INPUTS = (
    "HISTORY_ITEMS",
    "HISTORY_WEIGHTS",
    "CATEGORY_NAMES",
    "CATEGORY_WEIGHTS",
    "EXCLUDE_ITEMS",
    "CATEGORY_FILTER",
    "NEW_ITEM_IDS",
    "NEW_ITEM_TITLES",
    "NEW_ITEM_CATEGORIES",
    "K",
    "TEXT",
)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        directory = Path(args["model_repository"]) / args["model_version"]
        self.reply = reply_runtime.Reply.load(directory)

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self.answer(request) for request in requests]  # one response per request

    def answer(self, request: Any) -> Any:
        inputs = {}
        for name in INPUTS:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            inputs[name] = None if tensor is None else tensor.as_numpy()
        try:
            outputs = self.reply.answer(inputs)
        except ValueError as exc:  # the caller's input is inconsistent: say why
            return pb_utils.InferenceResponse(
                output_tensors=[], error=pb_utils.TritonError(str(exc))
            )
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, array) for name, array in outputs.items()]
        )
