"""Likes and dislikes: "I love jazz", "big fan of sci-fi", "I can't stand horror".

A plain dislike ("I don't like horror") is a positive ``dislikes``, not a negated
``likes``; "I'm not into X any more" retracts a like.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from rapport.common.contracts import FactType
from rapport.profile.domain.facts.assertion import Assertion
from rapport.profile.domain.facts.clauses import (
    ADV,
    SPEAKER,
    Clause,
    retracted_after,
    scanner,
    stated,
)
from rapport.profile.domain.facts.language import LANGUAGES
from rapport.profile.domain.facts.phrases import clean_phrase, phrase_items, word_set

_LIKE = re.compile(
    SPEAKER
    + ADV
    + r"(?:(?P<neg>do\s+not|no\s+longer|never|used\s+to|stopped)\s+)?"
    + ADV
    + r"(?P<verb>love|loved|like|liked|liking|loving|adore|enjoy|dig|prefer|have\s+a\s+soft"
    r"\s+spot\s+for|(?:(?:am|are)\s+" + ADV + r"(?:(?P<neg2>no\s+longer)\s+)?)?(?:into"
    r"|(?:a\s+)?(?:big\s+|huge\s+|massive\s+|great\s+)?fans?\s+of|obsessed\s+with"
    r"|crazy\s+about|passionate\s+about|fond\s+of|a\s+sucker\s+for))\s+" + ADV
)
# "I'm a huge horror fan", "Studio Ghibli films are my favourite", "likes: sci-fi",
# "I loved sci-fi as a teen and still do".
_X_FAN = re.compile(
    SPEAKER + r"(?:(?:am|are)\s+)?(?:a\s+)?(?:big|huge|massive|great|total|die-hard)\s+"
    r"(?P<thing>[a-z][a-z-]*(?:\s+[a-z][a-z-]*)?)\s+fan\b"
)
_IS_FAVOURITE = re.compile(
    r"^(?P<thing>[a-z0-9][\w' -]{0,40}?)\s+(?:is|are)\s+(?:my|our)\s+(?:all[- ]time\s+"
    r"|absolute\s+)?favou?rites?\b"
)
_LIKES_FIELD = re.compile(r"\b(?P<field>likes|interests|hobbies|dislikes)\s*:\s*")
_STILL_DO = re.compile(
    SPEAKER + ADV + r"(?:loved|liked|adored|enjoyed)\s+(?=[^,.;!?]*\band\s+still\s+do\b)"
)
_DISLIKE = re.compile(
    SPEAKER
    + ADV
    + r"(?:(?P<neg>do\s+not|no\s+longer|used\s+to)\s+)?"
    + ADV
    + r"(?P<verb>hate|dislike|detest|loathe|despise|cannot\s+stand|can\s+not\s+stand|cannot\s+bear"
    r"|can\s+not\s+bear|am\s+not\s+(?:really\s+)?into|are\s+not\s+into|am\s+not\s+(?:a\s+)?"
    r"(?:big\s+|huge\s+)?fan\s+of|am\s+not\s+fond\s+of|am\s+not\s+keen\s+on|am\s+not\s+big\s+on"
    r"|(?:am|are)\s+" + ADV + r"(?:sick|tired)\s+of|(?:am|are)\s+" + ADV + r"fed\s+up\s+with)"
    r"\s+" + ADV
)
# "I find crowded beaches unbearable", "Mushrooms are disgusting to me", "No spicy food
# for me": opinions said another way.
_BAD = (
    r"(?:unbearable|boring|annoying|disgusting|overrated|awful|terrible|tedious|gross|horrible"
    r"|revolting|the\s+worst)"
)
_GOOD = r"(?:amazing|fascinating|relaxing|soothing|delicious|fun|wonderful|brilliant|great)"
_FIND = re.compile(
    SPEAKER + r"(?:really\s+|honestly\s+|just\s+)?find\s+(?P<thing>[a-z][\w' -]{0,40}?)\s+"
    r"(?:really\s+|so\s+|very\s+|quite\s+|super\s+|pretty\s+|incredibly\s+)?(?:(?P<bad>"
    + _BAD
    + r")|"
    + _GOOD
    + r")\b"
)
_BAD_TO_ME = re.compile(
    r"^(?P<thing>[a-z][\w' -]{0,40}?)\s+(?:is|are)\s+(?:just\s+|so\s+|really\s+)?(?:"
    + _BAD
    + r"\s+(?:to|for)\s+me|not\s+(?:really\s+)?(?:my\s+thing|for\s+me|my\s+cup\s+of\s+tea))\b"
    r"|^no\s+(?P<none>[a-z][\w' -]{0,30}?)\s+for\s+me\b"
)
_NOT_A_FAN = re.compile(r"^not\s+(?:a\s+)?(?:big\s+|huge\s+)?fan\s+of\s+")
_FAVOURITE = re.compile(
    r"\b(?:my|our)\s+(?:all[- ]time\s+)?favou?rite\s+(?:genre|author|writer|band|book|movie|film"
    r"|show|series|game|food|cuisine|sport|team|artist|singer|drink|dish|snack|brand|thing"
    r"|music|topic|subject)\s+(?:is|are)\s+"
)
_GERUND = re.compile(
    r"^(?:reading|watching|playing|listening\s+to|eating|cooking|making|doing)\s+(.+)$"
)
LIKES_HINTS = ("lik", "lov", "ador", "enjoy", "dig", "into", "fan", "obsess", "crazy",
               "passion", "fond", "soft spot", "sucker", "prefer", "hat", "dislik", "detest",
               "loath", "despis", "stand", "bear", "keen", "big on", "favo", "sick", "tired",
               "fed up", "find", "for me", "to me", "my thing", "cup of tea", "interests",
               "hobbies")  # fmt: skip


# "I like the colour", "I don't like the price": about the item being discussed.
_ITEM_ATTRIBUTES = word_set(
    """
    option options choice choices suggestion suggestions recommendation recommendations
    result results answer answers price prices deal offer look color colour colors colours
    size design ending cover plot style shape material fit quality smell taste sound
    packaging delivery shipping service app website site interface font title layout print
    binding battery screen idea ideas
    """
)


def _liked(words: list[str]) -> str | None:
    cleaned = clean_phrase(words)
    if cleaned is None or cleaned[-1] in _ITEM_ATTRIBUTES:
        return None
    phrase = " ".join(cleaned)
    gerund = _GERUND.match(phrase)
    if gerund:
        phrase = gerund.group(1)
        again = clean_phrase(phrase.split())
        if again is None:
            return None
        phrase = " ".join(again)
    if phrase in LANGUAGES:
        return None  # "I prefer German" is a language preference
    return phrase


def _liked_list(c: Clause, start: int) -> list[str]:
    values = []
    for words in phrase_items(c.low, start):
        value = _liked(words)
        if value is None:
            break
        values.append(value)
    return values


def likes_facts(c: Clause) -> Iterator[Assertion]:
    for m in _scan(_LIKE, c):
        if stated(c, m.start("verb"), m):
            yield from _like_assertions(c, m)
    for m in _scan(_DISLIKE, c):
        if stated(c, m.start("verb"), m):
            yield from _dislike_assertions(c, m)
    not_a_fan = _NOT_A_FAN.match(c.low)
    if not_a_fan:
        for value in _liked_list(c, not_a_fan.end()):
            yield Assertion("dislikes", value)
    for m in _scan(_FAVOURITE, c):
        if stated(c, m.start()):
            for value in _liked_list(c, m.end()):
                yield Assertion("likes", value)
    yield from _opinion_facts(c)


def _opinion_facts(c: Clause) -> Iterator[Assertion]:
    """Likes and dislikes said without a liking verb (see _X_FAN, _FIND, _BAD_TO_ME)."""
    for m in _scan(_X_FAN, c):
        value = _liked(m.group("thing").split())
        if value and stated(c, m.start("thing"), m):
            yield Assertion("likes", value)
    for m in _scan(_STILL_DO, c):
        if stated(c, m.end(), m):
            for value in _liked_list(c, m.end()):
                yield Assertion("likes", value)
    for pattern in (_IS_FAVOURITE, _FIND, _BAD_TO_ME):
        for m in _scan(pattern, c):
            thing = m.group("thing") or m.groupdict().get("none") or ""
            value = _liked(thing.split())
            if value and stated(c, m.start(), m if pattern is _FIND else None):
                liked = pattern is _IS_FAVOURITE or (pattern is _FIND and not m.group("bad"))
                yield Assertion("likes" if liked else "dislikes", value)
    for m in _scan(_LIKES_FIELD, c):
        kind: FactType = "dislikes" if m.group("field") == "dislikes" else "likes"
        for value in _liked_list(c, m.end()):
            yield Assertion(kind, value)


_RIGHT_NOW = re.compile(r"(?:waiting|asking|searching|looking|scrolling|trying|this|it)\b")


def _dislike_assertions(c: Clause, m: re.Match[str]) -> Iterator[Assertion]:
    """'I hate X'; 'I'm not into X any more' retracts a like; 'I used to hate X' a dislike."""
    if m.group("verb").endswith(" of") and _RIGHT_NOW.match(c.low, m.end()):
        return  # "I'm tired of waiting": about this conversation, not a taste
    retracted = bool(m.group("neg")) or retracted_after(c, m.end())
    for value in _liked_list(c, m.end()):
        if "not" in m.group("verb") and retracted:
            yield Assertion("likes", value, True)  # "I'm not into X any more"
        else:
            yield Assertion("dislikes", value, retracted)


