"""Every model that crosses an HTTP hop between two services, defined once.

The service that answers declares these as its response (or request) models and
the service that calls it parses with the same classes, so a field cannot drift
between the two sides. Each service's published OpenAPI is held by
``tests/unit/test_openapi.py``: a change to these models shows up there, and it
must come with a new API version.

Two rules keep a rolling upgrade safe, where one side runs the next release:
- readers ignore fields they do not know (pydantic's default), so a producer
  may add fields;
- a field with a default is still always written (the published response lists
  it as required), so a reader may rely on it. A caller that sends a model
  (recommend's inline ``profile``) may leave those fields out.

Request bodies (:class:`Request`) are held to their JSON Schema: a value of another JSON
type than the document says (``0`` for a boolean, ``"3"`` for an integer) is refused, not
coerced.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from rapport.common.identifiers import Identifier
from rapport.common.vectors import MessageVector

# The version of every service's published API (OpenAPI ``info.version``). Any change to a
# published document moves it: ``python -m rapport.devstack.openapi`` refuses otherwise.
API_VERSION = "2.3.0"

# A session whose running sentiment (the EWMA of signed scores, -1..1) is at or below this
# reads as frustrated: profile labels the segment, respond answers with empathy.
FRUSTRATED_SENTIMENT_EWMA = -0.3
FRUSTRATED_SEGMENT = "frustrated"


# What Rapport remembers of a user's own words: profile derives and serves these facts,
# respond shows them in a reply and hands them to the LLM.
FactType = Literal[
    "diet",
    "allergy",
    "budget",
    "location",
    "household",
    "owns",
    "likes",
    "dislikes",
    "language",
]
FACT_TYPES: tuple[str, ...] = get_args(FactType)


class Contract(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


def whole_numbers(value: Any) -> Any:
    """Integral floats as integers, all the way down: JSON Schema's integer takes ``3.0``,
    which a strict parse refuses (a float's field takes an integer)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_numbers(item) for item in value]
    return value


class Request(Contract):
    """A request body: strict (no coercion between JSON types), unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, value: Any) -> Any:
        return whole_numbers(value)


# --- memory: facts in ProfileView, POST /v1/profiles/{user_id}/memory/recall ---


class MemoryFact(Contract):
    """One thing the user said about themselves, typed, with where it came from."""

    memory_id: str = Field(
        description="Forget it with `DELETE /v1/profiles/{user_id}/memory/{memory_id}`."
    )
    type: FactType
    value: str = Field(description='Normalised: "vegetarian", "50 EUR", "Berlin", "2 kids".')
    event_id: str = Field(description="The chat_message event that said it.")
    occurred_at: datetime


class RecalledMessage(Contract):
    """One of the user's own past messages (PII redacted), as relevant to the current one."""

    memory_id: str
    text: str
    occurred_at: datetime
    score: float = Field(description="Cosine similarity to the current message.")


class RecallRequest(Request):
    vector: MessageVector = Field(description="The current message's vector (from recommend).")
    k: int = Field(3, ge=1, le=20)
    min_score: float = Field(0.3, ge=-1.0, le=1.0)


class Recalled(Contract):
    user_id: str
    recalled: list[RecalledMessage] = Field(default_factory=list)


# --- profile: GET /v1/profiles/{user_id}, /v1/trending, /v1/feedback/arms ---


class ConsentView(Contract):
    personalization: bool = True
    updated_at: datetime | None = None


class SessionView(Contract):
    id: str
    # Profile always sends both; a caller's inline copy (recommend's `profile`) may omit them.
    started_at: datetime | None = None
    last_activity_at: datetime | None = None
    turns: int = 0
    last_intent: str | None = None
    sentiment_ewma: float | None = None


class ProfileView(Contract):
    """What is known about a user now; ``known`` is false for a cold-start default."""

    user_id: str
    known: bool = True
    version: int = 0
    source: Literal["cache", "store", "default"] = Field(
        "store", description="Where the profile service read it (a caller's copy may omit it)."
    )
    updated_at: datetime | None = None
    consent: ConsentView = Field(default_factory=ConsentView)
    withheld: bool = Field(
        False,
        description="True when the user opted out of personalization: what is stored about "
        "them (until an erasure) is not served, only their consent and version.",
    )
    counters: dict[str, int] = Field(default_factory=dict)
    affinities: dict[str, float] = Field(
        default_factory=dict, description="Category scores decayed to now, strongest first."
    )
    recent_items: list[str] = Field(default_factory=list)
    recent_searches: list[str] = Field(default_factory=list)
    session: SessionView | None = None
    preferences: dict[str, Any] = Field(default_factory=dict)
    lifetime_value: float = 0.0
    segments: list[str] = Field(default_factory=list)
    popular_items: list[str] = Field(
        default_factory=list, description="For a cold-start default: what is trending now."
    )
    facts: list[MemoryFact] = Field(
        default_factory=list,
        description="What the user said about themselves in chat (diet, budget, ...), newest "
        "first; empty when memory is off or the user opted out.",
    )
    remembered_messages: int = Field(
        0, description="How many of the user's own messages memory keeps for recall."
    )


class TrendingItem(Contract):
    item_id: str
    category: str | None = None
    score: float


class TrendingCategory(Contract):
    category: str
    score: float


class TrendingView(Contract):
    """Decayed popularity: one vote per user and recently seen item."""

    items: list[TrendingItem] = Field(default_factory=list)
    categories: list[TrendingCategory] = Field(default_factory=list)


class ArmCounts(Contract):
    successes: int = 0
    failures: int = 0


class FeedbackCounts(Contract):
    """Explicit feedback per bandit arm, summed over the tenant's profiles."""

    policy: str
    arms: dict[str, ArmCounts] = Field(default_factory=dict)


# --- recommend: POST /v1/recommendations ---


class RecommendationRequest(Request):
    user_id: Identifier
    profile: ProfileView | None = Field(
        None, description="The caller's copy of the profile; fetched from profile when absent."
    )
    message: str | None = Field(
        None, min_length=1, max_length=2000, description="The user's latest chat message."
    )
    k: int = Field(10, ge=1, le=50, description="How many items to return.")
    exclude: list[Identifier] = Field(default_factory=list, max_length=500)
    category: str | None = Field(
        None, min_length=1, max_length=64, description="Only items of this category."
    )
    vector: bool = Field(
        False,
        description="Also return the message's sentence vector (`message.vector`), e.g. to "
        "search knowledge with it without encoding the message again.",
    )
    exploration_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The chance that the bandit fills the last slot for this request (an "
        "experiment's variant); unset: the service's setting (every ranking when exploration "
        "is on).",
    )

    @field_validator("profile", mode="before")
    @classmethod
    def _strict_profile(cls, value: Any) -> Any:
        """The inline profile strictly too, read as the JSON it came as: a strict parse of
        a dict would refuse its datetimes (ISO strings)."""
        if isinstance(value, dict):
            return ProfileView.model_validate_json(json.dumps(value), strict=True)
        return value


class ReasonKind(StrEnum):
    """Why an item is recommended. ``label`` says which category or title, where one applies."""

    BECAUSE_YOU_WATCHED = "because_you_watched"  # label: the title; item_id: the watched item
    MATCHES_INTEREST = "matches_interest"  # label: the category
    POPULAR_IN = "popular_in"  # label: the category
    POPULAR_OVERALL = "popular_overall"
    TRENDING_IN = "trending_in"  # label: the category
    TRENDING_NOW = "trending_now"
    SOMETHING_DIFFERENT = "something_different"  # label: the category
    SOMETHING_NEW = "something_new"
    OTHER = "other"  # a kind a newer recommend added, as an older reader sees it


_KNOWN_KINDS = frozenset(ReasonKind)  # once, not per item on the hot path


class Reason(Contract):
    kind: ReasonKind
    label: str | None = Field(None, description="The category or title the kind refers to.")
    item_id: str | None = Field(None, description="The item the reason refers to, if any.")

    @field_validator("kind", mode="before")
    @classmethod
    def _unknown_kind_is_other(cls, value: object) -> object:
        return value if isinstance(value, str) and value in _KNOWN_KINDS else ReasonKind.OTHER


_REASON_TEXT: dict[ReasonKind, str] = {
    ReasonKind.BECAUSE_YOU_WATCHED: "because you watched {label}",
    ReasonKind.MATCHES_INTEREST: "matches your interest in {label}",
    ReasonKind.POPULAR_IN: "popular in {label}",
    ReasonKind.POPULAR_OVERALL: "popular with viewers overall",
    ReasonKind.TRENDING_IN: "trending in {label}",
    ReasonKind.TRENDING_NOW: "trending now",
    ReasonKind.SOMETHING_DIFFERENT: "something different: {label}",
    ReasonKind.SOMETHING_NEW: "trending now: something new to try",
}
GENERIC_REASON = "recommended for you"


def reason_text(reason: Reason) -> str:
    """The English sentence for a reason; a kind that needs a label and has none is generic."""
    pattern = _REASON_TEXT.get(reason.kind)
    if pattern is None or ("{label}" in pattern and not reason.label):
        return GENERIC_REASON
    return pattern.format(label=reason.label)


class RecommendedItem(Contract):
    item_id: str
    title: str
    score: float
    why: Reason
    categories: list[str] = Field(default_factory=list)
    slot: Literal["ranked", "explore"] = "ranked"

    @computed_field(  # type: ignore[prop-decorator]
        description="`why` as an English sentence (derived, never read). Deprecated since "
        "API 1.1: render `why` instead.",
        json_schema_extra={"deprecated": True},
    )
    @property
    def reason(self) -> str:
        return reason_text(self.why)


class MessageUnderstanding(Contract):
    intent: str
    confidence: float
    out_of_scope: bool
    sentiment: str | None = None
    sentiment_score: float | None = None
    vector: MessageVector | None = Field(
        None, description="The message's sentence vector, when the request asked for it."
    )


class Segment(Contract):
    id: int
    name: str


class Exploration(Contract):
    policy: str
    arm: str
    item_id: str | None = Field(
        None, description="Send `feedback` on this item with attributes {policy, arm}."
    )


class Recommendations(Contract):
    user_id: str
    items: list[RecommendedItem] = Field(default_factory=list)
    message: MessageUnderstanding | None = None
    segment: Segment | None = None
    models: dict[str, str] = Field(
        default_factory=dict, description="Model name to the version that answered."
    )
    fallback: bool = Field(False, description="True when trending served instead of the model.")
    fallback_reason: str | None = None
    degraded: list[str] = Field(
        default_factory=list, description="Parts that could not be produced: items, message."
    )
    personalized: bool = True
    profile_version: int | None = None
    exploration: Exploration | None = None


# ---- knowledge search (respond -> knowledge) ------------------------------------------


class KnowledgeQuery(Request):
    vector: MessageVector
    k: int = Field(3, ge=1, le=20, description="How many passages to return at most.")
    min_score: float | None = Field(
        None, ge=-1, le=1, description="Leave out passages below this cosine similarity."
    )


class KnowledgeHit(Contract):
    doc_id: str
    title: str
    snippet: str = Field(description="The matching passage (a chunk of the document).")
    score: float = Field(description="Cosine similarity to the message, -1..1.")
    url: str | None = None
    chunk: int = Field(0, description="Which chunk of the document the passage is.")


class KnowledgeResults(Contract):
    hits: list[KnowledgeHit] = Field(default_factory=list)
    encoder: str = Field(description="The encoder the index was built with.")
