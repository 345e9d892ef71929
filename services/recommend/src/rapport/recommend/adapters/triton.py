"""Calls to the Triton models (models/README.md has the tensor contract).

A request with a message makes one call, to the ``reply`` model (ranking, the
message's vector, intent and sentiment in one Triton step); one without calls the item
scorer alone. Each answer names the version of every model that made it: the reply's
``COMPONENTS`` output names the versions it was built from, another model's response
its own.

Every call has a deadline (``client_timeout``) and goes through one circuit
breaker: after ``breaker_failures`` consecutive failures (refused or erroring
calls; a late one is not a failure) Triton is not called for ``breaker_reset_s``,
then one trial call decides whether it is back. The caller serves its fallback
meanwhile. The W3C trace context travels in the
gRPC metadata (the OpenTelemetry gRPC instrumentation, see rapport.common.telemetry).
Triton's gRPC server drops it on a few percent of calls (``GrpcServerCarrier::Get`` in
its ``src/grpc/infer_handler.h`` reads the metadata value as a NUL-terminated string, so
bytes after it can spoil the ``traceparent``), and then traces the call on its own: each
call's request id is therefore the caller's trace id, which Triton's model span keeps
(``triton.request_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from opentelemetry import trace
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tritonclient.grpc import InferInput, InferRequestedOutput, InferResult
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from rapport.common.catalog import CATEGORY_SEPARATOR
from rapport.common.scores import normalised
from rapport.common.triton import bytes_tensor
from rapport.recommend.domain import NewItem
from rapport.recommend.metrics import CIRCUIT_STATES, RecommendMetrics

log = logging.getLogger(__name__)

CIRCUIT = "triton"
RANKING_OUTPUTS = (
    "ITEM_IDS",
    "SCORES",
    "TITLES",
    "CATEGORIES",
    "BECAUSE_ITEMS",
    "SEGMENT",
    "SEGMENT_NAME",
)
INTENT_OUTPUTS = ("INTENT", "CONFIDENCE", "OUT_OF_SCOPE")
SENTIMENT_OUTPUTS = ("SENTIMENT", "SENTIMENT_SCORE")
# A reply: the ranking, the message's intent, vector (for retrieval) and sentiment, and the
# version of each model that made them.
REPLY_OUTPUTS = (
    *RANKING_OUTPUTS,
    *INTENT_OUTPUTS,
    "EMBEDDING",
    *SENTIMENT_OUTPUTS,
    "COMPONENTS",
)
Outputs = dict[str, np.ndarray[Any, Any] | None]


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
    # The encoder whose vector the intent model read (the reply's COMPONENTS): the number
    # of the standalone encoder that the same export wrote, which knowledge's index uses.
    encoder_version: str
    # That vector (the message's, for retrieval), as Triton returned it; turned into a
    # MessageVector only when a caller asks for it.
    vector: np.ndarray[Any, Any] | None = None


@dataclass(frozen=True)
class Sentiment:
    label: str
    score: float
    version: str


def _trace_id() -> str:
    """The current trace's id, as a Triton request id (see the module's docstring)."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def _tensor(name: str, array: np.ndarray[Any, Any], datatype: str) -> InferInput:
    tensor = InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


@dataclass(frozen=True)
class RankingQuery:
    """What the item scorer ranks for (models/README.md, ``item_scorer``)."""

    history: Sequence[str]
    weights: Sequence[float]
    affinities: dict[str, float]
    exclude: Sequence[str]
    categories: Sequence[str]
    k: int
    new_items: Sequence[NewItem] = ()  # the catalogue overlay's candidates for this ranking

    def inputs(self) -> list[InferInput]:
        # The model divides affinities by the largest; scaling here, in float64, keeps a long
        # inactive user's decayed affinities (below FP32's smallest, ~1e-45) from reaching it
        # as 0.
        scaled = normalised(self.affinities)
        inputs = [
            bytes_tensor("HISTORY_ITEMS", self.history),
            _tensor("HISTORY_WEIGHTS", np.asarray(self.weights, dtype=np.float32), "FP32"),
            bytes_tensor("CATEGORY_NAMES", list(scaled)),
            _tensor("CATEGORY_WEIGHTS", np.asarray(list(scaled.values()), np.float32), "FP32"),
            bytes_tensor("EXCLUDE_ITEMS", self.exclude),
            bytes_tensor("CATEGORY_FILTER", self.categories),
            _tensor("K", np.asarray([self.k], dtype=np.int32), "INT32"),
        ]
        if self.new_items:  # optional inputs: a request without them is as before
            inputs += [
                bytes_tensor("NEW_ITEM_IDS", [n.item_id for n in self.new_items]),
                bytes_tensor("NEW_ITEM_TITLES", [n.title for n in self.new_items]),
                bytes_tensor(
                    "NEW_ITEM_CATEGORIES",
                    [CATEGORY_SEPARATOR.join(n.categories) for n in self.new_items],
                ),
            ]
        return inputs


