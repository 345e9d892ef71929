"""Triton (from nvidia-pytriton) loads a Python-backend model and answers gRPC."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
import tritonclient.http.aio as httpclient

from rapport.devstack.servers import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def expected_scores(users: np.ndarray) -> np.ndarray:
    # The smoke model's catalogue: 100 seeded 16-d item vectors (see its model.py).
    items = np.random.default_rng(7).standard_normal((100, 16)).astype(np.float32)
    return users @ items.T


async def test_grpc_inference_on_the_smoke_model(triton_server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(url=triton_server.url("triton_grpc"))
    try:
        assert await client.is_server_ready()
        assert await client.is_model_ready("smoke_scorer")
        users = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
        request = grpcclient.InferInput("USER_VECTOR", list(users.shape), "FP32")
        request.set_data_from_numpy(users)
        result = await client.infer(
            "smoke_scorer",
            [request],
            outputs=[grpcclient.InferRequestedOutput("SCORES")],
            client_timeout=5,
        )
        scores = result.as_numpy("SCORES")
        assert scores.shape == (3, 100)
        np.testing.assert_allclose(scores, expected_scores(users), rtol=1e-5, atol=1e-5)
    finally:
        await client.close()


async def test_http_health_and_metrics(triton_server: RunningServer) -> None:
    http_url = triton_server.url("triton_http").removeprefix("http://")
    client = httpclient.InferenceServerClient(url=http_url)
    try:
        assert await client.is_server_live()
        metadata = await client.get_model_metadata("smoke_scorer")
        assert metadata["versions"] == ["1"]
    finally:
        await client.close()
