"""The sentence encoder on Triton (``encoder``: TEXT BYTES[1] -> EMBEDDING FP32[d], unit
length; models/README.md), called with many chunks per request."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from tritonclient.grpc import InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient

from rapport.common.triton import bytes_tensor
from rapport.knowledge.metrics import KnowledgeMetrics


class TritonEncoder:
    def __init__(
        self,
        client: InferenceServerClient,
        *,
        model: str,
        timeout_s: float,
        metrics: KnowledgeMetrics,
    ) -> None:
        self.client = client
        self.model = model
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.version = ""
        self.dimension = 0

    @property
    def id(self) -> str:
        """``model:version``, as recommend names the vectors it hands out."""
        return f"{self.model}:{self.version}"

    async def describe(self) -> None:
        """The served version (the highest ready one) and the vector's dimension."""
        metadata = await self.client.get_model_metadata(
            self.model, as_json=True, client_timeout=self.timeout_s
        )
        self.version = str(max(int(v) for v in metadata["versions"]))
        output = next(o for o in metadata["outputs"] if o["name"] == "EMBEDDING")
        self.dimension = int(output["shape"][-1])

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, in order."""
        started = time.perf_counter()
        result = await self.client.infer(
            self.model,
            [bytes_tensor("TEXT", texts, [len(texts), 1])],
            outputs=[InferRequestedOutput("EMBEDDING")],
            client_timeout=self.timeout_s,
        )
        self.metrics.store_duration.labels("encode").observe(time.perf_counter() - started)
        vectors = result.as_numpy("EMBEDDING")
        if vectors is None:
            raise RuntimeError("the encoder returned no EMBEDDING")
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    async def ready(self) -> None:
        if not await self.client.is_model_ready(self.model, client_timeout=2.0):
            raise RuntimeError(f"model {self.model} is not ready")
