"""Location facts: "I live in Berlin", "I moved to Lyon", "I left London", "I'm from Madrid".

Places are sliced from the text as written, so they keep their case; "I'm from X" is
a weaker cue (see :func:`origin_facts`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from rapport.profile.domain.facts.assertion import Assertion
from rapport.profile.domain.facts.clauses import (
    ADV,
    NEG,
    SPEAKER,
    SUBJECT,
    Clause,
    has_subject,
    is_negated,
    scanner,
    stated,
)
from rapport.profile.domain.facts.phrases import PHRASE_STOP, PLACEHOLDER, word_set

_PLACE_WORD = r"[^\W\d_][\w'.-]*"
_PLACE_RUN = re.compile(_PLACE_WORD + r"(?:[ ]+" + _PLACE_WORD + r"){0,5}")
_PLACE_STOP = PHRASE_STOP | {
    "and", "or", "permanently", "originally", "myself", "alone", "full-time", "part-time",
    "area-wise", "years", "year", "months", "month", "weeks", "week", "days", "day", "any",
}  # fmt: skip
PLACE_PARTICLES = word_set(
    "de da do dos das del della di la le les el van von der den am an upon on sur en of y e im"
)
_PLACE_UPPER = {"uk": "UK", "us": "US", "usa": "USA", "uae": "UAE", "nyc": "NYC", "sf": "SF"}
_NOT_A_PLACE = word_set(
    """
    a an my our his her their your this that these those some one same here there home town
    city country countryside suburbs suburb area village flat apartment house studio dorm
    north south east west middle center centre mountains woods hope fear denial peace
    harmony poverty luxury comfort style sin reality past moment future present bubble
    world region neighborhood neighbourhood capital
    """
)
# Countries and big cities: "I'm from X" (a weak cue) needs X capitalised or listed here.
_KNOWN_PLACES = word_set(
    """
    usa us uk america canada mexico brazil argentina chile colombia peru spain france germany
    italy portugal netherlands holland belgium switzerland austria ireland scotland england
    wales poland sweden norway denmark finland greece turkey russia ukraine romania hungary
    czechia india china japan korea australia nigeria kenya egypt morocco israel
    berlin munich hamburg cologne frankfurt vienna zurich geneva paris lyon marseille nice
    toulouse bordeaux london manchester birmingham edinburgh glasgow dublin madrid barcelona
    valencia seville sevilla lisbon porto rome milan naples turin florence amsterdam
    rotterdam utrecht brussels antwerp copenhagen stockholm oslo helsinki warsaw krakow
    prague budapest athens istanbul moscow kyiv tokyo osaka seoul beijing shanghai mumbai
    delhi bangalore sydney melbourne toronto vancouver montreal chicago boston seattle
    austin denver miami atlanta houston dallas texas california florida portland phoenix
    brooklyn manhattan
    """
)
_KNOWN_MULTI = frozenset(
    {"new york", "los angeles", "san francisco", "mexico city", "buenos aires", "sao paulo",
     "são paulo", "rio de janeiro", "hong kong", "new zealand", "south africa", "new delhi",
     "las vegas", "san diego", "washington dc", "the netherlands", "the uk", "the us",
     "the usa", "the states"}
)  # fmt: skip
# "I live at [address], London [postcode]": the street is redacted (domain/pii.py), the
# city after it is still where the speaker lives.
AT_ADDRESS = r"\[address\],?(?:\s+\[postcode\],?)?"
_LIVE_IN = re.compile(
    SPEAKER + ADV + r"(?:(?P<neg>do\s+not|no\s+longer|never|used\s+to)\s+)?(?:live|living"
    r"|have\s+lived|have\s+been\s+living|been\s+living|reside|residing|based|located|settled"
    r"|(?:am|are)\s+(?:(?P<neg2>not|no\s+longer)\s+)?(?:living|residing|based|located"
    r"|settled))"
    r"(?:\s+with\s+[\w' ]{1,40}?)?\s+(?:"
    + ADV
    + r"(?:here\s+)?in|out\s+of|at\s+"
    + AT_ADDRESS
    + r")\s+"
)
_MOVED_TO = re.compile(
    SPEAKER + ADV + r"(?:have\s+)?(?:just\s+|recently\s+|finally\s+)?(?:moved|relocated)"
    r"(?:\s+(?:back|here|over))?(?:\s+from\s+(?P<origin>[\w' ]{1,30}?))?\s+to\s+"
)
_MOVED_AWAY = re.compile(
    SPEAKER + ADV + r"(?:have\s+)?(?:just\s+|recently\s+)?(?:moved\s+away\s+from|moved\s+out\s+of"
    r"|left)\s+"
)
_FROM = re.compile(
    SUBJECT + ADV + r"(?:am|are|come)\s+(?:" + NEG + r")?(?P<originally>originally\s+)?from\s+"
)
_MY_HOME = re.compile(
    r"(?:\b(?:my|our)\s+(?:home|house|flat|apartment|place)\s+is\s+in|^home\s+is(?:\s+in)?"
    r"|\b(?:i|we)\s+(?:am|are)\s+(?:a\s+)?(?:family|couple|household)(?:\s+of\s+\w+)?\s+in"
    r"|^as\s+an?\s+(?:\w+\s+){1,3}?(?:living|based)\s+in)\s+"
)
LOCATION_HINTS = ("liv", "based", "located", "moved", "relocated", "resid", "settled", "home",
                  "left", "family", "couple", "household")  # fmt: skip


def _place(c: Clause, start: int, *, weak: bool) -> str | None:
    """The place name at ``start``, title-cased as written; None if it is not one."""
    m = _PLACE_RUN.match(c.text, start)
    if m is None:
        return None
    words: list[str] = []
    for word in m.group().split():
        if word.islower() and word.rstrip(".") in _PLACE_STOP:
            break  # a stop word as written: "US" and "IN" (Indiana) are names
        words.append(word.rstrip("."))
    if not words or any(PLACEHOLDER.search(w) for w in words):
        return None
    lowered = " ".join(words).lower()
    if words[0].lower() == "the":
        words = words[1:]
    if not words:
        return None
    head = words[0].lower()
    if head in _NOT_A_PLACE or words[-1].lower() in _NOT_A_PLACE:
        return None
    if weak and not (
        words[0][0].isupper() or lowered in _KNOWN_MULTI or " ".join(words).lower() in _KNOWN_PLACES
    ):
        return None
    return _title(words)


def _title(words: list[str]) -> str:
    """'rio de janeiro' -> 'Rio de Janeiro', 'aix-en-provence' -> 'Aix-en-Provence'; 'NYC' stays."""
    whole = " ".join(words)
    if whole.lower() in _PLACE_UPPER:
        return _PLACE_UPPER[whole.lower()]
    parts = re.split(r"([ -])", whole)
    for i, part in enumerate(parts):
        keep = any(ch.isupper() for ch in part) or (i > 0 and part in PLACE_PARTICLES)
        if not keep:
            parts[i] = part[:1].upper() + part[1:]
    return "".join(parts)


# "Living in Berlin is expensive": the clause is about living there, not the speaker.
_GERUND_SUBJECT = re.compile(r"[^,.;!?]*?\b(?:is|was|can|could|must|sounds|seems|gets|costs)\b")


def location_facts(c: Clause) -> Iterator[Assertion]:
    for m in _scan(_LIVE_IN, c):
        if not has_subject(c, m) and (m.start() > 0 or _GERUND_SUBJECT.match(c.low, m.end())):
            continue  # "a startup, based in Berlin" describes the startup
        place = _place(c, m.end(), weak=False)
        if place and stated(c, m.end(), m):
            yield Assertion("location", place, is_negated(m, c))
    for m in _scan(_MOVED_TO, c):
        place = _place(c, m.end(), weak=False)
        if place and stated(c, m.end(), m):
            origin = m.group("origin") and _place(c, m.start("origin"), weak=False)
            if origin:
                yield Assertion("location", origin, negated=True)  # "moved from Berlin to Munich"
            yield Assertion("location", place)
    for m in _scan(_MOVED_AWAY, c):
        place = _place(c, m.end(), weak=m.group().rstrip().endswith("left"))
        if place and stated(c, m.end(), m):
            yield Assertion("location", place, negated=True)
    for m in _scan(_MY_HOME, c):
        place = _place(c, m.end(), weak=False)
        if place and stated(c, m.start()):
            yield Assertion("location", place)


def origin_facts(c: Clause) -> Iterator[Assertion]:
    """'I'm from Madrid' (a weaker cue: the place must look like one)."""
    if "from" not in c.low:
        return
    for m in _FROM.finditer(c.low):
        if m.group("originally"):
            continue  # where one grew up, not where one lives
        place = _place(c, m.end(), weak=True)
        if place and stated(c, m.end(), m):
            yield Assertion("location", place, is_negated(m, c))


# Words a pattern cannot match without: a substring test is far cheaper than a scan.
_scan = scanner(
    {
        _LIVE_IN: ("liv", "resid", "based", "located", "settled"),
        _MOVED_TO: ("moved", "relocated"),
        _MOVED_AWAY: ("moved", "left"),
        _MY_HOME: (
            "home",
            "house",
            "flat",
            "apartment",
            "place",
            "family",
            "couple",
            "household",
            "as ",
        ),
    }
)
