"""Sentence vectors at serve time: the ``tokenizers`` library and an onnxruntime session.

The same code runs inside Triton's Python backend and offline (training the
intent head, ``rapport-models predict``), so a vector is the same either way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

GRAPH = "encoder.onnx"
GRAPH_FP32 = "encoder_fp32.onnx"
TOKENIZER = "tokenizer.json"
SETTINGS = "encoder.json"
THREADS_ENV = "RAPPORT_ENCODER_THREADS"


class Encoder:
    def __init__(self, directory: Path, *, graph: str = GRAPH, threads: int | None = None) -> None:
        directory = Path(directory)
        settings = json.loads((directory / SETTINGS).read_text())
        self.id: str = settings["id"]  # the intent head records which encoder it was fit on
        self.dimension = int(settings["dimension"])
        self.max_tokens = int(settings["max_tokens"])
        # An int8 graph quantizes activations with one scale per run, so a text's vector
        # would depend on what it was batched with: such a graph runs one text at a time.
        self.one_at_a_time = bool(settings.get("int8", False))
        self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_tokens)
        options = ort.SessionOptions()
        threads = threads or int(os.environ.get(THREADS_ENV) or settings.get("threads", 1))
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning threads burn the core that Triton's other models and the mesh need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(directory / graph), options, providers=["CPUExecutionProvider"]
        )

    def tokens(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, padded to the longest text."""
        encoded = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encoded)
        ids = np.zeros((len(encoded), width), np.int64)
        mask = np.zeros((len(encoded), width), np.int64)
        for row, e in enumerate(encoded):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        return ids, mask

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        if self.one_at_a_time and len(texts) > 1:
            return np.concatenate([self._run([t]) for t in texts])
        return self._run(texts)

    def _run(self, texts: list[str]) -> np.ndarray:
        ids, mask = self.tokens(texts)
        (vectors,) = self.session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
        return np.asarray(vectors, np.float32)
