"""Calls to the Triton models (models/README.md has the tensor contract).

Every call has a deadline (``client_timeout``) and goes through one circuit
breaker: after ``breaker_failures`` consecutive failures Triton is not called
for ``breaker_reset_s``, then one trial call decides whether it is back. The
caller serves its fallback meanwhile. The W3C trace context travels in the
gRPC metadata (the OpenTelemetry gRPC instrumentation, see rapport.common.telemetry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tritonclient.grpc import (
    MAX_GRPC_MESSAGE_SIZE,
    InferInput,
    InferRequestedOutput,
    InferResult,
    KeepAliveOptions,
)
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from rapport.common.scores import normalised
from rapport.recommend.metrics import CIRCUIT_STATES, RecommendMetrics

log = logging.getLogger(__name__)

CIRCUIT = "triton"


class ModelUnavailable(Exception):
    """Triton did not answer in time or at all; ``reason`` labels the fallback."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class RankedItem:
    item_id: str
    score: float
    title: str
    categories: tuple[str, ...]
    because_item: str | None


@dataclass(frozen=True)
class Ranking:
    items: list[RankedItem]
    segment: int
    segment_name: str
    version: str


@dataclass(frozen=True)
class Intent:
    intent: str
    confidence: float
    out_of_scope: bool
    version: str


@dataclass(frozen=True)
class Sentiment:
    label: str
    score: float
    version: str


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


