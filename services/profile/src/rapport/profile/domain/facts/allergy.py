"""Allergy facts: "allergic to nuts", "I have a peanut allergy", "eggs give me hives"."""

from __future__ import annotations

import re
from collections.abc import Iterator

from rapport.profile.domain.facts.assertion import Assertion
from rapport.profile.domain.facts.clauses import (
    ADV,
    NEG,
    SPEAKER,
    Clause,
    is_negated,
    retracted_after,
    scanner,
    stated,
)
from rapport.profile.domain.facts.phrases import bounded, clean_phrase, phrase_items

_ALLERGENS = {
    "peanut": "peanuts", "peanuts": "peanuts", "tree nut": "tree nuts",
    "tree nuts": "tree nuts", "nut": "nuts", "nuts": "nuts", "shellfish": "shellfish",
    "fish": "fish", "seafood": "seafood", "shrimp": "shrimp", "shrimps": "shrimp",
    "prawn": "shrimp", "prawns": "shrimp", "crab": "crab", "lobster": "lobster",
    "gluten": "gluten", "wheat": "wheat", "lactose": "lactose", "dairy": "dairy",
    "milk": "milk", "egg": "eggs", "eggs": "eggs", "soy": "soy", "soya": "soy",
    "sesame": "sesame", "sesame seeds": "sesame", "mustard": "mustard", "celery": "celery",
    "lupin": "lupin", "sulfites": "sulfites", "sulphites": "sulfites",
    "penicillin": "penicillin", "amoxicillin": "amoxicillin", "aspirin": "aspirin",
    "ibuprofen": "ibuprofen", "sulfa": "sulfa", "latex": "latex", "cat": "cats",
    "cats": "cats", "dog": "dogs", "dogs": "dogs", "pollen": "pollen", "dust": "dust mites",
    "dust mites": "dust mites", "bees": "bee stings", "bee stings": "bee stings",
    "mold": "mold", "mould": "mold", "strawberry": "strawberries",
    "strawberries": "strawberries", "kiwi": "kiwi", "almond": "almonds", "almonds": "almonds",
    "cashew": "cashews", "cashews": "cashews", "walnut": "walnuts", "walnuts": "walnuts",
    "hazelnut": "hazelnuts", "hazelnuts": "hazelnuts", "pistachio": "pistachios",
    "pistachios": "pistachios", "coconut": "coconut", "corn": "corn", "garlic": "garlic",
    "citrus": "citrus", "nickel": "nickel", "grass": "grass", "horses": "horses",
    "penicilin": "penicillin", "peanuts butter": "peanuts",
}  # fmt: skip
_ALLERGEN = "(?:" + "|".join(sorted(map(re.escape, _ALLERGENS), key=len, reverse=True)) + ")"
_ALLERGEN_LIST = rf"(?P<list>{_ALLERGEN}(?:(?:\s*,\s*(?:and\s+)?|\s+and\s+|\s+or\s+){_ALLERGEN})*)"
_SEVERITY = (
    r"(?:(?:very|severely|highly|deathly|mildly|slightly|extremely|super|quite|a\s+bit"
    r"|a\s+little|so|seriously)\s+)*"
)
_ALLERGIC_TO = re.compile(
    SPEAKER
    + ADV
    + r"(?:(?:am|are|have\s+been|been|get|became|have\s+become)\s+(?:"
    + NEG
    + r")?)?"
    + ADV
    + _SEVERITY
    + r"allergic\s+to\s+"
)
_HAS_ALLERGY = re.compile(
    SPEAKER + ADV + r"(?:(?P<neg>do\s+not|no\s+longer)\s+)?(?:have|have\s+got|got|suffer\s+from)"
    r"\s+(?:(?P<no>no)\s+)?(?:(?:a|an|severe|mild|serious|bad|slight|food|life[- ]threatening"
    r"|known)\s+)*" + _ALLERGEN_LIST + r"\s+(?:allergy|allergies|intolerance)\b"
)
_MY_ALLERGY = re.compile(
    r"\b(?:my|our)\s+" + _ALLERGEN_LIST + r"\s+(?:allergy|allergies|intolerance)\b"
)
_OUTGROWN = re.compile(r"\b(?:outgrew|outgrown|grew\s+out\s+of|got\s+over|cured)\s+$")
_INTOLERANT = re.compile(
    SPEAKER
    + ADV
    + r"(?:am|are|have\s+been)\s+(?:"
    + NEG
    + r")?"
    + ADV
    + _SEVERITY
    + r"(?P<x>lactose|gluten|fructose|histamine|dairy|wheat|soy|egg)[- ](?:intolerant|sensitive)\b"
)
_CELIAC = re.compile(
    SPEAKER + ADV + r"(?:am|are|have)\s+(?:" + NEG + r")?(?:a\s+)?(?:celiac|coeliac)\b"
)
_CANNOT_EAT = re.compile(
    SPEAKER + ADV + r"(?:cannot|can\s+not|am\s+unable\s+to|must\s+not|must\s+avoid)\s+"
    r"(?:eat|have|tolerate|digest|consume|drink|take)\s+(?:any\s+)?" + _ALLERGEN_LIST + r"\b"
)
ALLERGY_HINTS = ("allerg", "intoleran", "celiac", "coeliac", "cannot", "can not", "unable",
                 "must", "hives", "rash", "break out", "swell")  # fmt: skip
