"""Household facts: who and what lives with the speaker ("two kids", "my husband", "a cat")."""

from __future__ import annotations

import re
from collections.abc import Iterator

from rapport.profile.domain.facts.assertion import Assertion
from rapport.profile.domain.facts.clauses import (
    ADV,
    HYPOTHETICAL,
    SPEAKER,
    SUBJECT,
    Clause,
    is_negated,
    retracted_after,
    scanner,
    stated,
)
from rapport.profile.domain.facts.phrases import NUMBERS, phrase_items, word_set

HOUSEHOLD_NOUNS = word_set(
    """
    newborn wife husband partner spouse boyfriend girlfriend fiance fiancee fiancé fiancée kid kids
    child children son sons daughter daughters baby babies toddler toddlers twins teen teens
    teenager teenagers boy boys girl girls stepson stepdaughter stepkids parents mom mum
    mother dad father grandma grandmother grandpa grandfather grandparents grandkids
    grandchildren brother brothers sister sisters sibling siblings roommate roommates
    flatmate flatmates housemate housemates family in-laws dog dogs cat cats puppy puppies
    kitten kittens pet pets rabbit rabbits bunny bunnies hamster hamsters parrot parrots bird
    birds fish goldfish horse horses turtle turtles tortoise snake lizard chickens ferret
    ferrets
    """
)
_LIVE_WITH_ONLY = frozenset({"friend", "friends", "best friend", "mom", "mum", "mother", "dad",
                             "father", "parents", "grandma", "grandmother", "grandpa",
                             "grandfather", "grandparents", "family", "in-laws"})  # fmt: skip
_HOUSEHOLD_MODIFIERS = word_set(
    """
    little small young teenage grown grown-up adult older younger big old new newborn baby
    rescue lovely beautiful wonderful sweet adorable amazing two-year-old crazy lazy fat very
    really super tiny huge cute grumpy
    elderly senior indoor outdoor male female black white ginger tabby best
    """
)
_HAS = re.compile(
    SPEAKER
    + ADV
    + r"(?:(?P<neg>do\s+not|no\s+longer|never|did\s+not)\s+)?(?:have\s+(?:already\s+)?got"
    r"|have\s+been\s+blessed\s+with|have|got)\s+(?:(?P<no>no)\s+)?(?:any\s+)?"
)
_LIVE_WITH = re.compile(
    SPEAKER + ADV + r"(?:(?P<neg>do\s+not|no\s+longer|used\s+to)\s+)?(?:live|am\s+living"
    r"|are\s+living|share\s+(?:a|an|my|our)\s+(?:flat|house|apartment|place|home))\s+"
    r"(?:here\s+|in\s+[^,.;!?]{1,40}?\s+)?with\s+"  # "I live in Lyon with my husband"
)
_MARRIED_WITH = re.compile(SPEAKER + ADV + r"(?:am|are)\s+married\s+with\s+")
_PARENT_OF = re.compile(
    SUBJECT + ADV + r"(?:am|are)\s+(?:a\s+)?(?:(?:proud|single|busy|working|stay-at-home)\s+)*"
    r"(?:mom|mum|mother|dad|father|parent|parents|mama|papa)\s+(?:of|to)\s+(?P<num>a|an|one|two"
    r"|three|four|five|six|\d+)(?:\s+(?P<noun>kids|children|boys|girls|sons|daughters|little"
    r"\s+ones))?\b"
)
# "My husband and I share a flat", "my mum lives with us", "there's a toddler in the
# house", "Our household: me, my girlfriend and a cat", "I'm a pescatarian with a cat".
_AND_I_LIVE = re.compile(
    r"\b(?:my|our)\s+(?P<who>[a-z-]+(?:\s+[a-z-]+)?)\s+and\s+i\s+(?:live|share|are\s+living)\b"
)
_LIVES_WITH_US = re.compile(
    r"\b(?:my|our)\s+(?P<who>[a-z-]+(?:\s+[a-z-]+)?)\s+(?:lives|is\s+living|stays|has\s+moved\s+in"
    r"|moved\s+in)\s+with\s+(?:us|me)\b"
)
_THERE_IS = re.compile(
    r"^there\s+(?:is|are)\s+(?=.*\b(?:in\s+the\s+house|at\s+home|in\s+our\s+home)\b)"
)
_HOUSEHOLD_LIST = re.compile(
    r"\b(?:household|family)\b[^:]{0,30}:\s*(?:me|myself|i)\s*(?:,|and)\s*"
)
_WITH_A = re.compile(SUBJECT + r"(?:am|are)\s+(?:a|an)\s+[a-z-]+(?:\s+[a-z-]+)?\s+with\s+")
_LEFT_PARENTS = re.compile(
    SPEAKER + r"(?:have\s+)?moved\s+out\s+of\s+(?:my|our)\s+(?P<who>parents|mom|mum|dad)(?:'s?)?"
    r"\s+(?:place|house|home|flat)\b"
)
_PET_GONE = re.compile(
    r"\b(?:my|our)\s+(?P<noun>dog|cat|puppy|kitten|rabbit|hamster|parrot|bird|fish|goldfish"
    r"|horse|turtle|tortoise)\s+(?:died|passed\s+away|passed)\b"
)
HOUSEHOLD_HINTS = ("have", "got", "liv", "share", "married", "mom", "mum", "dad", "parent",
                   "mother", "father", "died", "passed", "there is", "there are", "household",
                   "family", " with ")  # fmt: skip