def _bytes_tensor(name: str, values: Sequence[str], shape: list[int] | None = None) -> InferInput:
    array = np.array([v.encode() for v in values], dtype=np.object_)
    if shape is not None:
        array = array.reshape(shape)
    tensor = InferInput(name, list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    return tensor


def _tensor(name: str, array: np.ndarray[Any, Any], datatype: str) -> InferInput:
    tensor = InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def _scorer_inputs(
    *,
    history: Sequence[str],
    weights: Sequence[float],
    affinities: dict[str, float],
    exclude: Sequence[str],
    categories: Sequence[str],
    k: int,
) -> list[InferInput]:
    # The model divides affinities by the largest; scaling here, in float64, keeps a long
    # inactive user's decayed affinities (below FP32's smallest, ~1e-45) from reaching it as 0.
    scaled = normalised(affinities)
    return [
        _bytes_tensor("HISTORY_ITEMS", history),
        _tensor("HISTORY_WEIGHTS", np.asarray(weights, dtype=np.float32), "FP32"),
        _bytes_tensor("CATEGORY_NAMES", list(scaled)),
        _tensor("CATEGORY_WEIGHTS", np.asarray(list(scaled.values()), np.float32), "FP32"),
        _bytes_tensor("EXCLUDE_ITEMS", exclude),
        _bytes_tensor("CATEGORY_FILTER", categories),
        _tensor("K", np.asarray([k], dtype=np.int32), "INT32"),
    ]


def _strings(array: np.ndarray[Any, Any] | None) -> list[str]:
    if array is None:
        return []
    return [v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]


class TritonModels:
    def __init__(
        self,
        client: InferenceServerClient,
        *,
        item_model: str,
        intent_model: str,
        sentiment_model: str,
        timeout_s: float,
        breakers: AsyncCircuitBreakerFactory,
        metrics: RecommendMetrics,
    ) -> None:
        self.client = client
        self.item_model = item_model
        self.intent_model = intent_model
        self.sentiment_model = sentiment_model
        self.timeout_s = timeout_s
        self.breakers = breakers
        self.metrics = metrics
        self.warm = False
        metrics.circuit_state.labels(CIRCUIT).set(CIRCUIT_STATES["closed"])
        breakers.add_listener(self._on_breaker_event)

    def _on_breaker_event(self, circuit: str, event: str, payload: Any) -> None:
        if event == "state_changed":
            self.metrics.circuit_state.labels(circuit).set(CIRCUIT_STATES[payload.state])

    async def warm_up(self, *, timeout_s: float = 10.0, retry_s: float = 1.0) -> None:
        """One call per model, outside the breaker, until each answers.

        A model's first inference pays for the gRPC channel and the Python
        backend's first execution (tens of ms): without this, the first user
        requests would time out and be served by the fallback.
        """
        while not self.warm:
            try:
                await asyncio.gather(
                    self._call(
                        self.item_model,
                        _scorer_inputs(
                            history=[], weights=[], affinities={}, exclude=[], categories=[], k=1
                        ),
                        ("ITEM_IDS",),
                        timeout_s,
                    ),
                    self._call(
                        self.intent_model,
                        [_bytes_tensor("TEXT", ["hello"], [1, 1])],
                        ("INTENT",),
                        timeout_s,
                    ),
                    self._call(
                        self.sentiment_model,
                        [_bytes_tensor("TEXT", ["hello"], [1, 1])],
                        ("SENTIMENT",),
                        timeout_s,
                    ),
                )
                self.warm = True
            except InferenceServerException as exc:
                log.info("models not answering yet", extra={"error": exc.message()})
                await asyncio.sleep(retry_s)

    async def circuit_state(self) -> str:
        breaker = await self.breakers.get_breaker(CIRCUIT)
        return str(breaker.context.state)

    async def ready(self) -> None:
        """Raise unless every model is loaded (a readiness probe; it bypasses the breaker)."""
        names = (self.item_model, self.intent_model, self.sentiment_model)
        states = await asyncio.gather(
            *(self.client.is_model_ready(n, client_timeout=self.timeout_s * 10) for n in names)
        )
        missing = [n for n, ok in zip(names, states, strict=True) if not ok]
        if missing:
            raise ModelUnavailable("not_ready", ", ".join(missing))
        if not self.warm:
            raise ModelUnavailable("warming_up")
        if await self.circuit_state() != "closed":
            # An idle service sends no request that could try Triton again once the
            # breaker's wait is over: the probe makes that trial call itself.
            with contextlib.suppress(ModelUnavailable):
                await self.sentiment("ready?")
            if (state := await self.circuit_state()) != "closed":
                raise ModelUnavailable("circuit", state)

    async def _infer(
        self, model: str, inputs: list[InferInput], outputs: Sequence[str]
    ) -> tuple[dict[str, np.ndarray[Any, Any] | None], str]:
        started = time.perf_counter()
        try:
            async with await self.breakers.get_breaker(CIRCUIT):
                result = await self._call(model, inputs, outputs, self.timeout_s)
        except OpenedState as exc:
            raise ModelUnavailable("circuit_open") from exc
        except InferenceServerException as exc:
            status = (exc.status() or "").lower()
            reason = "timeout" if "deadline" in status else "unavailable"
            if "unavailable" not in status and reason != "timeout":
                reason = "error"
            self.metrics.triton_errors.labels(model, reason).inc()
            raise ModelUnavailable(reason, exc.message() or "") from exc
        finally:
            self.metrics.triton_duration.labels(model).observe(time.perf_counter() - started)
        version = str(result.get_response().model_version)
        return {name: result.as_numpy(name) for name in outputs}, version

    async def _call(
        self, model: str, inputs: list[InferInput], outputs: Sequence[str], timeout_s: float
    ) -> InferResult:
        return await self.client.infer(
            model,
            inputs,
            outputs=[InferRequestedOutput(name) for name in outputs],
            client_timeout=timeout_s,
        )

    async def rank(
        self,
        *,
        history: Sequence[str],
        weights: Sequence[float],
        affinities: dict[str, float],
        exclude: Sequence[str],
        categories: Sequence[str],
        k: int,
    ) -> Ranking:
        inputs = _scorer_inputs(
            history=history,
            weights=weights,
            affinities=affinities,
            exclude=exclude,
            categories=categories,
            k=k,
        )
        out, version = await self._infer(
            self.item_model,
            inputs,
            (
                "ITEM_IDS",
                "SCORES",
                "TITLES",
                "CATEGORIES",
                "BECAUSE_ITEMS",
                "SEGMENT",
                "SEGMENT_NAME",
            ),
        )
        ids, titles = _strings(out["ITEM_IDS"]), _strings(out["TITLES"])
        genres, because = _strings(out["CATEGORIES"]), _strings(out["BECAUSE_ITEMS"])
        scores = out["SCORES"]
        segment = out["SEGMENT"]
        items = [
            RankedItem(
                item_id=item_id,
                score=float(scores.reshape(-1)[i]) if scores is not None else 0.0,
                title=titles[i] if i < len(titles) else item_id,
                categories=tuple(filter(None, genres[i].split("|"))) if i < len(genres) else (),
                because_item=(because[i] or None) if i < len(because) else None,
            )
            for i, item_id in enumerate(ids)
        ]
        names = _strings(out["SEGMENT_NAME"])
        return Ranking(
            items=items,
            segment=int(segment.reshape(-1)[0]) if segment is not None else -1,
            segment_name=names[0] if names else "",
            version=version,
        )

    async def intent(self, text: str) -> Intent:
        out, version = await self._infer(
            self.intent_model,
            [_bytes_tensor("TEXT", [text], [1, 1])],
            ("INTENT", "CONFIDENCE", "OUT_OF_SCOPE"),
        )
        confidence, oos = out["CONFIDENCE"], out["OUT_OF_SCOPE"]
        return Intent(
            intent=_strings(out["INTENT"])[0],
            confidence=float(confidence.reshape(-1)[0]) if confidence is not None else 0.0,
            out_of_scope=bool(oos.reshape(-1)[0]) if oos is not None else False,
            version=version,
        )

    async def sentiment(self, text: str) -> Sentiment:
        out, version = await self._infer(
            self.sentiment_model,
            [_bytes_tensor("TEXT", [text], [1, 1])],
            ("SENTIMENT", "SENTIMENT_SCORE"),
        )
        score = out["SENTIMENT_SCORE"]
        return Sentiment(
            label=_strings(out["SENTIMENT"])[0],
            score=float(score.reshape(-1)[0]) if score is not None else 0.0,
            version=version,
        )
