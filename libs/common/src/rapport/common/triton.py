"""Triton gRPC client pieces shared by the services that run models (recommend, knowledge)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, InferInput, KeepAliveOptions


def channel_args() -> list[tuple[str, int]]:
    """tritonclient's defaults, plus a short reconnect backoff.

    gRPC backs off exponentially (up to 2 min) while Triton is down; with a
    breaker already guarding the calls, a restarted Triton should be found
    within about a second, not many seconds later.
    """
    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", int(keepalive.keepalive_permit_without_calls)),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


def bytes_tensor(name: str, values: Sequence[str], shape: list[int] | None = None) -> InferInput:
    """A BYTES input of UTF-8 strings (``shape`` defaults to ``[len(values)]``)."""
    array = np.array([v.encode() for v in values], dtype=np.object_)
    if shape is not None:
        array = array.reshape(shape)
    tensor = InferInput(name, list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    return tensor
