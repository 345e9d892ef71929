"""Owns facts: what the speaker has ("I own a kindle", "I sold my ps5")."""

from __future__ import annotations

import re
from collections.abc import Iterator

from rapport.profile.domain.facts.assertion import Assertion
from rapport.profile.domain.facts.clauses import (
    ADV,
    SPEAKER,
    Clause,
    retracted_after,
    scanner,
    stated,
)
from rapport.profile.domain.facts.household import HOUSEHOLD_NOUNS
from rapport.profile.domain.facts.phrases import (
    DETERMINERS,
    NUMBERS,
    clean_phrase,
    phrase_items,
    word_set,
)

# "have" and "got" alone are too loose ("I have a question"): their object must be a
# known kind of possession, a model name with a digit ("iphone 15", "ps5"), or an
# ordinal part of a series ("the first book").
_OWNABLE = word_set(
    """
    kindle kobo ereader e-reader ipad iphone android phone smartphone laptop macbook pc computer
    desktop tablet mac imac chromebook ps4 ps5 playstation xbox switch console tv television
    camera dslr drone printer car bike bicycle e-bike scooter motorbike motorcycle airpods
    headphones earbuds speaker echo alexa smartwatch fitbit garmin router monitor keyboard
    mouse headset oculus quest fryer blender espresso nespresso dishwasher microwave oven grill
    bbq fridge freezer garden balcony pool netflix spotify hulu disney+ subscription
    membership vinyl turntable guitar piano keyboard ukulele violin drums van truck suv tesla
    galaxy pixel watch kettle toaster mixer thermomix vacuum roomba tent
    """
)
_SERIES_PART = re.compile(
    r"^(?:first|second|third|fourth|fifth|sixth|seventh|last|latest|previous|new|\d+(?:st|nd|rd"
    r"|th))\s+(?:\w+\s+)?(?:book|books|volume|volumes|part|parts|season|seasons|edition|game"
    r"|games|movie|movies|film|films|album|installment|novel|novels|issue|issues|one|two|three)$"
)
_ABSTRACT = word_set(
    """
    question questions problem problems issue issues idea ideas time plan plans order orders
    appointment meeting reservation booking ticket tickets feeling feelings doubt doubts
    concern concerns answer answers gift gifts present presents something lot few bunch
    couple enough budget allergy allergies cold flu fever headache covid cough job day days
    week weekend trip vacation holiday class exam test interview date party chance choice
    option options access code discount coupon voucher refund password email number address
    name degree account accounts favorite favourite list lunch dinner breakfast food call
    deadline shift flight
    groceries stuff things thing same wrong size right experience friend friends one ones
    kind sort type suggestion suggestions recommendation recommendations feedback review
    """
)
_OWN_STRONG = re.compile(
    SPEAKER + ADV + r"(?P<verb>own|have\s+owned|bought|purchased|have\s+bought|have\s+purchased"
    r"|picked\s+up|preordered|pre-ordered|got\s+myself|got\s+ourselves)\s+"
)
_OWN_WEAK = re.compile(SPEAKER + ADV + r"(?P<verb>have\s+(?:already\s+|just\s+)?got|have|got)\s+")
_OWN_GONE = re.compile(
    SPEAKER + ADV + r"(?:have\s+)?(?:just\s+)?(?:sold|got\s+rid\s+of|gave\s+away|returned"
    r"|traded\s+in|donated|threw\s+out|threw\s+away)\s+(?P<det>my|our|the)\s+"
)
_OWN_NOT = re.compile(
    SPEAKER + ADV + r"(?P<neg>do\s+not|no\s+longer|never)\s+(?:have|own)\s+(?:(?:a|an|any|my"
    r"|our)\s+)?"
)
_GIFT_AFTER = re.compile(
    r"\s*(?:for\s+(?:my|our|a|his|her|their|him|them|the)\b|as\s+(?:a\s+)?(?:gift|present)s?\b)"
)
OWNS_HINTS = ("have", "got", "own", "bought", "purchas", "sold", "rid", "gave", "returned",
              "picked", "order", "donat", "threw", "traded")  # fmt: skip


