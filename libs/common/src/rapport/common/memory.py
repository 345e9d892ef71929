"""What Rapport remembers of a user's own words: typed facts and recalled messages.

profile derives and serves them; respond shows them in a reply and hands them to
the LLM. Defined once here, imported by both sides of the HTTP hop.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from rapport.common.vectors import MessageVector

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

# Ids say which kind of memory they name: f- a fact, m- a remembered message.
FACT_ID_PREFIX = "f-"
MESSAGE_ID_PREFIX = "m-"
MEMORY_ID_PATTERN = r"^[fm]-[0-9a-f-]{8,64}$"


class _Memory(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class MemoryFact(_Memory):
    """One thing the user said about themselves, typed, with where it came from."""

    memory_id: str = Field(
        description="Forget it with `DELETE /v1/profiles/{user_id}/memory/{memory_id}`."
    )
    type: FactType
    value: str = Field(description='Normalised: "vegetarian", "50 EUR", "Berlin", "2 kids".')
    event_id: str = Field(description="The chat_message event that said it.")
    occurred_at: datetime


class RecalledMessage(_Memory):
    """One of the user's own past messages (PII redacted), as relevant to the current one."""

    memory_id: str
    text: str
    occurred_at: datetime
    score: float = Field(description="Cosine similarity to the current message.")


class RecallRequest(_Memory):
    model_config = ConfigDict(extra="forbid")

    vector: MessageVector = Field(description="The current message's vector (from recommend).")
    k: int = Field(3, ge=1, le=20)
    min_score: float = Field(0.3, ge=-1.0, le=1.0)


class Recalled(_Memory):
    user_id: str
    recalled: list[RecalledMessage] = Field(default_factory=list)