def _strings(array: np.ndarray[Any, Any] | None) -> list[str]:
    if array is None:
        return []
    return [v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]


def _first(array: np.ndarray[Any, Any] | None, default: float) -> float:
    return float(array.reshape(-1)[0]) if array is not None and array.size else default


def _ranking(out: Outputs, version: str) -> Ranking:
    ids, titles = _strings(out["ITEM_IDS"]), _strings(out["TITLES"])
    genres, because = _strings(out["CATEGORIES"]), _strings(out["BECAUSE_ITEMS"])
    scores = out["SCORES"]
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
        segment=int(_first(out["SEGMENT"], -1)),
        segment_name=names[0] if names else "",
        version=version,
    )


def _intent(out: Outputs, version: str, encoder_version: str) -> Intent:
    embedding = out.get("EMBEDDING")
    return Intent(
        intent=_strings(out["INTENT"])[0],
        confidence=_first(out["CONFIDENCE"], 0.0),
        out_of_scope=bool(_first(out["OUT_OF_SCOPE"], 0.0)),
        version=version,
        encoder_version=encoder_version,
        vector=embedding.reshape(-1) if embedding is not None else None,
    )


def _components(out: Outputs) -> dict[str, str]:
    """The reply model's COMPONENTS: each model's version, as JSON ({} if unreadable)."""
    text = _strings(out.get("COMPONENTS"))
    try:
        found = json.loads(text[0]) if text else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _deadline_exceeded(exc: InferenceServerException) -> bool:
    return "deadline" in (exc.status() or "").lower()


def _sentiment(out: Outputs, version: str) -> Sentiment:
    return Sentiment(
        label=_strings(out["SENTIMENT"])[0],
        score=_first(out["SENTIMENT_SCORE"], 0.0),
        version=version,
    )