# "Eggs make me break out in hives", "shellfish gives me a rash"
_REACTION = re.compile(
    r"^(?P<thing>[a-z][\w' -]{0,30}?)\s+(?:make|makes|give|gives)\s+me\s+(?:break\s+out"
    r"|hives|a\s+rash|an?\s+(?:allergic\s+)?reaction|swell)"
)


def _allergen(words: list[str]) -> str | None:
    """The canonical allergen for a phrase after "allergic to"; unknown 1-2 word nouns pass."""
    cleaned = clean_phrase(words)
    if cleaned is None:
        return None
    phrase = " ".join(cleaned)
    if phrase in _ALLERGENS:
        return _ALLERGENS[phrase]
    if len(cleaned) <= 2 and all(w.replace("-", "").isalpha() for w in cleaned):
        return phrase
    return None


def _allergens_in(listed: str) -> list[str]:
    return [_ALLERGENS[a] for a in re.findall(_ALLERGEN, listed)]


def allergy_facts(c: Clause) -> Iterator[Assertion]:
    for m in _scan(_ALLERGIC_TO, c):
        if stated(c, m.end(), m):
            negated = is_negated(m, c)
            for words in phrase_items(c.low, m.end(), max_words=3):
                allergen = _allergen(words)
                if allergen is None:
                    break
                yield Assertion("allergy", allergen, negated)
    for m in _scan(_INTOLERANT, c):
        if stated(c, m.start("x"), m):
            yield Assertion("allergy", _ALLERGENS.get(m.group("x"), m.group("x")), is_negated(m, c))
    for m in _scan(_CELIAC, c):
        if stated(c, m.end(), m):
            yield Assertion("allergy", "gluten", is_negated(m, c))
    yield from _allergy_noun_facts(c)
    reaction = _REACTION.match(c.low)
    if reaction:
        allergen = _allergen(reaction.group("thing").split())
        if allergen:
            yield Assertion("allergy", allergen)


def _allergy_noun_facts(c: Clause) -> Iterator[Assertion]:
    """'I have a peanut allergy', 'my nut allergy', 'I can't eat shellfish'."""
    for m in _scan(_HAS_ALLERGY, c):
        if stated(c, m.start("list"), m):
            negated = bool(m.group("neg") or m.group("no")) or retracted_after(c, m.end())
            for allergen in _allergens_in(m.group("list")):
                yield Assertion("allergy", allergen, negated)
    for m in _scan(_MY_ALLERGY, c):
        if stated(c, m.start()):
            negated = bool(_OUTGROWN.search(c.low[: m.start()]))  # "I outgrew my nut allergy"
            for allergen in _allergens_in(m.group("list")):
                yield Assertion("allergy", allergen, negated)
    for m in _scan(_CANNOT_EAT, c):
        if stated(c, m.start("list"), m) and bounded(c.low, m.end()):
            for allergen in _allergens_in(m.group("list")):
                yield Assertion("allergy", allergen)


# Words a pattern cannot match without: a substring test is far cheaper than a scan.
_scan = scanner(
    {
        _ALLERGIC_TO: ("allergic",),
        _INTOLERANT: ("intolerant", "sensitive"),
        _CELIAC: ("celiac", "coeliac"),
        _HAS_ALLERGY: ("allerg", "intoleran"),
        _MY_ALLERGY: ("allerg", "intoleran"),
        _CANNOT_EAT: ("cannot", "can not", "unable", "must"),
    }
)
