"""Experiments: definitions as data, deterministic assignment, and the report contract.

respond and profile load the same YAML file (``RAPPORT_RESPOND_EXPERIMENTS_FILE``,
``RAPPORT_PROFILE_EXPERIMENTS_FILE``; in the chart, one ConfigMap mounted in both):

- respond assigns each enrolled user a variant, applies what the variant changes, shows
  the assignments in the reply, and records an ``exposure`` event when the variant
  changed what was served;
- profile keeps each user's first exposure and first outcome of each KPI in the
  profile document (so the watermark makes attribution exactly once and an erasure takes
  the user out of the counts), and answers the report.

Assignment is a hash of (experiment, tenant, user): the same on every replica and after
a restart, with no state and no network call. profile checks an exposure's variant
against the same hash, so a client cannot enrol a user in a variant of its choosing.

Nothing here runs at import: :func:`load_experiments` is called by the services'
lifespans and by ``rapport-experiments check``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from rapport.common.contracts import Contract

# Names end up in metric labels, MongoDB field names and URLs: short, no dots or spaces.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,47}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Instructions = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
HASH_SPACE = 2**64
MAX_EXPERIMENTS = 32  # labels on every exposure metric; a bound keeps them bounded


class Kpi(StrEnum):
    """What counts as a conversion: the user's first such event after the exposure."""

    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    POSITIVE_FEEDBACK = "positive_feedback"  # a feedback event rated 4 or 5
    NEGATIVE_FEEDBACK = "negative_feedback"  # rated 1 or 2; a guardrail: lower is better


LOWER_IS_BETTER = frozenset({Kpi.NEGATIVE_FEEDBACK})
POSITIVE_RATING = 4
NEGATIVE_RATING = 2


def outcome_kpis(event_type: str, rating: float | None) -> tuple[Kpi, ...]:
    """The KPIs an event is an outcome of (none for most events)."""
    if event_type in (Kpi.CLICK, Kpi.ADD_TO_CART, Kpi.PURCHASE):
        return (Kpi(event_type),)
    if event_type == "feedback" and rating is not None:
        if rating >= POSITIVE_RATING:
            return (Kpi.POSITIVE_FEEDBACK,)
        if rating <= NEGATIVE_RATING:
            return (Kpi.NEGATIVE_FEEDBACK,)
    return ()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Tone = Literal["empathetic", "concise", "neutral"]


class Changes(_Strict):
    """What a variant changes in a reply; what it leaves unset stays as configured."""

    exploration_rate: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="The share of rankings whose last slot the exploration bandit fills "
        "(recommend's default: every ranking when its exploration is on).",
    )
    tone: Tone | None = Field(
        None, description="The tone policy: this tone on every reply instead of the chosen one."
    )
    persona: Label | None = Field(
        None,
        description="The persona (templates and the LLM's voice) when the chatbot names none; "
        "respond refuses to start when the templates file lacks it.",
    )
    llm_instructions: Instructions | None = Field(
        None, description="A line added to the LLM's system policy (the prompt variant)."
    )
    memory: bool | None = Field(None, description="Memory (facts and recall) in the reply.")
    knowledge: bool | None = Field(None, description="Company knowledge in the reply.")

    @property
    def changes_ranking(self) -> bool:
        return self.exploration_rate is not None


class Variant(_Strict):
    name: Name
    weight: float = Field(gt=0, le=1000)
    changes: Changes = Field(default_factory=Changes)


class Audience(_Strict):
    """Who is enrolled; an empty list matches everyone. Opted-out users never are."""

    tenants: list[Label] = Field(default_factory=list)
    segments: list[Label] = Field(default_factory=list)
    channels: list[Label] = Field(default_factory=list)

    def admits(self, tenant: str, channel: str | None, segments: Sequence[str] | None) -> bool:
        """``segments`` None: not known yet (before the fan-out's first stage)."""
        if self.tenants and tenant not in self.tenants:
            return False
        if self.channels and channel not in self.channels:
            return False
        return not self.segments or (
            segments is not None and any(s in self.segments for s in segments)
        )


class Experiment(_Strict):
    name: Name
    description: str = Field("", max_length=500)
    variants: list[Variant] = Field(
        min_length=2, max_length=8, description="The first is the control."
    )
    audience: Audience = Field(default_factory=Audience)
    start: AwareDatetime
    stop: AwareDatetime
    primary_kpi: Kpi
    guardrail_kpis: list[Kpi] = Field(default_factory=list, max_length=4)
    attribution_window_hours: float = Field(
        168, gt=0, le=24 * 90, description="An outcome counts this long after the exposure."
    )
    effect_scale: float = Field(
        0.02,
        gt=0,
        le=1,
        description="The sequential test's mixing scale: the absolute difference in rate it "
        "is tuned to find soonest.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [v.name for v in self.variants]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"variant names repeat: {', '.join(repeated)}")
        if self.stop <= self.start:
            raise ValueError("stop must be after start")
        if self.primary_kpi in self.guardrail_kpis:
            raise ValueError(f"{self.primary_kpi} is the primary KPI and a guardrail")
        if self.audience.segments and any(v.changes.changes_ranking for v in self.variants):
            # respond asks recommend for the ranking before it knows the user's segment.
            raise ValueError(
                "an experiment that changes the ranking (exploration_rate) cannot have a "
                "segment audience: the segment is known only after the ranking"
            )
        if not any(v.changes != self.variants[0].changes for v in self.variants[1:]):
            raise ValueError("no variant changes anything the control does not")
        return self

    @property
    def control(self) -> Variant:
        return self.variants[0]

    @property
    def kpis(self) -> list[Kpi]:
        return [self.primary_kpi, *self.guardrail_kpis]

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def running(self, at: datetime) -> bool:
        return self.start <= at < self.stop

    def status(self, at: datetime) -> Literal["scheduled", "running", "stopped"]:
        if at < self.start:
            return "scheduled"
        return "running" if at < self.stop else "stopped"

    def shares(self) -> dict[str, float]:
        total = sum(v.weight for v in self.variants)
        return {v.name: v.weight / total for v in self.variants}

    def assign(self, tenant: str, user_id: str) -> Variant:
        """The user's variant: a hash of experiment, tenant and user, cut by the weights."""
        digest = hashlib.blake2b(
            f"{self.name}\x1f{tenant}\x1f{user_id}".encode(), digest_size=8
        ).digest()
        point = int.from_bytes(digest, "big") / HASH_SPACE
        total = sum(v.weight for v in self.variants)
        edge = 0.0
        for variant in self.variants:
            edge += variant.weight / total
            if point < edge:
                return variant
        return self.variants[-1]  # rounding at the last edge


class ExperimentFile(_Strict):
    version: Literal[1]
    experiments: list[Experiment] = Field(default_factory=list, max_length=MAX_EXPERIMENTS)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [e.name for e in self.experiments]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"experiment names repeat: {', '.join(repeated)}")
        return self

    def get(self, name: str) -> Experiment | None:
        return next((e for e in self.experiments if e.name == name), None)