class TritonModels:
    def __init__(
        self,
        client: InferenceServerClient,
        *,
        item_model: str,
        encoder_model: str,
        intent_model: str,
        sentiment_model: str,
        reply_model: str,
        timeout_s: float,
        breakers: AsyncCircuitBreakerFactory,
        metrics: RecommendMetrics,
    ) -> None:
        self.client = client
        self.item_model = item_model
        self.encoder_model = encoder_model
        self.intent_model = intent_model
        self.sentiment_model = sentiment_model
        self.reply_model = reply_model
        self.timeout_s = timeout_s
        self.versions: dict[str, str] = {}
        self.breakers = breakers
        self.metrics = metrics
        self.warm = False
        metrics.circuit_state.labels(CIRCUIT).set(CIRCUIT_STATES["closed"])
        breakers.add_listener(self._on_breaker_event)

    def _on_breaker_event(self, circuit: str, event: str, payload: Any) -> None:
        if event == "state_changed":
            self.metrics.circuit_state.labels(circuit).set(CIRCUIT_STATES[payload.state])

    async def warm_up(self, *, timeout_s: float = 10.0, retry_s: float = 1.0) -> None:
        """A call to the scorer and one to the reply model (every model), outside the
        breaker, until both answer; then the models' versions.

        A model's first inference pays for the gRPC channel and the Python
        backend's first execution (tens of ms): without this, the first user
        requests would time out and be served by the fallback.
        """
        nobody = RankingQuery(history=(), weights=(), affinities={}, exclude=(), categories=(), k=1)
        while not self.warm:
            try:
                # The reply model runs every model; the scorer is also called on its own.
                _, reply = await asyncio.gather(
                    self._call(self.item_model, nobody.inputs(), ("ITEM_IDS",), timeout_s),
                    self._call(
                        self.reply_model,
                        [*nobody.inputs(), bytes_tensor("TEXT", ["hello"], [1, 1])],
                        REPLY_OUTPUTS,
                        timeout_s,
                    ),
                )
                await self.read_versions()
                self._check_encoder(_components({"COMPONENTS": reply.as_numpy("COMPONENTS")}))
                self.warm = True
            except InferenceServerException as exc:
                log.info("models not answering yet", extra={"error": exc.message()})
                await asyncio.sleep(retry_s)

    async def circuit_state(self) -> str:
        breaker = await self.breakers.get_breaker(CIRCUIT)
        return str(breaker.context.state)

    async def ready(self) -> None:
        """Raise unless every model is loaded (a readiness probe; it bypasses the breaker)."""
        names = (
            self.item_model,
            self.encoder_model,
            self.intent_model,
            self.sentiment_model,
            self.reply_model,
        )
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
    ) -> tuple[Outputs, str]:
        started = time.perf_counter()
        late: InferenceServerException | None = None
        try:
            async with await self.breakers.get_breaker(CIRCUIT):
                try:
                    result = await self._call(model, inputs, outputs, self.timeout_s)
                except InferenceServerException as exc:
                    if not _deadline_exceeded(exc):
                        raise
                    # Late is not failing: on a saturated box the calls that miss the
                    # deadline come in bursts, and opening the circuit for them would send
                    # every reply to the fallback for breaker_reset_s. Lateness lowers the
                    # admission limit instead (the service observes the latency).
                    late = exc
        except OpenedState as exc:
            raise ModelUnavailable("circuit_open") from exc
        except InferenceServerException as exc:
            status = (exc.status() or "").lower()
            reason = "unavailable" if "unavailable" in status else "error"
            self.metrics.triton_errors.labels(model, reason).inc()
            raise ModelUnavailable(reason, exc.message() or "") from exc
        finally:
            self.metrics.triton_duration.labels(model).observe(time.perf_counter() - started)
        if late is not None:
            self.metrics.triton_errors.labels(model, "timeout").inc()
            raise ModelUnavailable("timeout", late.message() or "") from late
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
            request_id=_trace_id(),
        )

    async def read_versions(self) -> None:
        """The version each model serves now (the highest ready one), from the index."""
        index = await self.client.get_model_repository_index(client_timeout=self.timeout_s * 10)
        ready: dict[str, int] = {}
        for model in index.models:
            if model.state == "READY" and model.version.isdigit():
                ready[model.name] = max(ready.get(model.name, 0), int(model.version))
        self.versions = {name: str(version) for name, version in ready.items()}

    def _check_encoder(self, components: dict[str, str]) -> None:
        # Message vectors are labelled with the reply's encoder version; knowledge's index
        # with the standalone encoder's. One export writes both with one number, so a
        # difference is a hand-assembled repository or a roll-out caught half way.
        bundled = components.get(self.encoder_model, "")
        served = self.versions.get(self.encoder_model, "")
        if bundled != served:
            log.warning(
                "the reply model's encoder is not the served encoder's version",
                extra={"reply_encoder": bundled, "encoder": served},
            )

    async def rank(self, query: RankingQuery) -> Ranking:
        out, version = await self._infer(self.item_model, query.inputs(), RANKING_OUTPUTS)
        return _ranking(out, version)

    async def rank_and_read(
        self, query: RankingQuery, message: str
    ) -> tuple[Ranking, Intent, Sentiment]:
        """Ranking, intent and sentiment in one call to the ``reply`` model."""
        inputs = [*query.inputs(), bytes_tensor("TEXT", [message], [1, 1])]
        out, _ = await self._infer(self.reply_model, inputs, REPLY_OUTPUTS)
        versions = _components(out)
        return (
            _ranking(out, versions.get(self.item_model, "")),
            _intent(
                out,
                versions.get(self.intent_model, ""),
                versions.get(self.encoder_model, ""),
            ),
            _sentiment(out, versions.get(self.sentiment_model, "")),
        )

    async def sentiment(self, text: str) -> Sentiment:
        out, version = await self._infer(
            self.sentiment_model, [bytes_tensor("TEXT", [text], [1, 1])], SENTIMENT_OUTPUTS
        )
        return _sentiment(out, version)
