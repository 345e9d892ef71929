"""Diet facts: "I'm vegetarian", "I don't eat meat", "as a vegan, I ...", "vegan here"."""

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
    scanner,
    stated,
)
from rapport.profile.domain.facts.phrases import bounded

_DIET_VALUES = {
    "vegetarian": "vegetarian", "veggie": "vegetarian", "vegan": "vegan",
    "plant-based": "vegan", "plant based": "vegan", "pescatarian": "pescatarian",
    "pescetarian": "pescatarian", "halal": "halal", "kosher": "kosher",
    "gluten-free": "gluten-free", "gluten free": "gluten-free", "dairy-free": "dairy-free",
    "dairy free": "dairy-free", "keto": "keto", "ketogenic": "keto", "paleo": "paleo",
    "low-carb": "low-carb", "low carb": "low-carb", "vegeterian": "vegetarian",
    "vegatarian": "vegetarian", "vegitarian": "vegetarian",
}  # fmt: skip
_DIET = (
    r"(?:vegetarian|vegeterian|vegatarian|vegitarian|veggie|vegan|plant[- ]based|pesc[ae]tarian"
    r"|halal|kosher|gluten[- ]free|dairy[- ]free|keto(?:genic)?|paleo|low[- ]carb)"
)
_DIET_WORD = re.compile(_DIET)
_DIET_LIST = (
    rf"(?P<diets>{_DIET}(?:(?:\s*,\s*(?:and\s+)?|\s+and\s+|\s*&\s*|\s+or\s+)(?:also\s+)?{_DIET})*)"
)
_DIET_MODIFIERS = (
    r"(?:(?:a|an|strict|full[- ]time|committed|proud|practicing|practising|lifelong|lacto[- ]ovo"
    r"|ovo[- ]lacto|lacto|ovo|complete|total|mostly)\s+)*"
)
_DIET_SUFFIX = r"(?:\s+(?:diet|lifestyle|person|eater|household|family|myself|ourselves))?"
_DIET_IS = re.compile(
    SPEAKER + ADV + r"(?:am|are|have\s+been|been|became|have\s+become|went|have\s+gone"
    r"|turned|have\s+turned|stay|remain)\s+(?:"
    + NEG
    + r")?"
    + ADV
    + _DIET_MODIFIERS
    + _DIET_LIST
    + r"\b"
    + _DIET_SUFFIX
)
_DIET_DO = re.compile(
    SPEAKER + ADV + r"(?:(?P<neg>do\s+not|no\s+longer)\s+)?(?:eat|keep|follow|do|stick\s+to|live"
    r"|(?:am|are)(?:\s+(?P<neg2>not|no\s+longer))?\s+(?:on|doing|eating|following)"
    r"|(?:have\s+)?been\s+(?:on|doing|eating|following)|doing|eating|following)\s+"
    + ADV
    + _DIET_MODIFIERS
    + _DIET_LIST
    + r"\b"
    + r"(?:\s+(?:diet|food|lifestyle))?"
)
_DIET_STOPPED = re.compile(
    SPEAKER + ADV + r"(?:have\s+|had\s+)?(?:stopped|quit|gave\s+up|given\s+up|am\s+done"
    r"|are\s+done|used\s+to)\s+(?:being\s+|be\s+|eating\s+|following\s+|doing\s+|with\s+)?"
    + _DIET_MODIFIERS
    + _DIET_LIST
    + r"\b"
    + _DIET_SUFFIX
)
_DIET_AS_A = re.compile(
    r"(?:^|[.!;]\s+)as\s+an?\s+" + _DIET_LIST + r"(?:\s+(?:person|eater|guy|girl|woman|man"
    r"|mom|mum|dad|family|household))?\b[^,.;!?]{0,40},\s*(?:i|we)\b"
)
# "(I'm) fully plant-based since January", "vegan here": a clause that is only a diet,
# with an adverb or a word after it ("vegan please" alone is a request, not a fact).
_DIET_TRAIL = (
    r"\s+(?:here|since|now|btw|fyi|myself|too|as\s+well|lol|obviously|nowadays|these\s+days"
    r"|by\s+choice|for\s+life|for\s+\w+\s+(?:years|months))\b.*"
)
_DIET_HOME = re.compile(
    r"^(?:(?:a|an|my|our)\s+)?" + _DIET_LIST + r"\s+(?:kitchen|household|home)\b"
)
_DIET_ALONE = re.compile(
    r"^(?P<adverb>(?:fully|strictly|completely|totally|mostly|proudly|100%)\s+)?"
    + _DIET_LIST
    + r"(?P<trail>"
    + _DIET_TRAIL
    + r")?$"
)
# "I don't eat meat" is a diet; "I don't eat meat on Fridays" is not (see phrases.bounded).
_NO_MEAT = re.compile(
    SPEAKER + ADV + r"(?:do\s+not|never|cannot|no\s+longer|stopped|gave\s+up|quit|have\s+stopped"
    r"|have\s+given\s+up)\s+(?:eat(?:ing)?\s+)?(?:any\s+)?(?P<food>meat(?:\s*(?:,|or|and|nor)\s+"
    r"(?:fish|seafood))?|(?:fish|seafood)\s+(?:or|and|nor)\s+meat|animal\s+products|meat\s+or\s+"
    r"dairy|meat,\s+dairy\s+or\s+eggs|gluten|dairy)\b"
)
# "I don't eat meat on Fridays / at home / much": a habit with exceptions, not a diet.
_QUALIFIED = re.compile(
    r"\s+(?:on|during|except|at|in|before|after|most|every|much|often|very|for|when|while"
    r"|unless|that|too|as|if)\b"
)
# "I'm vegan on weekdays", "I eat vegan at home": part-time, not a diet ("at the moment" is).
_PART_TIME = re.compile(
    r"\s+(?:on|during|except|at(?!\s+(?:the\s+moment|present))|in(?!\s+general)|most|every"
    r"|often|sometimes|when|while|unless|before|after|mostly|part)\b"
)
# A clause without one of these hint stems cannot match the rules (see extractor._clause_facts).
DIET_HINTS = ("veg", "halal", "kosher", "pesc", "gluten", "dairy", "keto", "paleo", "carb",
              "meat", "plant", "animal")  # fmt: skip


