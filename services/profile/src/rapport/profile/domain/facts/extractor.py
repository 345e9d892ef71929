"""The facts in one message: each family's rules on each clause, then the language.

``intent`` is the intent model's CLINC150 label for the message (None when
unknown; everything works without it). It only tightens or loosens:

- ``translate`` and ``spelling``: the message mentions words in another
  language or spells them ("how do you say 'I am vegan' in German"): no facts;
- banking and credit-card intents (``balance``, ``credit_limit``, ``transfer``,
  ...): their amounts are balances and limits, not a spending budget: no budget
  (see :mod:`.budget`);
- travel intents (``book_flight``, ``book_hotel``, ``car_rental``, ...): places
  there are trips, so the weak cue "I'm from X" is not taken as where one lives;
- ``change_language``: a bare language name ("french please", "switch to
  spanish") is taken as the stated preference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from rapport.profile.domain.facts.allergy import ALLERGY_HINTS, allergy_facts
from rapport.profile.domain.facts.assertion import Assertion
from rapport.profile.domain.facts.budget import budget_facts, one_budget
from rapport.profile.domain.facts.clauses import (
    Clause,
    is_statement,
    prepare_text,
    split_clauses,
    trie,
)
from rapport.profile.domain.facts.diet import DIET_HINTS, as_a_diet, diet_facts
from rapport.profile.domain.facts.foreign import FOREIGN_HINTS, foreign_facts
from rapport.profile.domain.facts.household import HOUSEHOLD_HINTS, and_i_live, household_facts
from rapport.profile.domain.facts.language import DetectLanguage, detected_language, stated_language
from rapport.profile.domain.facts.likes import LIKES_HINTS, likes_facts
from rapport.profile.domain.facts.location import LOCATION_HINTS, location_facts, origin_facts
from rapport.profile.domain.facts.owns import OWNS_HINTS, owns_facts
from rapport.profile.domain.facts.phrases import PLACEHOLDER


def extract(
    text: str, *, intent: str | None = None, detect_language: DetectLanguage | None = None
) -> list[Assertion]:
    """The facts ``text`` (already redacted) states about its speaker.

    Clause by clause, the language last; one assertion per (type, value); at most one
    budget (the last stated) besides any withdrawn. Without ``detect_language`` the
    language is found only when the speaker states it.
    """
    if intent in _MENTION_INTENTS:
        return []
    cased, low = prepare_text(text)
    found: list[Assertion] = []
    origins: list[Assertion] = []  # "I'm from Madrid": only when no stronger place is stated
    found.extend(as_a_diet(low))
    found.extend(and_i_live(low))
    for clause in split_clauses(cased, low):
        found.extend(_clause_facts(clause, intent))
        if intent not in _TRAVEL_INTENTS and is_statement(clause):
            origins.extend(origin_facts(clause))
    if not any(a.type == "location" and not a.negated for a in found):
        found.extend(origins)
    found = one_budget(found)
    language = stated_language(low, loose=intent == "change_language")
    if language is None and detect_language is not None:
        language = detected_language(text, detect_language)
    if language is not None:
        found.append(Assertion("language", language))
    return _dedupe(found)


# ------------------------------------------------------------------------- intents

_MENTION_INTENTS = frozenset({"translate", "spelling"})
_TRAVEL_INTENTS = frozenset(
    {
        "book_flight", "book_hotel", "car_rental", "travel_suggestion", "travel_alert",
        "travel_notification", "flight_status", "international_visa", "timezone",
        "plug_type", "vaccines", "lost_luggage", "carry_on", "directions", "distance",
        "uber", "traffic", "weather",
    }
)  # fmt: skip


# ---------------------------------------------------------------------- assembling

_DIGIT = re.compile(r"\d")


_FAMILIES: tuple[tuple[Callable[[Clause], Iterator[Assertion]], tuple[str, ...]], ...] = (
    (diet_facts, DIET_HINTS),
    (allergy_facts, ALLERGY_HINTS),
    (location_facts, LOCATION_HINTS),
    (household_facts, HOUSEHOLD_HINTS),
    (owns_facts, OWNS_HINTS),
    (likes_facts, LIKES_HINTS),
    (foreign_facts, FOREIGN_HINTS),
)


def _hint_families() -> dict[str, tuple[int, ...]]:
    """Each hint stem -> the families (indexes into _FAMILIES) it wakes."""
    families: dict[str, tuple[int, ...]] = {}
    for i, (_, stems) in enumerate(_FAMILIES):
        for stem in stems:
            families[stem] = (*families.get(stem, ()), i)
    return families


# One scan per clause finds every hint stem (see _clause_facts).
_HINT_FAMILIES = _hint_families()
_HINT = re.compile(trie(_HINT_FAMILIES))


def _clause_facts(c: Clause, intent: str | None) -> Iterator[Assertion]:
    """Every fact one clause states; one hint scan skips the rules that cannot match."""
    if _DIGIT.search(c.low):
        yield from budget_facts(c, intent)
    if c.question:
        return
    awake = {i for m in _HINT.finditer(c.low) for i in _HINT_FAMILIES[m.group()]}
    for i, (rules, _) in enumerate(_FAMILIES):
        if i in awake:
            yield from rules(c)


def _dedupe(found: list[Assertion]) -> list[Assertion]:
    """One assertion per (type, value); a later one (a correction) replaces an earlier one."""
    latest: dict[tuple[str, str], Assertion] = {}
    for a in found:
        if PLACEHOLDER.search(a.value) or "[" in a.value:
            continue  # a redacted identifier is never a value
        latest.pop((a.type, a.value), None)
        latest[(a.type, a.value)] = a
    return list(latest.values())
