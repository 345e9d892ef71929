"""Pure decisions about a reply: tone, which profile facts may be shown, safe labels.

Profile values arrive from events that clients send (categories, preferences,
searches), so nothing from a profile is shown or put in a prompt unless it is
typed here: labels must look like labels, preferences are read only for keys
with a known type, and free text (searches, other preference values) is never
used at all. Memory's facts are typed, short values the profile's extractor
normalised; a template shows one only when it looks like a value.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapport.common.contracts import (
    FRUSTRATED_SEGMENT,
    FRUSTRATED_SENTIMENT_EWMA,
    GENERIC_REASON,
    MemoryFact,
    MessageUnderstanding,
    ProfileView,
    Reason,
    ReasonKind,
    RecommendedItem,
    reason_text,
)
from rapport.common.experiments import Tone
from rapport.common.problems import FieldError, ProblemError
from rapport.respond.templates import TONES

# A user who asks to repeat or what they can ask is lost; so is one the model barely understood.
CONFUSED_INTENTS = frozenset({"repeat", "what_can_i_ask_you", "maybe"})
LOW_CONFIDENCE = 0.35
OUT_OF_SCOPE = "oos"

MAX_LABEL = 32
MAX_LABEL_WORDS = 3
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 &'/.,+-]*$")
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")
MAX_TITLE = 100
# Reasons whose label is a category, which comes from events that clients send.
_CATEGORY_REASONS = frozenset(
    {
        ReasonKind.MATCHES_INTEREST,
        ReasonKind.POPULAR_IN,
        ReasonKind.TRENDING_IN,
        ReasonKind.SOMETHING_DIFFERENT,
    }
)


def safe_label(value: object) -> str | None:
    """``value`` when it looks like a category or segment name, else None.

    Short, at most three words, letters, digits and a little punctuation: a
    genre passes, a sentence (an instruction) does not.
    """
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > MAX_LABEL or len(value.split()) > MAX_LABEL_WORDS:
        return None
    return value if _LABEL.match(value) else None


def bounded_title(value: str) -> str:
    """A catalogue title, bounded and without angle brackets (they delimit prompt sections)."""
    cleaned = " ".join(value.replace("<", "(").replace(">", ")").split())
    return cleaned if len(cleaned) <= MAX_TITLE else cleaned[: MAX_TITLE - 1] + "…"


def safe_reason(why: Reason) -> str:
    """Recommend's reason as text, with a category only when it is a safe label."""
    if why.kind in _CATEGORY_REASONS:
        label = safe_label(why.label)
        return reason_text(why.model_copy(update={"label": label})) if label else GENERIC_REASON
    if why.kind is ReasonKind.BECAUSE_YOU_WATCHED and why.label:
        return reason_text(why.model_copy(update={"label": bounded_title(why.label)}))
    return reason_text(why)


def interests(profile: ProfileView | None, limit: int = 3) -> list[str]:
    """The strongest positive affinities whose names are safe labels, strongest first.

    None for an unknown user: a cold-start profile's affinities are what is popular,
    and "since you like ..." would put words in their mouth.
    """
    if profile is None or not profile.known:
        return []
    ranked = sorted(profile.affinities.items(), key=lambda kv: kv[1], reverse=True)
    out = []
    for name, score in ranked:
        label = safe_label(name)
        if label and score > 0:
            out.append(label)
        if len(out) == limit:
            break
    return out


def preferred_tone(profile: ProfileView | None) -> Tone | None:
    """A stated preference ``{"tone": "concise"}``, when it names a known tone."""
    if profile is None:
        return None
    value = profile.preferences.get("tone")
    for tone in TONES:
        if value == tone:
            return tone
    return None


def preferred_language(profile: ProfileView | None, locale: str | None) -> str | None:
    """The request's locale, else the profile's ``language`` preference, else the language
    memory knows they write in; a tag, or None."""
    stated = profile.preferences.get("language") if profile else None
    remembered = (
        next((f.value for f in profile.facts if f.type == "language"), None) if profile else None
    )
    for value in (locale, stated, remembered):
        if isinstance(value, str) and _LOCALE.match(value):
            return value
    return None