def _owned(words: list[str], *, strong: bool, capitalised: bool = False) -> str | None:
    """The owned thing's phrase. After bare "have"/"got" it must be a known kind of
    possession, a model ("iphone 15"), a part of a series, or a name as written ("an
    Instant Pot"); after "own", "bought", "already have" any bounded thing counts."""
    cleaned = clean_phrase([w for w in words if w != "own"])
    if cleaned is None:
        return None
    if cleaned[-1] in HOUSEHOLD_NOUNS or cleaned[-1] in _ABSTRACT:
        return None  # "I have two kids" is household; "I have a question" is nothing
    phrase = " ".join(cleaned)
    if cleaned[0] in NUMBERS and cleaned[0] not in ("a", "an"):
        cleaned = [str(NUMBERS[cleaned[0]]), *cleaned[1:]]
        phrase = " ".join(cleaned)
    if strong:
        return phrase
    if "of" in cleaned:
        return None  # "got rid of my car", "have a lot of time"
    model = any(ch.isdigit() for ch in phrase) and not cleaned[0].isdigit()
    known = any(w in _OWNABLE for w in cleaned)
    return phrase if model or known or capitalised or _SERIES_PART.match(phrase) else None


def owns_facts(c: Clause) -> Iterator[Assertion]:
    for pattern, negated in (
        (_OWN_STRONG, False),
        (_OWN_WEAK, False),
        (_OWN_GONE, True),
        (_OWN_NOT, True),
    ):
        for m in _scan(pattern, c):
            if not stated(c, m.end(), m):
                continue
            items = phrase_items(c.low, m.end())
            if _bought_as_gift(c, m, pattern, items):
                continue
            gone = negated or (pattern is _OWN_WEAK and retracted_after(c, m.end()))
            strong = _strong_owning(pattern, m)
            pos = m.end()
            for words in items:
                capitalised = _capitalised(c, pos, words)
                pos = _phrase_end(c.low, pos, words)
                value = _owned(words, strong=strong, capitalised=capitalised)
                if value is None:
                    break
                yield Assertion("owns", value, gone)


def _capitalised(c: Clause, pos: int, words: list[str]) -> bool:
    """True when the phrase's first content word is written with a capital ("an Instant Pot")."""
    content = [w for w in words if w not in DETERMINERS]
    if not content:
        return False
    start = c.low.find(content[0], pos)
    return start >= 0 and c.text[start : start + 1].isupper()


def _bought_as_gift(
    c: Clause, m: re.Match[str], pattern: re.Pattern[str], items: list[list[str]]
) -> bool:
    """'I bought a kindle for my wife': hers, not the speaker's."""
    if pattern is not _OWN_STRONG or not items:
        return False
    return bool(_GIFT_AFTER.match(c.low, _phrase_end(c.low, m.end(), items[-1])))


def _strong_owning(pattern: re.Pattern[str], m: re.Match[str]) -> bool:
    """'own', 'bought', 'sold', 'already have': any bounded thing; bare 'have': known kinds."""
    if pattern is _OWN_STRONG or pattern is _OWN_GONE or "already" in m.string[m.start() :]:
        return True
    return pattern is _OWN_NOT and "own" in m.group().split()


def _phrase_end(low: str, start: int, words: list[str]) -> int:
    pos = start
    for word in words:
        pos = low.index(word, pos) + len(word)
    return pos


# Words a pattern cannot match without: a substring test is far cheaper than a scan.
_scan = scanner(
    {
        _OWN_STRONG: (
            "own",
            "bought",
            "purchased",
            "picked up",
            "preorder",
            "pre-order",
            "got myself",
            "got ourselves",
        ),
        _OWN_WEAK: ("have", "got"),
        _OWN_GONE: ("sold", "rid of", "gave away", "returned", "traded", "donated", "threw"),
        _OWN_NOT: ("not ", "no longer", "never"),
    }
)
