"""The category mix of incoming item events against the item model's training mix.

The processor appends each item event's category to a window (the hot path: one append
per event); every ``RAPPORT_PROFILE_DRIFT_INTERVAL_S`` :meth:`CategoryDrift.refresh`
scores the window against the reference of the latest item model version in
``references.json`` (rapport.common.drift) and sets the gauges
(``rapport_drift_*{model="item_scorer",signal="category_mix"}``).
"""

from __future__ import annotations

from collections.abc import Iterable

from rapport.common.drift import ItemReference, Window, categorical_drift
from rapport.common.drift_monitor import DriftGauges, ReferenceFile
from rapport.common.events import Event, ItemEvent

SIGNAL = "category_mix"


class CategoryDrift:
    def __init__(
        self, *, model: str, references: ReferenceFile, gauges: DriftGauges, events: int
    ) -> None:
        self.model = model
        self.references = references
        self.gauges = gauges
        self.window: Window[str] = Window(events)

    def observe(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, ItemEvent) and event.category is not None:
                self.window.append(event.category)

    async def refresh(self) -> None:
        categories = self.window.snapshot()
        versions = self.references.versions(self.model)
        version = versions[-1] if versions else ""
        reference = self.references.reference(self.model, version, ItemReference)
        drifts = (
            []
            if reference is None
            else [categorical_drift(SIGNAL, reference.categories, categories)]
        )
        self.gauges.publish(self.model, version, drifts, ready=self.window.ready)
        self.gauges.observations.labels(self.model, SIGNAL).set(len(categories))