_COUNT = re.compile(
    r"^(?:(?:a\s+)?couple\s+(?:of\s+)?|(?P<n>\d+|one|two|three|four|five|six|seven|eight|nine"
    r"|ten|eleven|twelve)\s+|(?P<twin>twin)\s+|(?:a|an|the|several|some|a\s+few|few|many)\s+)"
)
_AGE = re.compile(r"^\d+[- ]?(?:year|yr|month)s?[- ]old\s+")


def _household_item(words: list[str], *, live_with: bool) -> str | None:
    """'two small kids' -> '2 kids', 'a cat' -> 'cat'; None when the head is not household.

    A count of one is dropped like an article ("one son" -> "son"), so that the same
    person is one fact however it was said.
    """
    text = " ".join(w for w in words if w not in {"my", "our", "own"})
    count = 0
    m = _COUNT.match(text)
    if m:
        n = m.group("n")
        if "couple" in m.group() or m.group("twin"):
            count = 2
        elif n:
            count = int(n) if n.isdigit() else NUMBERS[n]
        text = text[m.end() :]
    text = _AGE.sub("", text)
    rest = text.split()
    while len(rest) > 1 and rest[0] in _HOUSEHOLD_MODIFIERS:
        rest = rest[1:]
    noun = " ".join(rest)
    known = noun in HOUSEHOLD_NOUNS and noun not in _LIVE_WITH_ONLY
    if not known and not (live_with and noun in _LIVE_WITH_ONLY | HOUSEHOLD_NOUNS):
        return None
    return f"{count} {noun}" if count > 1 else noun


def _household_list(c: Clause, start: int, *, live_with: bool) -> list[str]:
    values = []
    for words in phrase_items(c.low, start, max_words=5):
        value = _household_item(words, live_with=live_with)
        if value is None:
            break
        values.append(value)
    return values


def household_facts(c: Clause) -> Iterator[Assertion]:
    for m in _scan(_HAS, c):
        if stated(c, m.end(), m):
            negated = bool(m.group("neg") or m.group("no")) or retracted_after(c, m.end())
            for value in _household_list(c, m.end(), live_with=False):
                yield Assertion("household", value, negated)
    for m in _scan(_LIVE_WITH, c):
        if stated(c, m.end(), m):
            for value in _household_list(c, m.end(), live_with=True):
                yield Assertion("household", value, is_negated(m, c))
    for m in _scan(_MARRIED_WITH, c):
        if stated(c, m.end(), m):
            for value in _household_list(c, m.end(), live_with=False):
                yield Assertion("household", value)
    for m in _scan(_PARENT_OF, c):
        if stated(c, m.end(), m):
            count = int(m.group("num")) if m.group("num").isdigit() else NUMBERS[m.group("num")]
            noun = re.sub(r"\s+", " ", m.group("noun") or "kids")
            noun = "kids" if noun == "little ones" else noun
            yield Assertion("household", f"{count} {noun}" if count > 1 else noun.rstrip("s"))
    for m in _scan(_PET_GONE, c):
        yield Assertion("household", m.group("noun"), negated=True)
    yield from _household_mentions(c)


def and_i_live(low: str) -> Iterator[Assertion]:
    """'My husband and I share a flat' (the whole text: clauses are cut at "and I")."""
    for m in _AND_I_LIVE.finditer(low):
        value = _household_item(m.group("who").split(), live_with=True)
        if value and not HYPOTHETICAL.search(low, 0, m.start()):
            yield Assertion("household", value)


def _household_mentions(c: Clause) -> Iterator[Assertion]:
    """The other ways of saying who lives with the speaker (see _AND_I_LIVE and below)."""
    for pattern in (_LIVES_WITH_US, _LEFT_PARENTS):
        for m in _scan(pattern, c):
            value = _household_item(m.group("who").split(), live_with=True)
            if value and stated(c, m.start()):
                yield Assertion("household", value, negated=pattern is _LEFT_PARENTS)
    for pattern in (_THERE_IS, _HOUSEHOLD_LIST, _WITH_A):
        for m in _scan(pattern, c):
            if stated(c, m.end()):
                for value in _household_list(c, m.end(), live_with=pattern is _HOUSEHOLD_LIST):
                    yield Assertion("household", value)


# Words a pattern cannot match without: a substring test is far cheaper than a scan.
_scan = scanner(
    {
        _HAS: ("have", "got", "blessed"),
        _LIVE_WITH: ("with",),
        _MARRIED_WITH: ("married",),
        _PARENT_OF: (" of ", " to "),
        _PET_GONE: ("died", "passed"),
        _LIVES_WITH_US: ("with us", "with me"),
        _LEFT_PARENTS: ("moved out",),
        _THERE_IS: ("there ",),
        _HOUSEHOLD_LIST: (":",),
        _WITH_A: (" with ",),
    }
)