def _diets(m: re.Match[str]) -> list[str]:
    return [_DIET_VALUES[w] for w in _DIET_WORD.findall(m.group("diets"))]


def diet_facts(c: Clause) -> Iterator[Assertion]:
    for pattern, retraction in ((_DIET_IS, False), (_DIET_DO, False), (_DIET_STOPPED, True)):
        for m in _scan(pattern, c):
            if not stated(c, m.start("diets"), m) or _PART_TIME.match(c.low, m.end()):
                continue
            if bounded(c.low, m.end()):
                negated = retraction or is_negated(m, c)
                for diet in _diets(m):
                    yield Assertion("diet", diet, negated)
    alone = _DIET_ALONE.match(c.low)
    if alone and (alone.group("adverb") or alone.group("trail")):
        for diet in _diets(alone):
            yield Assertion("diet", diet)
    home = _DIET_HOME.match(c.low)
    if home:
        for diet in _diets(home):
            yield Assertion("diet", diet)
    yield from _no_meat_facts(c)


def as_a_diet(low: str) -> Iterator[Assertion]:
    """'As a vegan, I ...' (the whole text: the comma would cut it into two clauses)."""
    for m in _DIET_AS_A.finditer(low):
        for diet in _diets(m):
            yield Assertion("diet", diet)


def _no_meat_facts(c: Clause) -> Iterator[Assertion]:
    """'I don't eat meat' -> vegetarian, '... animal products' -> vegan."""
    for m in _scan(_NO_MEAT, c):
        if stated(c, m.start("food"), m) and not _QUALIFIED.match(c.low, m.end()):
            food = m.group("food")
            if food in ("gluten", "dairy") and "cannot" in m.group():
                continue  # "I can't eat gluten" is an allergy (see allergy._CANNOT_EAT)
            if food == "gluten":
                yield Assertion("diet", "gluten-free")
            elif food == "dairy":
                yield Assertion("diet", "dairy-free")
            else:
                vegan = "animal" in food or "dairy" in food
                yield Assertion("diet", "vegan" if vegan else "vegetarian")


# Words a pattern cannot match without: a substring test is far cheaper than a scan.
_scan = scanner(
    {
        _NO_MEAT: ("meat", "animal", "gluten", "dairy", "fish"),
    }
)
