"""Experiment attribution, one event at a time: pure logic, no I/O.

Each enrolled user's profile keeps, per experiment, the variant, the first exposure and,
per KPI, how long after it the user's first such outcome came. Kept in the profile, it is
applied exactly once like the rest of the profile (the partition watermark), it leaves
with an erasure, and a replay of an erased user's past does not bring it back. The
attribution window is applied when the report is read, so a changed window needs no
replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rapport.common.events import Event, ExposureEvent
from rapport.common.experiments import ExperimentFile, outcome_kpis
from rapport.profile.domain.state import Enrollment, Profile

# Enrollments kept per profile; the oldest exposure goes first (a finished experiment's).
MAX_ENROLLMENTS = 64


@dataclass(frozen=True)
class Note:
    """What an event did to the experiments, for the processor's metrics."""

    kind: Literal["exposure", "conversion", "rejected"]
    experiment: str = ""
    variant: str = ""
    detail: str = ""  # a conversion's KPI, a rejection's reason


def take_exposure(
    profile: Profile, event: ExposureEvent, experiments: ExperimentFile, notes: list[Note]
) -> None:
    """Enrol the user at their first exposure, if the variant is the one their hash
    assigns and the experiment was running when it happened."""
    name, variant = event.attributes.experiment, event.attributes.variant
    experiment = experiments.get(name)
    if experiment is None:
        notes.append(Note("rejected", detail="unknown_experiment"))
        return
    if not experiment.running(event.occurred_at):
        notes.append(Note("rejected", experiment=name, detail="not_running"))
        return
    if experiment.assign(profile.tenant, profile.user_id).name != variant:
        notes.append(Note("rejected", experiment=name, detail="wrong_variant"))
        return
    current = profile.experiments.get(name)
    at = event.occurred_at
    if current is None:
        profile.experiments[name] = Enrollment(variant=variant, exposed_at=at)
        notes.append(Note("exposure", experiment=name, variant=variant))
        if len(profile.experiments) > MAX_ENROLLMENTS:
            oldest = min(profile.experiments, key=lambda n: profile.experiments[n].exposed_at)
            del profile.experiments[oldest]
    elif at < current.exposed_at:  # an earlier exposure, arrived late: outcomes move with it
        shift = (current.exposed_at - at).total_seconds()
        current.outcomes = {kpi: delay + shift for kpi, delay in current.outcomes.items()}
        current.exposed_at = at


def take_outcome(profile: Profile, event: Event, notes: list[Note]) -> None:
    """The first outcome of each KPI after each exposure, as its delay in seconds."""
    if not profile.experiments:
        return
    kpis = outcome_kpis(event.type, event.rating)
    if not kpis:
        return
    for name, enrollment in profile.experiments.items():
        delay = (event.occurred_at - enrollment.exposed_at).total_seconds()
        if delay < 0:
            continue  # before the exposure: not caused by it
        for kpi in kpis:
            first = enrollment.outcomes.get(kpi)
            if first is None:
                notes.append(
                    Note("conversion", experiment=name, variant=enrollment.variant, detail=kpi)
                )
            if first is None or delay < first:
                enrollment.outcomes[kpi] = delay
