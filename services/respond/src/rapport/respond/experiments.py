"""A reply's experiments: who is enrolled, what their variants change, and whether the
change reached what was served (an exposure).

Assignment is :meth:`Experiment.assign`, a hash: no state, no call. Two moments:

1. before the fan-out, the experiments whose audience needs no segment: their changes to
   the ranking (``exploration_rate``) ride on the recommend call the reply makes anyway;
2. after its first stage, when the user's segments and consent are known: the experiments
   with a segment audience join, and an opted-out (or unread) user leaves them all.

When two running experiments change the same thing, the first in the file owns it for a
user enrolled in both; the other is not exposed by it.

Exposure is triggered, and decided the same way for every variant of an experiment
(control included): the reply is an exposure when its variants would have served it
differently. A tone experiment's reply whose chosen tone every variant keeps is not one;
a memory experiment exposes only users with something to remember. Counting only those
users keeps the test's power on the users the change can reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import get_args

from rapport.common.experiments import Assignment, Experiment, ExperimentFile, Tone, Variant

EXPLORATION_SLOT_ITEMS = 3  # recommend's bandit fills the last of k >= 3 slots


@dataclass
class Enrolment:
    experiment: Experiment
    variant: Variant
    owns: set[str] = field(default_factory=set)  # the change kinds this experiment decides
    exposed: bool = False

    def assignment(self) -> Assignment:
        return Assignment(
            experiment=self.experiment.name, variant=self.variant.name, exposed=self.exposed
        )

    def values(self, kind: str) -> list[object]:
        """What each variant sets for ``kind`` (None: left as configured)."""
        return [getattr(v.changes, kind) for v in self.experiment.variants]


@dataclass
class Plan:
    """The experiments of one reply, and what they change in it."""

    enrolments: list[Enrolment] = field(default_factory=list)

    def change(self, kind: str) -> object | None:
        """The value the owning experiment's variant sets for ``kind``, if any."""
        for enrolment in self.enrolments:
            if kind in enrolment.owns:
                value: object | None = getattr(enrolment.variant.changes, kind)
                return value
        return None

    def owner(self, kind: str) -> Enrolment | None:
        return next((e for e in self.enrolments if kind in e.owns), None)

    @property
    def exploration_rate(self) -> float | None:
        value = self.change("exploration_rate")
        return float(value) if isinstance(value, int | float) else None

    @property
    def tone(self) -> Tone | None:
        value = self.change("tone")
        return next((t for t in get_args(Tone) if t == value), None)

    @property
    def persona(self) -> str | None:
        value = self.change("persona")
        return value if isinstance(value, str) else None

    @property
    def llm_instructions(self) -> str | None:
        value = self.change("llm_instructions")
        return value if isinstance(value, str) else None

    def switched_off(self, part: str) -> bool:
        """``memory`` or ``knowledge`` is off for this user's variant."""
        return self.change(part) is False

    def expose(self, kind: str, served_differently: bool) -> None:
        """The owner of ``kind`` is exposed when its variants differ on it and that
        difference reached this reply."""
        owner = self.owner(kind)
        if owner is None or not served_differently:
            return
        if len({repr(v) for v in owner.values(kind)}) > 1:
            owner.exposed = True

    def assignments(self) -> list[Assignment]:
        return [e.assignment() for e in self.enrolments]

    def exposures(self) -> list[Enrolment]:
        return [e for e in self.enrolments if e.exposed]


KINDS = ("exploration_rate", "tone", "persona", "llm_instructions", "memory", "knowledge")


@dataclass(frozen=True)
class Experiments:
    """The configured experiments; :meth:`enrol` is called per reply."""

    file: ExperimentFile

    def __bool__(self) -> bool:
        return bool(self.file.experiments)

    def enrol(
        self,
        plan: Plan,
        *,
        tenant: str,
        user_id: str,
        channel: str | None,
        segments: Sequence[str] | None,
        at: datetime,
    ) -> None:
        """Add the running experiments the user is in: with ``segments`` None, those whose
        audience needs none; with the segments, those whose audience does."""
        for experiment in self.file.experiments:
            if bool(experiment.audience.segments) == (segments is None):
                continue
            if not experiment.running(at):
                continue
            if not experiment.audience.admits(tenant, channel, segments):
                continue
            plan.enrolments.append(Enrolment(experiment, experiment.assign(tenant, user_id)))
        self._own(plan)

    def _own(self, plan: Plan) -> None:
        """Each change kind to the first experiment in the file that changes it."""
        order = {e.name: i for i, e in enumerate(self.file.experiments)}
        plan.enrolments.sort(key=lambda e: order[e.experiment.name])
        taken: set[str] = set()
        for enrolment in plan.enrolments:
            changed = {
                kind
                for kind in KINDS
                if any(getattr(v.changes, kind) is not None for v in enrolment.experiment.variants)
            }
            enrolment.owns = changed - taken
            taken |= changed


def check_personas(file: ExperimentFile, personas: Sequence[str], where: str) -> list[str]:
    """One line per variant naming a persona the templates file lacks."""
    return [
        f"{where}: experiments ({e.name}).variants ({v.name}).changes.persona: "
        f"no persona `{v.changes.persona}` in the templates (known: {', '.join(personas)})"
        for e in file.experiments
        for v in e.variants
        if v.changes.persona is not None and v.changes.persona not in personas
    ]
