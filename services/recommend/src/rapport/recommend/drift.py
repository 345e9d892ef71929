"""Live drift and exposure: appended to on the reply path, scored on a timer.

Per reply, the hot path only appends: with a message, the intent model's answer (intent,
out-of-scope flag, the best in-scope probability) and the message's vector; with a
ranking, the items served and whether the fallback served them. Every
``RAPPORT_RECOMMEND_DRIFT_INTERVAL_S`` :meth:`DriftMonitor.refresh` scores the windows
(rapport.common.drift) against the reference of the model version that answered, off the
event loop, and sets the gauges.

A window holds one model version's answers: when replies come from another version, the
window starts again, since that version has its own reference. A fallback reply has no
model version, and joins the ranking window as it is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rapport.common.contracts import Recommendations
from rapport.common.drift import (
    Drift,
    Exposure,
    IntentReference,
    ItemReference,
    MessageObservation,
    Window,
    exposure,
    intent_drift,
)
from rapport.common.drift_monitor import DriftGauges, ReferenceFile
from rapport.recommend.adapters.triton import Intent, ModelUnavailable
from rapport.recommend.metrics import RecommendMetrics

EXPOSURE_SIGNAL = "exposure"


@dataclass(frozen=True)
class ServedRanking:
    items: tuple[str, ...]
    fallback: bool


def observation(intent: Intent) -> MessageObservation:
    # The reply carries the intent's probability; for an out-of-scope answer, 1 minus the
    # best in-scope intent's (intent_runtime.decide): either way that one is recoverable.
    top = 1.0 - intent.confidence if intent.out_of_scope else intent.confidence
    return MessageObservation(intent.intent, intent.out_of_scope, top, intent.vector)


@dataclass(frozen=True)
class Scored:
    """One refresh's results, computed off the event loop."""

    messages: list[Drift]
    messages_ready: bool
    served: Exposure | None  # None until the ranking window is full
    reference: Exposure | None
    fallback_share: float | None


class DriftMonitor:
    def __init__(
        self,
        *,
        intent_model: str,
        item_model: str,
        references: ReferenceFile,
        metrics: RecommendMetrics,
        messages: int,
        rankings: int,
        catalogue_size: int,
    ) -> None:
        self.intent_model = intent_model
        self.item_model = item_model
        self.references = references
        self.metrics = metrics
        self.gauges: DriftGauges = metrics.drift
        self.messages: Window[MessageObservation] = Window(messages)
        self.rankings: Window[ServedRanking] = Window(rankings)
        self.message_version = ""
        self.ranking_version = ""
        self.catalogue_size = catalogue_size  # without a reference, recommend's catalogue

    def observe(self, result: Recommendations, intent: Intent | ModelUnavailable | None) -> None:
        """The reply path's part: appends only."""
        if isinstance(intent, Intent):
            if intent.version != self.message_version:
                self.messages.clear()
                self.message_version = intent.version
            self.messages.append(observation(intent))
        version = result.models.get(self.item_model)
        if version is not None and version != self.ranking_version:
            self.rankings.clear()
            self.ranking_version = version
        self.rankings.append(ServedRanking(tuple(i.item_id for i in result.items), result.fallback))

    async def refresh(self) -> None:
        """Score the windows as they are now and set the gauges."""
        message_version, ranking_version = self.message_version, self.ranking_version
        messages, rankings = self.messages.snapshot(), self.rankings.snapshot()
        scored = await asyncio.to_thread(
            self.score, message_version, messages, ranking_version, rankings
        )
        self.gauges.publish(
            self.intent_model, message_version, scored.messages, ready=scored.messages_ready
        )
        self.gauges.observations.labels(self.item_model, EXPOSURE_SIGNAL).set(len(rankings))
        self._publish_exposure(scored)

    def score(
        self,
        message_version: str,
        messages: list[MessageObservation],
        ranking_version: str,
        rankings: list[ServedRanking],
    ) -> Scored:
        intents = self.references.reference(self.intent_model, message_version, IntentReference)
        items = self.references.reference(self.item_model, ranking_version, ItemReference)
        drifts = intent_drift(intents, messages) if intents is not None and messages else []
        served = reference = None
        catalogue = items.exposure.catalogue_size if items is not None else self.catalogue_size
        head = frozenset(items.exposure.head_items) if items is not None else frozenset()
        if len(rankings) >= self.rankings.minimum and catalogue > 0:
            served = exposure([r.items for r in rankings], catalogue, head)
        if items is not None:
            e = items.exposure
            reference = Exposure(e.rankings, e.coverage, e.gini, e.long_tail_share)
        fallbacks = sum(r.fallback for r in rankings)
        return Scored(
            messages=drifts,
            messages_ready=len(messages) >= self.messages.minimum,
            served=served,
            reference=reference,
            fallback_share=fallbacks / len(rankings) if rankings else None,
        )

    def _publish_exposure(self, scored: Scored) -> None:
        m = self.metrics
        if scored.fallback_share is not None:
            m.fallback_share.set(scored.fallback_share)
        for source, found in (("served", scored.served), ("reference", scored.reference)):
            if found is None:
                continue
            m.catalogue_coverage.labels(source).set(found.coverage)
            m.exposure_gini.labels(source).set(found.gini)
            if source == "reference" or scored.reference is not None:  # needs the head
                m.long_tail_share.labels(source).set(found.long_tail_share)
