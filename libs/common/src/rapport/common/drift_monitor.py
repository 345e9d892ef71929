"""Live drift, the I/O side: the references file and the gauges.

``references.json`` (written by ``rapport-models export`` beside ``catalog.json``) maps
``{model: {version: reference}}``. :class:`ReferenceFile` reads it again when its size or
modification time changes (an export replaces it in one rename), and keeps the last good
copy when a read fails. :class:`DriftGauges` exports what :mod:`rapport.common.drift`
computes; a service refreshes them from its lifespan
(:func:`rapport.common.periodic.run_every`).

Gauges (every service that monitors a model exports the same names; ``model`` names it):

- ``rapport_drift_score{model,signal,statistic}``: PSI or JS distance of the last window
  against the reference; absent until the window holds its minimum.
- ``rapport_drift_window_observations{model,signal}``: how full the window is.
- ``rapport_drift_value{model,signal,source}``: a signal's rate or mean, ``window`` or
  ``reference`` (the out-of-scope rate, the mean top probability, the mean distance).
- ``rapport_drift_reference_version{model}``: the model version whose reference is in
  use; 0 when none is found (then no score).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Gauge
from pydantic import BaseModel, ValidationError

from rapport.common.drift import Drift

log = logging.getLogger(__name__)

DRIFT_SCORE = "rapport_drift_score"
DRIFT_WINDOW_OBSERVATIONS = "rapport_drift_window_observations"
DRIFT_VALUE = "rapport_drift_value"
DRIFT_REFERENCE_VERSION = "rapport_drift_reference_version"
STATISTICS = ("psi", "js")

R = TypeVar("R", bound=BaseModel)


class ReferenceFile:
    """``references.json``, read again when it changes; ``None`` path: no references."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.stamp: tuple[int, int] | None = None
        self.raw: dict[str, dict[str, Any]] = {}
        self.parsed: dict[tuple[str, str, type[BaseModel]], BaseModel | None] = {}

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self.stamp:
                return
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            if self.stamp is not None or not isinstance(exc, FileNotFoundError):
                log.warning(
                    "drift references not read", extra={"path": str(self.path), "error": str(exc)}
                )
            self.stamp = None
            return
        self.stamp, self.raw, self.parsed = stamp, raw, {}
        log.info("drift references read", extra={"path": str(self.path), "models": sorted(raw)})

    def versions(self, model: str) -> list[str]:
        """The versions of ``model`` with a reference, lowest first (file re-read if changed)."""
        self._reload()
        found = self.raw.get(model, {})
        return sorted(found, key=lambda v: (len(v), v)) if isinstance(found, dict) else []

    def reference(self, model: str, version: str, kind: type[R]) -> R | None:
        """``model``'s reference for ``version`` as ``kind``; None when absent or invalid."""
        self._reload()
        key = (model, version, kind)
        if key not in self.parsed:
            raw = self.raw.get(model, {}).get(version)
            try:
                self.parsed[key] = None if raw is None else kind.model_validate(raw)
            except ValidationError as exc:
                log.warning(
                    "drift reference unusable",
                    extra={"model": model, "version": version, "error": str(exc)[:300]},
                )
                self.parsed[key] = None
        found = self.parsed[key]
        return found if isinstance(found, kind) else None


class DriftGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.score = Gauge(
            DRIFT_SCORE,
            "Drift of the last window against the model version's training-time reference, "
            "by model, signal and statistic (psi, js); absent until the window is full.",
            ["model", "signal", "statistic"],
            registry=registry,
        )
        self.observations = Gauge(
            DRIFT_WINDOW_OBSERVATIONS,
            "Observations in the drift window, by model and signal.",
            ["model", "signal"],
            registry=registry,
        )
        self.value = Gauge(
            DRIFT_VALUE,
            "A drift signal's rate or mean, in the window or in the reference (source).",
            ["model", "signal", "source"],
            registry=registry,
        )
        self.reference_version = Gauge(
            DRIFT_REFERENCE_VERSION,
            "The model version whose training-time reference drift is measured against; "
            "0: none found.",
            ["model"],
            registry=registry,
        )
        self.published: dict[str, set[str]] = {}  # model -> signals with scores out

    def publish(self, model: str, version: str, drifts: Sequence[Drift], *, ready: bool) -> None:
        """Set ``model``'s gauges from its windows' drifts (none: no reference for
        ``version``); an unready window's scores are withdrawn, not left stale."""
        self.reference_version.labels(model).set(int(version) if version.isdigit() else 0)
        signals = {d.signal for d in drifts} if ready else set()
        for signal in self.published.get(model, set()) - signals:
            for statistic in STATISTICS:
                self._remove(self.score, model, signal, statistic)
            for source in ("window", "reference"):
                self._remove(self.value, model, signal, source)
        self.published[model] = signals
        for drift in drifts:
            self.observations.labels(model, drift.signal).set(drift.observations)
            if not ready:
                continue
            self.score.labels(model, drift.signal, "psi").set(drift.psi)
            self.score.labels(model, drift.signal, "js").set(drift.js)
            if drift.value is not None:
                self.value.labels(model, drift.signal, "window").set(drift.value)
            if drift.reference_value is not None:
                self.value.labels(model, drift.signal, "reference").set(drift.reference_value)

    @staticmethod
    def _remove(gauge: Gauge, *labels: str) -> None:
        with contextlib.suppress(KeyError):  # never published
            gauge.remove(*labels)