NO_EXPERIMENTS = ExperimentFile(version=1)


class ExperimentFileError(ValueError):
    """An experiments file that cannot be used; one line per problem."""

    def __init__(self, path: Path, lines: list[str]) -> None:
        self.lines = lines
        super().__init__(f"{path}: {len(lines)} problem(s)\n" + "\n".join(lines))


def _where(loc: tuple[int | str, ...], doc: Any) -> str:
    """``experiments[1] (tone-test).variants[0].weight``: the path, with the name."""
    parts: list[str] = []
    node = doc
    for step in loc:
        if isinstance(step, int):
            parts.append(f"[{step}]")
            named = node[step] if isinstance(node, list) and step < len(node) else None
            if isinstance(named, dict) and isinstance(named.get("name"), str):
                parts.append(f" ({named['name']})")
            node = named
        else:
            parts.append(f".{step}" if parts else step)
            node = node.get(step) if isinstance(node, dict) else None
    return "".join(parts) or "(file)"


def _reason(message: str, value: object) -> str:
    reason = message.removeprefix("Value error, ").replace("\n", " ")
    if isinstance(value, bool) and "string" in reason:
        reason += " (YAML reads unquoted yes, no, on and off as booleans: quote it)"
    return reason


def parse_experiments(text: str, path: Path) -> ExperimentFile:
    import yaml  # noqa: PLC0415 - only the services that run experiments need PyYAML

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExperimentFileError(path, [f"{path}: not YAML: {exc}".replace("\n", " ")]) from exc
    try:
        return ExperimentFile.model_validate(doc)
    except ValidationError as exc:
        lines = [
            f"{path}: {_where(tuple(e['loc']), doc)}: {_reason(e['msg'], e.get('input'))}"
            for e in exc.errors(include_url=False)
        ]
        raise ExperimentFileError(path, lines) from exc


def load_experiments(path: Path | None) -> ExperimentFile:
    """The file's experiments, or none when no file is configured."""
    if path is None:
        return NO_EXPERIMENTS
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExperimentFileError(path, [f"{path}: cannot read: {exc.strerror}"]) from exc
    return parse_experiments(text, path)


# ---- what crosses a hop: the reply's assignments and profile's report -----------------


class Assignment(Contract):
    """An experiment this reply's user is enrolled in."""

    experiment: str
    variant: str
    exposed: bool = Field(
        description="The variant changed what this reply served (an exposure was recorded)."
    )


Interval = tuple[float, float]


class VariantResult(Contract):
    variant: str
    expected_share: float = Field(description="Its weight over the sum of the weights.")
    users: int = Field(description="Users exposed (each counted once, at their first exposure).")
    conversions: int = Field(description="Of those, users with the KPI within the window.")
    rate: float | None = None
    rate_interval: Interval | None = Field(None, description="95% Wilson interval.")
    difference: float | None = Field(None, description="rate minus the control's rate.")
    difference_interval: Interval | None = Field(
        None,
        description="95% always-valid confidence sequence (mixture SPRT): it may be read at "
        "any time, as often as wanted.",
    )
    lift: float | None = Field(None, description="difference over the control's rate.")
    lift_interval: Interval | None = Field(
        None, description="difference_interval over the control's rate."
    )
    probability_to_beat_control: float | None = Field(
        None,
        description="P(rate > control's rate) under Beta(1, 1) priors (for a KPI where lower "
        "is better, P(rate < control's)). A description, not the decision.",
    )
    significant: bool = Field(False, description="The confidence sequence excludes no difference.")


class KpiResult(Contract):
    kpi: Kpi
    role: Literal["primary", "guardrail"]
    lower_is_better: bool
    variants: list[VariantResult]


class SampleRatio(Contract):
    """Chi-square test of the exposed users' split against the weights."""

    p_value: float | None
    mismatch: bool = Field(description="p < threshold: the assignment or exposure is broken.")
    threshold: float


class ExperimentReport(Contract):
    name: str
    description: str
    status: Literal["scheduled", "running", "stopped"]
    start: datetime
    stop: datetime
    control: str
    attribution_window_hours: float
    kpis: list[KpiResult]
    sample_ratio: SampleRatio
    verdict: str = Field(description="One line for a person: what the report says.")
    method: str = Field(description="How the figures are computed.")


class ExperimentList(Contract):
    experiments: list[ExperimentReport]