def _like_assertions(c: Clause, m: re.Match[str]) -> Iterator[Assertion]:
    """'I love X'; 'I don't like X' is a dislike; 'no longer', 'used to', '... any more' retract."""
    neg = m.group("neg")
    if m.group("verb") in ("loved", "liked") and neg != "used to":
        return  # "I loved the first book": not a statement about now
    if m.group("verb") == "like" and not c.low.startswith(("i ", "we "), m.start()):
        return  # "something, like a thriller": "like" without its subject is a filler
    retracted = neg in ("no longer", "used to", "stopped") or bool(m.group("neg2"))
    retracted = retracted or retracted_after(c, m.end())
    for value in _liked_list(c, m.end()):
        if neg == "do not" and not retracted:
            yield Assertion("dislikes", value)  # "I don't like horror"
        else:
            yield Assertion("likes", value, retracted)


# Words a pattern cannot match without: a substring test is far cheaper than a scan.
_scan = scanner(
    {
        _X_FAN: (" fan",),
        _STILL_DO: ("still do",),
        _IS_FAVOURITE: ("favo",),
        _FIND: ("find",),
        _BAD_TO_ME: (" me",),
        _LIKES_FIELD: (":",),
        _FAVOURITE: ("favo",),
        _LIKE: (
            "lik",
            "lov",
            "ador",
            "enjoy",
            "dig",
            "prefer",
            "soft spot",
            "into",
            "fan",
            "obsess",
            "crazy",
            "passion",
            "fond",
            "sucker",
        ),
        _DISLIKE: (
            "hat",
            "dislik",
            "detest",
            "loath",
            "despis",
            "stand",
            "bear",
            "not",
            "sick",
            "tired",
            "fed up",
        ),
    }
)