# Which facts matter to a request, by its intent's domain, most important first
# (an allergy before a diet: it is the one that hurts to forget).
RELEVANT_FACTS: dict[str, tuple[str, ...]] = {
    "kitchen_and_dining": ("allergy", "diet", "dislikes"),
    "recommendations": ("owns", "budget", "dislikes", "likes"),
    "travel": ("location", "budget"),
    "home": ("household", "budget"),
    "auto_and_commute": ("location",),
    "utility": ("location",),
}
FACT_PHRASES: dict[str, str] = {
    "diet": "you're {}",
    "allergy": "you're allergic to {}",
    "budget": "your budget is {}",
    "owns": "you already have {}",
    "likes": "you like {}",
    "dislikes": "you don't like {}",
    "location": "you're in {}",
    "household": "you live with {}",
}
MAX_NOTE_FACTS = 2
_FACT_VALUE = re.compile(r"^[\w][\w '.&/+-]{0,39}$")


def memory_note(facts: Sequence[MemoryFact], domain_name: str | None) -> str:
    """What the user told us that matters here, as a clause: "you're vegetarian"."""
    wanted = RELEVANT_FACTS.get(domain_name or "", ())
    picked = [
        FACT_PHRASES[fact.type].format(fact.value)
        for fact_type in wanted
        for fact in facts
        if fact.type == fact_type and _FACT_VALUE.match(fact.value)
    ]
    return " and ".join(picked[:MAX_NOTE_FACTS])


def segments(profile: ProfileView | None, model_segment: str | None) -> list[str]:
    found = [s for s in (profile.segments if profile else []) if safe_label(s)]
    if model_segment and safe_label(model_segment):
        found.append(model_segment)
    return list(dict.fromkeys(found))


def signed_sentiment(label: str | None, score: float | None) -> float | None:
    """A score in [-1, 1] whatever the model's convention (probability or signed)."""
    if label is None:
        return None
    magnitude = min(1.0, abs(score)) if score is not None else 1.0
    if label == "negative":
        return -magnitude
    if label == "positive":
        return magnitude
    return 0.0


def choose_tone(
    message: MessageUnderstanding | None,
    profile: ProfileView | None,
) -> Tone:
    """Empathetic when the user is negative or confused, concise when positive, else neutral.

    Negative: this message, or the session's running sentiment, or the
    profile's ``frustrated`` segment. A stated ``tone`` preference wins over
    everything but a negative or confused user.
    """
    negative = message is not None and message.sentiment == "negative"
    confused = message is not None and (
        message.intent in CONFUSED_INTENTS
        or (not message.out_of_scope and message.confidence < LOW_CONFIDENCE)
    )
    if profile is not None:
        ewma = profile.session.sentiment_ewma if profile.session else None
        negative = negative or (ewma is not None and ewma <= FRUSTRATED_SENTIMENT_EWMA)
        negative = negative or FRUSTRATED_SEGMENT in profile.segments
    if negative or confused:
        return "empathetic"
    preferred = preferred_tone(profile)
    if preferred is not None:
        return preferred
    if message is not None and message.sentiment == "positive":
        return "concise"
    return "neutral"


def readable(name: str) -> str:
    return name.replace("_", " ").strip()


def join_words(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


@dataclass(frozen=True)
class ShownItem:
    """A recommended item as a reply shows it."""

    item_id: str
    title: str
    score: float
    reason: str


def shown_items(items: Sequence[RecommendedItem], limit: int) -> list[ShownItem]:
    """The items a reply shows, with bounded titles and safe reasons."""
    return [
        ShownItem(
            item_id=item.item_id,
            title=bounded_title(item.title),
            score=item.score,
            reason=safe_reason(item.why),
        )
        for item in items[:limit]
    ]


# --- a request's end-to-end budget: every outbound call gets what is left of it ---

DEADLINE_HEADER = "X-Rapport-Deadline-Ms"


@dataclass
class Deadline:
    budget_s: float
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def of_ms(cls, ms: float) -> Deadline:
        return cls(ms / 1000)

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def remaining_s(self, reserve_s: float = 0.0) -> float:
        """What is left, minus ``reserve_s`` kept for later stages; never negative."""
        return max(0.0, self.budget_s - self.elapsed_s() - reserve_s)


def parse_deadline_header(value: str | None, *, default_ms: int, max_ms: int) -> float:
    """The request's budget in ms: the header when it is a number in [1, max_ms], else 422."""
    if value is None:
        return float(default_ms)
    try:
        ms = float(value)
    except ValueError:
        ms = -1.0
    if not 1 <= ms <= max_ms:
        raise ProblemError(
            422,
            title="Invalid deadline",
            detail=f"{DEADLINE_HEADER} must be a number of milliseconds from 1 to {max_ms}.",
            slug="validation",
            errors=[FieldError(field=DEADLINE_HEADER, reason=f"not in [1, {max_ms}]")],
        )
    return ms
