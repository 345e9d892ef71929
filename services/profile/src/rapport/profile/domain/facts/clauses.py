"""Clauses, and whether one states a fact about its speaker as true now.

Precision first: a wrong remembered fact is worse than a missed one. So

- the text is cut into sentences, and sentences into clauses (at "but", "so",
  "because", ...); each clause is judged on its own;
- a fact needs the speaker as subject ("I", "we", "my wife and I", "my budget"),
  or no subject where chat leaves it out: at a clause's start ("allergic to nuts",
  "big fan of jazz"), or after a comma or "and" in the speaker's own clause ("I'm a
  gamer, love RPGs"); "my sister is vegetarian (and allergic to nuts)" states nothing
  about the speaker;
- it must be stated as true now: a hypothetical ("if", "suppose", "what if") or
  irrealis word ("would", "might", "want", "think", "will") before the predicate
  drops it; questions ("is this vegan?", "do you ship to Berlin?") state nothing;
- retractions ("not ... any more", "no longer", "stopped being", "used to",
  "I sold my ps5") give the fact with ``negated=True``;
- quoted text ("she said 'I'm vegan'") is a mention, not a statement: dropped.

The pieces every family's patterns are built from (the speaker, adverbs, negation)
are here too, and :func:`scanner`, which skips a pattern when a word it needs is absent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# ----------------------------------------------------------------- text preparation

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
# A quoted span is a mention ("how do you say 'I am vegan'"), not a statement.
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|«[^»]*»|(?<!\w)'[^']*'(?!\w)")
_EXPANSIONS = {
    "i'm": "i am", "im": "i am", "i've": "i have", "ive": "i have", "i'd": "i would",
    "i'll": "i will", "we're": "we are", "we've": "we have", "we'd": "we would",
    "we'll": "we will", "you're": "you are", "it's": "it is", "that's": "that is",
    "what's": "what is", "whats": "what is", "there's": "there is", "he's": "he is",
    "she's": "she is", "they're": "they are", "let's": "let us",
    "don't": "do not", "dont": "do not", "doesn't": "does not", "doesnt": "does not",
    "didn't": "did not", "didnt": "did not", "can't": "cannot", "cant": "cannot",
    "won't": "will not", "wont": "will not", "isn't": "is not", "isnt": "is not",
    "aren't": "are not", "arent": "are not", "wasn't": "was not", "weren't": "were not",
    "haven't": "have not", "havent": "have not", "hasn't": "has not",
    "hadn't": "had not", "wouldn't": "would not", "wouldnt": "would not",
    "couldn't": "could not", "shouldn't": "should not", "ain't": "am not",
    "gonna": "going to", "wanna": "want to", "gotta": "have to",
}  # fmt: skip
# Whitespace runs, tabs and blank lines become one space or one line break.
_SPACES = re.compile(r"\s{2,}|[^\S ]")


def trie(words: Iterable[str]) -> str:
    """An alternation of ``words`` as a prefix tree: "i(?:'(?:d|ll|m|ve)|m|ve)|...".

    Python's re tries a flat alternation's branches one by one at every position;
    a tree settles each letter once (about a third faster here).
    """
    tree: dict[str, Any] = {}
    for word in words:
        node = tree
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}
    return _branches(tree)


def _branches(node: dict[str, Any]) -> str:
    alternatives = [re.escape(ch) + _branches(sub) for ch, sub in sorted(node.items()) if ch]
    if not alternatives:
        return ""
    group = "(?:" + "|".join(alternatives) + ")"
    return group + "?" if "" in node else group  # "?": a word also ends here


# Every pattern below matches lower-cased text: re.IGNORECASE makes alternations
# several times slower, and the cased text is only needed to slice place names.
_CONTRACTION = re.compile(r"\b" + trie(_EXPANSIONS) + r"\b")


def _one_space(m: re.Match[str]) -> str:
    return "\n" if "\n" in m.group() else " "


def prepare_text(text: str) -> tuple[str, str]:
    """(cased, lower-cased) text, offsets aligned: apostrophes normalised, quoted
    mentions dropped, whitespace runs made single spaces, contractions expanded."""
    text = _SPACES.sub(_one_space, _QUOTED.sub(" ", text.translate(_APOSTROPHES)))
    low = text.lower()
    if len(low) != len(text):  # a character whose lower case is longer ("İ"): no case
        text = low
    pieces: list[str] = []
    last = 0
    for m in _CONTRACTION.finditer(low):
        pieces += (text[last : m.start()], _EXPANSIONS[m.group()])
        last = m.end()
    if not pieces:
        return text, low
    pieces.append(text[last:])
    cased = "".join(pieces)
    return cased, cased.lower()


# ------------------------------------------------------------------------- clauses


@dataclass(frozen=True, slots=True)
class Clause:
    text: str  # as written (contractions expanded): places keep their case
    low: str  # the same, lower-cased: every pattern matches here, offsets agree
    question: bool
    request_question: bool = False  # "can you find me ... under 50 euros?"


# A sentence ends at . ! ? ; or a line break; a period inside a token ("49.99") does not.
_SENTENCE = re.compile(r"[^.!?;\n]+(?:\.(?=\S)[^.!?;\n]*)*[.!?;]*")
# Clause boundaries. "so" only as a connector ("..., so", "so I ..."), not as an
# intensifier ("I'm so allergic to nuts"). prepare_text leaves single spaces only, so the
# alternatives can start with a plain space or comma (several times faster than \s*).
_CONNECTOR = re.compile(
    r"(?:, ?| )(?:(?:but|however|although|though|whereas|because|yet)\b"
    r"|so (?=(?:i|we|if|please|can|could|would|what|which|any|do|does|is|are|you)\b)"
    r"|since (?=(?:i|we|you|it|my|our|the)\b)|and (?=(?:i|we)\b))"
    r"|, ?so\b"
    r"|, ?(?=(?:i|we)\b)"  # a new first-person clause: "you might like this, I'm vegan"
    r"| -+ | ?\("
)
_QUESTION_SPLIT = re.compile(r", ?|" + _CONNECTOR.pattern)
_QUESTION_START = re.compile(
    r"(?:is|are|am|was|were|do|does|did|can|could|would|will|should|shall|may|might|has|have"
    r"|had)\s+(?:i|you|u|we|it|this|that|these|those|there|he|she|they|a|an|the|my|your|any"
    r"|anyone|someone|vegetarians?|vegans?)\b|(?:what|which|where|when|why|how|who|whom"
    r"|whose)\b"
)
_REQUEST_QUESTION = re.compile(
    r"(?:can|could|would|will)\s+(?:you|u)\b|(?:do|does)\s+(?:you|u)\s+(?:have|sell|carry"
    r"|stock|know|recommend|suggest|offer)\b|(?:have\s+you\s+got|got|have)\s+any|any(?:thing"
    r"|one)?\b|is\s+there\s+any|(?:what|which)\s+(?:is|are)\s+(?:the\s+|a\s+|some\s+)?(?:good"
    r"|best|nice|decent|cheap|great)|(?:what|which)\s+(?:\w+\s+)?(?:would|do|can|should)\s+you"
    r"\s+(?:recommend|suggest)|recommend|suggest|show|find|looking\s+for"
)
_ITEM_PRICE_QUESTION = re.compile(
    r"\b(?:is\s+it|is\s+this|is\s+that|are\s+they|are\s+these|does\s+it|does\s+this|how\s+much"
    r"|price\s+of|cost)\b"
)


def split_clauses(text: str, low: str) -> Iterator[Clause]:
    """Sentences cut into clauses; patterns run on ``low``, places are sliced from ``text``."""
    for sm in _SENTENCE.finditer(low):
        sentence = sm.group()
        question = sentence.rstrip().endswith("?")
        end = sm.start() + len(sentence.rstrip("?!.; \t\r")) if question else sm.end()
        spans = _spans(_QUESTION_SPLIT if question else _CONNECTOR, low, sm.start(), end)
        for i, (a, b) in enumerate(spans):
            # A question's last part asks; earlier ones ("I'm vegan, is this ok?") may state.
            asks = True if question and i == len(spans) - 1 else None
            yield _clause(text[a:b], low[a:b], asks=asks)


def _spans(splitter: re.Pattern[str], low: str, start: int, end: int) -> list[tuple[int, int]]:
    """The non-blank pieces of ``low[start:end]`` between ``splitter`` matches."""
    spans = []
    for m in splitter.finditer(low, start, end):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, end))
    stripped = []
    for a, b in spans:
        piece = low[a:b]
        lead = len(piece) - len(piece.lstrip())
        trail = len(piece.rstrip())
        if trail > lead:
            stripped.append((a + lead, a + trail))
    return stripped


def _clause(text: str, low: str, *, asks: bool | None) -> Clause:
    """``asks``: known to be a question, or None to judge by its first words."""
    question = asks or bool(_QUESTION_START.match(low))
    request = question and bool(_REQUEST_QUESTION.match(low))
    request = request and not _ITEM_PRICE_QUESTION.search(low)
    return Clause(text, low, question=question, request_question=request)


_FIRST_PERSON = re.compile(r"\b(?:i|we|my|our|me)\b")


def is_statement(c: Clause) -> bool:
    return not c.question and bool(_FIRST_PERSON.search(c.low))


# --------------------------------------------------------------- is it stated as true?

HYPOTHETICAL = re.compile(
    r"\b(?:if|suppose|supposing|imagine|imagining|assuming|assume|hypothetically|pretend"
    r"|pretending|unless|whether|in case|let us say|what if|were i)\b"
)
_IRREALIS = re.compile(
    r"\b(?:would|could|might|should|may|maybe|perhaps|probably|possibly|wish|wishing|hope"
    r"|hoping|want|wants|wanted|will|shall|going to|plan|planning|plans|intend|intending"
    r"|considering|consider|thinking|think|thought|guess|suspect|wonder|wondering|trying"
    r"|try|tries|someday|one day|eventually|soon|next|ever|not sure|unsure|doubt|supposed"
    r"|dream|dreaming)\b"
    # someone else's words: "my sister says I'm vegan" (but "I said I'm vegan" stands)
    r"|(?<!\bi )(?<!\bwe )\b(?:says|said|thinks|believes|claims|assumes|told me)\b"
)


def stated(c: Clause, end: int, m: re.Match[str] | None = None) -> bool:
    """True unless a hypothetical or irrealis word precedes ``end`` in the clause, or
    ``m`` (a match starting at ``SPEAKER``) left out a subject that is not the speaker."""
    if m is not None and not _speaker_ok(c, m):
        return False
    head = c.low[:end]
    return not (HYPOTHETICAL.search(head) or _IRREALIS.search(head))


def _speaker_ok(c: Clause, m: re.Match[str]) -> bool:
    """'I'/'we', or no subject at the clause's start ("allergic to nuts"), or after a comma
    or "and" in a clause whose subject is the speaker ("I'm a gamer, love RPGs")."""
    if m.start() == 0 or has_subject(c, m) or _INTERJECTION.match(c.low, 0, m.start()):
        return True
    return bool(_FIRST_PERSON_START.match(c.low))


def has_subject(c: Clause, m: re.Match[str]) -> bool:
    return c.low.startswith(("i ", "we "), m.start())


_INTERJECTION = re.compile(
    r"(?:ok|okay|oh|yes|yeah|yep|well|hey|hi|hello|thanks|honestly|also|btw|lol|haha|ah|hmm|sure"
    r"|great|cool|nice|wow|actually|and|but|so)\s*,?\s*$"
)


_ANY_MORE = re.compile(r"\bany\s*(?:more|longer)\b")


def retracted_after(c: Clause, pos: int) -> bool:
    """'... any more' somewhere after the predicate."""
    return bool(_ANY_MORE.search(c.low, pos))


# ------------------------------------------------------------------ shared pieces

SUBJECT = r"\b(?:i|we)\s+"
# The speaker as subject: "I"/"we", or left out as chat does ("allergic to nuts",
# "love jazz", "I'm a gamer, love RPGs"); _speaker_ok checks where it was left out.
SPEAKER = r"(?:\b(?:i|we)\s+|^|(?<=, )|(?<=\band ))"
_FIRST_PERSON_START = re.compile(r"(?:i|we|(?:me|my|our)\s+\w+\s+and\s+(?:i|me))\b")
ADV = (
    r"(?:(?:really|also|actually|now|still|just|only|currently|strictly|totally|fully"
    r"|completely|mostly|mainly|basically|definitely|both|all|recently|officially|always"
    r"|already|very|quite|truly|seriously|personally|honestly|literally|absolutely|generally"
    r"|usually|normally|pretty\s+much|by\s+now|too|even)\s+)*"
)
NEG = r"(?P<neg>not|no\s+longer|never|not\s+really|not\s+even)\s+"


def is_negated(m: re.Match[str], c: Clause) -> bool:
    groups = m.groupdict()
    return bool(groups.get("neg") or groups.get("neg2")) or retracted_after(c, m.end())


# ------------------------------------------------------------------------ scanning

Scan = Callable[[re.Pattern[str], Clause], Iterator[re.Match[str]]]


def scanner(needs: Mapping[re.Pattern[str], tuple[str, ...]]) -> Scan:
    """``scan(pattern, c)``: ``pattern.finditer(c.low)``, skipped when no word ``needs``
    lists for ``pattern`` is there (a substring test is far cheaper than a scan)."""
    # Keyed by id(): hashing a compiled pattern hashes its whole program, on every lookup.
    by_id = {id(pattern): words for pattern, words in needs.items()}

    def scan(pattern: re.Pattern[str], c: Clause) -> Iterator[re.Match[str]]:
        needed = by_id.get(id(pattern))
        if needed is None:
            return pattern.finditer(c.low)
        for word in needed:
            if word in c.low:
                return pattern.finditer(c.low)
        return iter(())

    return scan
