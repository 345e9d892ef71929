"""Typed facts a user states about themselves in a chat message: pure logic, no I/O.

It runs on every chat message on the apply path, after ``pii.redact``, so it is
precompiled regexes over short clauses, each family of rules skipped unless one of
its hint words is there, plus one call to a small language identifier (about 100 µs
a typical message in all, a third of it the identifier).

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
  "I sold my ps5") give the fact with ``negated=True``; a plain dislike
  ("I don't like horror") is a positive ``dislikes``, not a negated ``likes``;
- open-ended values (owned things, likes, places) are bounded noun phrases: they
  stop at punctuation, conjunctions, prepositions and relative clauses, are at
  most five words, and pronouns or abstract nouns ("it", "a question") are refused.
- quoted text ("she said 'I'm vegan'") is a mention, not a statement: dropped.

The rules are English, plus the commonest statements in the other languages we
serve ("Je suis végétarien", "Ich wohne in Hamburg", "soy alérgica a los mariscos",
budget bounds such as "bis zu 50 Euro").

Budgets are the one kind of fact a request states ("headphones under 50 euros",
"anything under $100?"): a bound with a currency counts in a request or a request
question, but not in a price description ("it costs under 50") or a question about
an item's price ("is this under 50 euros?").

The language is what the speaker asked for ("please answer in French", "I prefer
German"), else what the message is written in, detected by py3langid when the
message has three words or more and the detection is confident (see
``_detected_language``); a stated preference wins and is the only one emitted.

``intent`` is the intent model's CLINC150 label for the message (None when
unknown; everything works without it). It only tightens or loosens:

- ``translate`` and ``spelling``: the message mentions words in another
  language or spells them ("how do you say 'I am vegan' in German"): no facts;
- banking and credit-card intents (``balance``, ``credit_limit``, ``transfer``,
  ...): their amounts are balances and limits, not a spending budget: no budget;
- travel intents (``book_flight``, ``book_hotel``, ``car_rental``, ...): places
  there are trips, so the weak cue "I'm from X" is not taken as where one lives;
- ``change_language``: a bare language name ("french please", "switch to
  spanish") is taken as the stated preference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Protocol

from rapport.common.memory import FactType


@dataclass(frozen=True, slots=True)
class Assertion:
    type: FactType
    value: str
    negated: bool = False  # True: the user retracts this fact


def extract(text: str, *, intent: str | None = None) -> list[Assertion]:
    """The facts ``text`` (already redacted) states about its speaker.

    Clause by clause, the language last; one assertion per (type, value); at most one
    budget (the last stated) besides any withdrawn.
    """
    if intent in _MENTION_INTENTS:
        return []
    cased, low = _prepare(text)
    found: list[Assertion] = []
    origins: list[Assertion] = []  # "I'm from Madrid": only when no stronger place is stated
    found.extend(_as_a_diet(low))
    found.extend(_and_i_live(low))
    for clause in _clauses(cased, low):
        found.extend(_clause_facts(clause, intent))
        if intent not in _TRAVEL_INTENTS and _is_statement(clause):
            origins.extend(_origin_facts(clause))
    if not any(a.type == "location" and not a.negated for a in found):
        found.extend(origins)
    found = _one_budget(found)
    language = _stated_language(low, loose=intent == "change_language")
    if language is None:
        language = _detected_language(text)
    if language is not None:
        found.append(Assertion("language", language))
    return _dedupe(found)


def prepare() -> None:
    """Build the language identifier now (otherwise the first message that needs it does)."""
    _language_identifier()


# --------------------------------------------------------------------------- intents

_MENTION_INTENTS = frozenset({"translate", "spelling"})
_MONEY_INTENTS = frozenset(
    {
        "balance", "bill_balance", "bill_due", "credit_limit", "credit_limit_change",
        "min_payment", "pay_bill", "transactions", "spending_history", "income",
        "interest_rate", "transfer", "exchange_rate", "taxes", "rewards_balance", "apr",
        "redeem_rewards", "direct_deposit", "payday", "rollover_401k", "w2",
        "credit_score", "improve_credit_score", "international_fees",
    }
)  # fmt: skip
_TRAVEL_INTENTS = frozenset(
    {
        "book_flight", "book_hotel", "car_rental", "travel_suggestion", "travel_alert",
        "travel_notification", "flight_status", "international_visa", "timezone",
        "plug_type", "vaccines", "lost_luggage", "carry_on", "directions", "distance",
        "uber", "traffic", "weather",
    }
)  # fmt: skip


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


def _trie(words: Iterable[str]) -> str:
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
_CONTRACTION = re.compile(r"\b" + _trie(_EXPANSIONS) + r"\b")


def _one_space(m: re.Match[str]) -> str:
    return "\n" if "\n" in m.group() else " "


def _prepare(text: str) -> tuple[str, str]:
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
class _Clause:
    text: str  # as written (contractions expanded): places keep their case
    low: str  # the same, lower-cased: every pattern matches here, offsets agree
    question: bool
    request_question: bool = False  # "can you find me ... under 50 euros?"


# A sentence ends at . ! ? ; or a line break; a period inside a token ("49.99") does not.
_SENTENCE = re.compile(r"[^.!?;\n]+(?:\.(?=\S)[^.!?;\n]*)*[.!?;]*")
# Clause boundaries. "so" only as a connector ("..., so", "so I ..."), not as an
# intensifier ("I'm so allergic to nuts"). _prepare leaves single spaces only, so the
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


def _clauses(text: str, low: str) -> Iterator[_Clause]:
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


def _clause(text: str, low: str, *, asks: bool | None) -> _Clause:
    """``asks``: known to be a question, or None to judge by its first words."""
    question = asks or bool(_QUESTION_START.match(low))
    request = question and bool(_REQUEST_QUESTION.match(low))
    request = request and not _ITEM_PRICE_QUESTION.search(low)
    return _Clause(text, low, question=question, request_question=request)


def _is_statement(c: _Clause) -> bool:
    return not c.question and bool(_FIRST_PERSON.search(c.low))


# --------------------------------------------------------------- is it stated as true?

_HYPOTHETICAL = re.compile(
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


def _stated(c: _Clause, end: int, m: re.Match[str] | None = None) -> bool:
    """True unless a hypothetical or irrealis word precedes ``end`` in the clause, or
    ``m`` (a match starting at ``_SPEAKER``) left out a subject that is not the speaker."""
    if m is not None and not _speaker_ok(c, m):
        return False
    head = c.low[:end]
    return not (_HYPOTHETICAL.search(head) or _IRREALIS.search(head))


def _speaker_ok(c: _Clause, m: re.Match[str]) -> bool:
    """'I'/'we', or no subject at the clause's start ("allergic to nuts"), or after a comma
    or "and" in a clause whose subject is the speaker ("I'm a gamer, love RPGs")."""
    if m.start() == 0 or _has_subject(c, m) or _INTERJECTION.match(c.low, 0, m.start()):
        return True
    return bool(_FIRST_PERSON_START.match(c.low))


def _has_subject(c: _Clause, m: re.Match[str]) -> bool:
    return c.low.startswith(("i ", "we "), m.start())


_INTERJECTION = re.compile(
    r"(?:ok|okay|oh|yes|yeah|yep|well|hey|hi|hello|thanks|honestly|also|btw|lol|haha|ah|hmm|sure"
    r"|great|cool|nice|wow|actually|and|but|so)\s*,?\s*$"
)


_ANY_MORE = re.compile(r"\bany\s*(?:more|longer)\b")


def _retracted_after(c: _Clause, pos: int) -> bool:
    """'... any more' somewhere after the predicate."""
    return bool(_ANY_MORE.search(c.low, pos))


# ------------------------------------------------------------------- noun phrases


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TOKEN = re.compile(r"[^\W_][\w'+&.-]*[\w+]|[^\W_]|[^\w\s]")
# Words that end a noun phrase (list separators are handled apart).
_PHRASE_STOP = _words(
    """
    but so because cause cuz since though although as if when whenever while where which
    who whom whose that than then unless until till whereas except especially including
    like eg for from with without at in on by to about over under into onto after before
    during around near per via against between through across behind beyond instead
    too also very really anymore now already yet still lately recently today yesterday
    tomorrow tonight last next ago soon again always never often sometimes usually mostly
    anyway actually honestly seriously literally basically currently right atm btw tbh lol
    haha lmao imo please pls thanks thank thx ok okay yes no not more less most least much
    many better best worse worst enough either neither nor i me we us you he him she they
    them it is are am was were be been being do does did have has had will would can could
    should shall may might must get got want need know think guess this these those here
    there myself ourselves yourself these days aged ages age named called rn hate love
    adore enjoy prefer own dislike detest loathe fyi
    """
)
_LIST_SEPARATORS = frozenset({",", "and", "or", "&", "plus"})
_INTENSIFIERS = frozenset({"very", "really", "super", "so", "quite"})
_DETERMINERS = frozenset({"the", "a", "an", "some", "all", "any", "my", "our", "own", "both"})
_QUANTIFIERS = re.compile(
    r"^(?:a lot of|lots of|a bunch of|bunch of|loads of|tons of|all kinds of|all sorts of"
    r"|any kind of|any type of|most kinds of|most|all|some|any)\s+"
)
_NOT_A_THING = _words(
    """
    it its this that these those them you your yours him his her hers me us mine ours their
    theirs everything anything nothing something everyone anyone someone nobody one ones
    both either neither how what when where why who to idea way fact thought sound look feel
    lot bit stuff kind sort type much same other others way thing time rid used
    """
)
_PLACEHOLDER = re.compile(r"\[(?:email|phone|card|account)\]")


def _phrase_items(low: str, start: int, max_words: int = 5) -> list[list[str]]:
    """The noun phrases of a list starting at ``start``: "sci-fi, fantasy and horror".

    Each phrase stops at punctuation or a stop word; an item longer than
    ``max_words`` or a list item that starts with a stop word ends the list.
    """
    items: list[list[str]] = []
    current: list[str] = []
    for m in _TOKEN.finditer(low, start):
        tok = m.group()
        if tok in _LIST_SEPARATORS:
            if not current:
                break
            items.append(current)
            current = []
            continue
        if tok in _INTENSIFIERS and all(w in _DETERMINERS or w in _NUMBERS for w in current):
            continue  # "a very lazy cat"
        if tok == ":":
            current = []  # "likes: sci-fi, budget: 30": "budget" labels the next field
            break
        if not tok[0].isalnum() or tok in _PHRASE_STOP:
            break
        if tok == "a" and current and low.startswith(("lot", "bit", "ton", "little"), m.end() + 1):
            break  # "I love jazz a lot"
        if tok == "any" and low.startswith("more", m.end() + 1):
            break  # "... any more"
        current.append(tok)
        if len(current) > max_words:
            current = []
            break
    if current:
        items.append(current)
    return items


def _clean_phrase(words: list[str]) -> list[str] | None:
    """Strip determiners and quantifiers; None for pronouns and non-things."""
    text = _QUANTIFIERS.sub("", " ".join(words))
    words = text.split()
    while words and words[0] in _DETERMINERS:
        words = words[1:]
    if not words or words[0] in _NOT_A_THING or words[-1] in _NOT_A_THING:
        return None
    if not any(ch.isalpha() for ch in "".join(words)):
        return None
    return words


_BOUNDARY = _PHRASE_STOP | _LIST_SEPARATORS | {"any", "only", "diet"}


def _bounded(low: str, pos: int) -> bool:
    """True when the word at ``pos`` (if any) does not continue the phrase before it."""
    if low.startswith("-", pos):
        return False  # "vegan-curious"
    m = _TOKEN.search(low, pos)
    return m is None or not m.group()[0].isalnum() or m.group() in _BOUNDARY


# ------------------------------------------------------------------ shared pieces

_SUBJECT = r"\b(?:i|we)\s+"
# The speaker as subject: "I"/"we", or left out as chat does ("allergic to nuts",
# "love jazz", "I'm a gamer, love RPGs"); _speaker_ok checks where it was left out.
_SPEAKER = r"(?:\b(?:i|we)\s+|^|(?<=, )|(?<=\band ))"
_FIRST_PERSON_START = re.compile(r"(?:i|we|(?:me|my|our)\s+\w+\s+and\s+(?:i|me))\b")
_ADV = (
    r"(?:(?:really|also|actually|now|still|just|only|currently|strictly|totally|fully"
    r"|completely|mostly|mainly|basically|definitely|both|all|recently|officially|always"
    r"|already|very|quite|truly|seriously|personally|honestly|literally|absolutely|generally"
    r"|usually|normally|pretty\s+much|by\s+now|too|even)\s+)*"
)
_NEG = r"(?P<neg>not|no\s+longer|never|not\s+really|not\s+even)\s+"
_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip


def _negated(m: re.Match[str], c: _Clause) -> bool:
    groups = m.groupdict()
    return bool(groups.get("neg") or groups.get("neg2")) or _retracted_after(c, m.end())


# ------------------------------------------------------------------------- diet

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
    _SPEAKER + _ADV + r"(?:am|are|have\s+been|been|became|have\s+become|went|have\s+gone"
    r"|turned|have\s+turned|stay|remain)\s+(?:"
    + _NEG
    + r")?"
    + _ADV
    + _DIET_MODIFIERS
    + _DIET_LIST
    + r"\b"
    + _DIET_SUFFIX
)
_DIET_DO = re.compile(
    _SPEAKER + _ADV + r"(?:(?P<neg>do\s+not|no\s+longer)\s+)?(?:eat|keep|follow|do|stick\s+to|live"
    r"|(?:am|are)(?:\s+(?P<neg2>not|no\s+longer))?\s+(?:on|doing|eating|following)"
    r"|(?:have\s+)?been\s+(?:on|doing|eating|following)|doing|eating|following)\s+"
    + _ADV
    + _DIET_MODIFIERS
    + _DIET_LIST
    + r"\b"
    + r"(?:\s+(?:diet|food|lifestyle))?"
)
_DIET_STOPPED = re.compile(
    _SPEAKER + _ADV + r"(?:have\s+|had\s+)?(?:stopped|quit|gave\s+up|given\s+up|am\s+done"
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
# "I don't eat meat" is a diet; "I don't eat meat on Fridays" is not (see _bounded).
_NO_MEAT = re.compile(
    _SPEAKER + _ADV + r"(?:do\s+not|never|cannot|no\s+longer|stopped|gave\s+up|quit|have\s+stopped"
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
# A clause without one of a family's hint stems cannot match its rules (see _clause_facts).
_DIET_HINTS = ("veg", "halal", "kosher", "pesc", "gluten", "dairy", "keto", "paleo", "carb",
               "meat", "plant", "animal")  # fmt: skip


def _diets(m: re.Match[str]) -> list[str]:
    return [_DIET_VALUES[w] for w in _DIET_WORD.findall(m.group("diets"))]


def _diet_facts(c: _Clause) -> Iterator[Assertion]:
    for pattern, retraction in ((_DIET_IS, False), (_DIET_DO, False), (_DIET_STOPPED, True)):
        for m in _scan(pattern, c):
            if not _stated(c, m.start("diets"), m) or _PART_TIME.match(c.low, m.end()):
                continue
            if _bounded(c.low, m.end()):
                negated = retraction or _negated(m, c)
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


def _as_a_diet(low: str) -> Iterator[Assertion]:
    """'As a vegan, I ...' (the whole text: the comma would cut it into two clauses)."""
    for m in _DIET_AS_A.finditer(low):
        for diet in _diets(m):
            yield Assertion("diet", diet)


def _no_meat_facts(c: _Clause) -> Iterator[Assertion]:
    """'I don't eat meat' -> vegetarian, '... animal products' -> vegan."""
    for m in _scan(_NO_MEAT, c):
        if _stated(c, m.start("food"), m) and not _QUALIFIED.match(c.low, m.end()):
            food = m.group("food")
            if food in ("gluten", "dairy") and "cannot" in m.group():
                continue  # "I can't eat gluten" is an allergy (see _CANNOT_EAT)
            if food == "gluten":
                yield Assertion("diet", "gluten-free")
            elif food == "dairy":
                yield Assertion("diet", "dairy-free")
            else:
                vegan = "animal" in food or "dairy" in food
                yield Assertion("diet", "vegan" if vegan else "vegetarian")


# ---------------------------------------------------------------------- allergy

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
    _SPEAKER
    + _ADV
    + r"(?:(?:am|are|have\s+been|been|get|became|have\s+become)\s+(?:"
    + _NEG
    + r")?)?"
    + _ADV
    + _SEVERITY
    + r"allergic\s+to\s+"
)
_HAS_ALLERGY = re.compile(
    _SPEAKER + _ADV + r"(?:(?P<neg>do\s+not|no\s+longer)\s+)?(?:have|have\s+got|got|suffer\s+from)"
    r"\s+(?:(?P<no>no)\s+)?(?:(?:a|an|severe|mild|serious|bad|slight|food|life[- ]threatening"
    r"|known)\s+)*" + _ALLERGEN_LIST + r"\s+(?:allergy|allergies|intolerance)\b"
)
_MY_ALLERGY = re.compile(
    r"\b(?:my|our)\s+" + _ALLERGEN_LIST + r"\s+(?:allergy|allergies|intolerance)\b"
)
_OUTGROWN = re.compile(r"\b(?:outgrew|outgrown|grew\s+out\s+of|got\s+over|cured)\s+$")
_INTOLERANT = re.compile(
    _SPEAKER
    + _ADV
    + r"(?:am|are|have\s+been)\s+(?:"
    + _NEG
    + r")?"
    + _ADV
    + _SEVERITY
    + r"(?P<x>lactose|gluten|fructose|histamine|dairy|wheat|soy|egg)[- ](?:intolerant|sensitive)\b"
)
_CELIAC = re.compile(
    _SPEAKER + _ADV + r"(?:am|are|have)\s+(?:" + _NEG + r")?(?:a\s+)?(?:celiac|coeliac)\b"
)
_CANNOT_EAT = re.compile(
    _SPEAKER + _ADV + r"(?:cannot|can\s+not|am\s+unable\s+to|must\s+not|must\s+avoid)\s+"
    r"(?:eat|have|tolerate|digest|consume|drink|take)\s+(?:any\s+)?" + _ALLERGEN_LIST + r"\b"
)
_ALLERGY_HINTS = ("allerg", "intoleran", "celiac", "coeliac", "cannot", "can not", "unable",
                  "must", "hives", "rash", "break out", "swell")  # fmt: skip
# "Eggs make me break out in hives", "shellfish gives me a rash"
_REACTION = re.compile(
    r"^(?P<thing>[a-z][\w' -]{0,30}?)\s+(?:make|makes|give|gives)\s+me\s+(?:break\s+out"
    r"|hives|a\s+rash|an?\s+(?:allergic\s+)?reaction|swell)"
)


def _allergen(words: list[str]) -> str | None:
    """The canonical allergen for a phrase after "allergic to"; unknown 1-2 word nouns pass."""
    cleaned = _clean_phrase(words)
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


def _allergy_facts(c: _Clause) -> Iterator[Assertion]:
    for m in _scan(_ALLERGIC_TO, c):
        if _stated(c, m.end(), m):
            negated = _negated(m, c)
            for words in _phrase_items(c.low, m.end(), max_words=3):
                allergen = _allergen(words)
                if allergen is None:
                    break
                yield Assertion("allergy", allergen, negated)
    for m in _scan(_INTOLERANT, c):
        if _stated(c, m.start("x"), m):
            yield Assertion("allergy", _ALLERGENS.get(m.group("x"), m.group("x")), _negated(m, c))
    for m in _scan(_CELIAC, c):
        if _stated(c, m.end(), m):
            yield Assertion("allergy", "gluten", _negated(m, c))
    yield from _allergy_noun_facts(c)
    reaction = _REACTION.match(c.low)
    if reaction:
        allergen = _allergen(reaction.group("thing").split())
        if allergen:
            yield Assertion("allergy", allergen)


def _allergy_noun_facts(c: _Clause) -> Iterator[Assertion]:
    """'I have a peanut allergy', 'my nut allergy', 'I can't eat shellfish'."""
    for m in _scan(_HAS_ALLERGY, c):
        if _stated(c, m.start("list"), m):
            negated = bool(m.group("neg") or m.group("no")) or _retracted_after(c, m.end())
            for allergen in _allergens_in(m.group("list")):
                yield Assertion("allergy", allergen, negated)
    for m in _scan(_MY_ALLERGY, c):
        if _stated(c, m.start()):
            negated = bool(_OUTGROWN.search(c.low[: m.start()]))  # "I outgrew my nut allergy"
            for allergen in _allergens_in(m.group("list")):
                yield Assertion("allergy", allergen, negated)
    for m in _scan(_CANNOT_EAT, c):
        if _stated(c, m.start("list"), m) and _bounded(c.low, m.end()):
            for allergen in _allergens_in(m.group("list")):
                yield Assertion("allergy", allergen)


# ----------------------------------------------------------------------- budget

_CURRENCIES = {
    "$": "USD", "usd": "USD", "dollar": "USD", "dollars": "USD", "bucks": "USD",
    "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR", "£": "GBP", "gbp": "GBP",
    "pound": "GBP", "pounds": "GBP", "quid": "GBP", "¥": "JPY", "yen": "JPY", "jpy": "JPY",
    "chf": "CHF", "franc": "CHF", "francs": "CHF", "cad": "CAD", "aud": "AUD",
    "inr": "INR", "rupee": "INR", "rupees": "INR", "r$": "BRL", "brl": "BRL", "reais": "BRL",
}  # fmt: skip
_CURRENCY_BEFORE = r"r\$|[$€£¥]|usd|eur|gbp|chf|cad|aud|inr|brl"
_CURRENCY_AFTER = (
    r"[$€£¥]|usd|eur|euros?|gbp|dollars?|bucks|pounds?|quid|chf|francs?|yen|jpy|cad|aud|inr"
    r"|rupees?|brl|reais"
)
_NUM = r"\d+(?:[.,]\d+)*"


def _amount(tag: str) -> str:
    """An amount with its currency before or after; groups are suffixed with ``tag``."""
    return (
        rf"(?<![\w.,])(?:(?P<cb{tag}>{_CURRENCY_BEFORE})\s?(?P<nb{tag}>{_NUM})(?P<kb{tag}>k)?"
        rf"|(?P<na{tag}>{_NUM})(?P<ka{tag}>k)?(?:\s?(?P<ca{tag}>{_CURRENCY_AFTER}))?)"
        r"(?![\w%]|[.,]\d)"
    )


# "my budget is 80", "budget: 50€", "Mein Budget liegt bei maximal 200 Euro": a budget
# word and an amount within a few words.
_BUDGET_IS = re.compile(
    r"\b(?:budget|presupuesto|orçamento|orcamento)\b(?:'s)?[^\d$€£¥.!?;]{0,25}?" + _amount("1")
)
# "my limit is 3000 CHF", "my absolute max is $500"
_MY_LIMIT = re.compile(
    r"\b(?:my|our)\s+(?:(?:absolute|total|upper|hard|spending|price|max)\s+)?(?:limit|max(?:imum)?"
    r"|ceiling|cap)\s+(?:is\s+|of\s+|would\s+be\s+|=\s*|:\s*)(?:around\s+|about\s+)?" + _amount("1")
)
_AMOUNT_MAX = re.compile(
    _amount("1") + r"\s*(?:is\s+)?(?:my\s+|our\s+|the\s+)?(?:(?:absolute|total|upper|hard|real"
    r"|spending|price|overall)\s+)?(?:budget|max|maximum|limit|tops|at\s+most"
    r"|at\s+the\s+most|or\s+less|or\s+under|or\s+below|or\s+cheaper|upper\s+limit|ceiling)\b"
)
_SPEND = re.compile(
    r"(?:" + _SUBJECT + _ADV + r"|^|\b(?:looking|want|wanting|trying|hoping|planning|willing"
    r"|able)\s+to\s+)(?:(?P<modal>can\s+only|can|could|am\s+able\s+to|am\s+willing\s+to"
    r"|are\s+willing\s+to|would\s+like\s+to|want\s+to|would|plan\s+to|am\s+planning\s+to"
    r"|am\s+looking\s+to|am\s+trying\s+to|only\s+want\s+to)\s+)?(?:(?P<negmodal>do\s+not\s+want"
    r"\s+to|do\s+not|cannot|can\s+not|will\s+not|would\s+not|would\s+rather\s+not|am\s+not"
    r"|refuse\s+to|am\s+not\s+willing\s+to)\s+)?" + _ADV + r"(?P<verb>spend|pay|afford|go|shell"
    r"\s+out|splash\s+out)\s+(?:(?P<bound>up\s+to|no\s+more\s+than|not\s+more\s+than|at\s+most"
    r"|max(?:imum)?|a\s+max(?:imum)?\s+of|less\s+than|under|below|around|about|roughly|over"
    r"|more\s+than|above|beyond)\s+)?" + _amount("1")
)
_UNDER = re.compile(
    r"\b(?:under|below|less\s+than|no\s+more\s+than|not\s+more\s+than|at\s+most|max(?:imum)?"
    r"(?:\s+of)?|up\s+to|within|cheaper\s+than|not\s+over|not\s+above|nothing\s+over|nothing"
    r"\s+above|nothing\s+more\s+than|no\s+higher\s+than|lower\s+than|not\s+exceeding"
    # the same bounds in the other languages we serve (fr, de, es, it, pt, nl)
    r"|moins\s+de|pas\s+plus\s+de|jusqu'à|unter|bis\s+zu|höchstens|maximal|nicht\s+mehr\s+als"
    r"|menos\s+de|hasta|como\s+máximo|no\s+más\s+de|(?:no|nunca)\s+gasto\s+más\s+de|meno\s+di"
    r"|fino\s+a|al\s+massimo|non\s+più\s+di|até|no\s+máximo|não\s+mais\s+de|minder\s+dan"
    r"|maximaal|hoogstens)\s+" + _amount("1")
)
# A message that is only an amount answers "what's your budget?": "50 bucks", "around £30".
_AMOUNT_ONLY = re.compile(
    r"^(?:about|around|roughly|approx(?:imately)?|maybe|like|max(?:imum)?|up\s+to|under)?\s*"
    + _amount("1")
    + r"\s*(?:max|tops|or\s+so|or\s+less|ish)?\s*[.!]*$"
)
_TO_SPEND = re.compile(
    r"\b(?:i|we)\s+(?:only\s+|just\s+)?(?:have|have\s+got|got)\s+(?:about\s+|around\s+"
    r"|roughly\s+|up\s+to\s+|only\s+|just\s+)?" + _amount("1") + r"\s+(?:to\s+spend"
    r"|to\s+play\s+with)\b"
)
_BETWEEN = re.compile(r"\bbetween\s+" + _amount("1") + r"\s+and\s+" + _amount("2"))
_NOT_MONEY_UNIT = re.compile(
    r"\s*(?:%|kg|g|grams?|lbs?|km|miles?|mi|m|cm|mm|inch(?:es)?|minutes?|mins?|hours?|hrs?"
    r"|days?|weeks?|months?|years?|pages?|people|persons?|guests?|players?|calories|kcal"
    r"|watts?|w|gb|tb|mb|mp|hz|items?|pieces?|pcs|x|times|stars?|degrees?)\b"
)
_MONEY_CONTEXT = re.compile(r"\b(?:budget|spend|spending|afford|pay|paying|price|money)\b")
_PRICE_DESCRIPTION = re.compile(
    r"\b(?:costs?|costing|priced|paid|bought|sold|sells|selling|spent|was|were|is\s+it|is\s+this"
    r"|is\s+that|it\s+is|this\s+is|that\s+is|it\s+was|on\s+sale|discount|earn|earns|earned"
    r"|make|makes|made|salary|income|rent|owe|owes|saved)\b"
)
_DESCRIBED_BEFORE = re.compile(r"\b(?:is|are|was|were|costs?|priced|sells\s+for)\s+$")
_HIGHER_BOUND = frozenset({"over", "more than", "above", "beyond"})


def _money(m: re.Match[str], tag: str) -> tuple[str, str | None] | None:
    """(plain amount, ISO currency or None) for one ``_amount`` match; None if not money."""
    num = m.group(f"nb{tag}") or m.group(f"na{tag}")
    cur = m.group(f"cb{tag}") or m.group(f"ca{tag}")
    kilo = m.group(f"kb{tag}") or m.group(f"ka{tag}")
    if num is None:
        return None
    if cur is None and not kilo and _NOT_MONEY_UNIT.match(m.string, m.end()):
        return None
    value = _number(num)
    if value is None or value <= 0:
        return None
    if kilo:
        value *= 1000
    text = str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")
    return text, _CURRENCIES[cur] if cur else None


def _number(raw: str) -> Decimal | None:
    """'1,200' and '1.200' are thousands; '49.99' and '49,99' decimals; else None."""
    parts = re.split(r"[.,]", raw)
    try:
        if len(parts) == 1:
            return Decimal(raw)
        if 1 <= len(parts[0]) <= 3 and all(len(p) == 3 for p in parts[1:]):
            return Decimal("".join(parts))
        if len(parts[-1]) in (1, 2) and all(len(p) == 3 for p in parts[1:-1]):
            return Decimal("".join(parts[:-1]) + "." + parts[-1])
    except InvalidOperation:
        return None
    return None


def _budget_value(money: tuple[str, str | None]) -> str:
    """'50 EUR', or the bare amount when no currency was given."""
    amount, currency = money
    return f"{amount} {currency}" if currency else amount


def _budget_facts(c: _Clause, intent: str | None) -> Iterator[Assertion]:
    money_context = bool(_MONEY_CONTEXT.search(c.low))
    if intent in _MONEY_INTENTS:
        # Amounts in a banking request are transfers, balances and credit limits, not a
        # budget; only a budget the user names as one counts ("my budget is 50 euros").
        if not c.question:
            yield from _stated_budget_facts(c, money_context, named_only=True)
        return
    if not c.question:
        yield from _stated_budget_facts(c, money_context)
        yield from _spend_facts(c)
    elif not c.request_question:
        return
    yield from _bound_facts(c, money_context)


def _stated_budget_facts(
    c: _Clause, money_context: bool, *, named_only: bool = False
) -> Iterator[Assertion]:
    """'my budget is 80', '$1,200 max', '50 bucks' (an answer), 'I have 2k to spend'."""
    patterns = (
        (_BUDGET_IS,)
        if named_only
        else (_BUDGET_IS, _MY_LIMIT, _AMOUNT_MAX, _AMOUNT_ONLY, _TO_SPEND)
    )
    for pattern in patterns:
        for m in _scan(pattern, c):
            before = c.low[: m.start()]
            if _HYPOTHETICAL.search(before):
                continue
            if pattern is _BUDGET_IS and _someone_elses(before):
                continue  # "my sister's budget is 50"
            money = _money(m, "1")
            named = pattern is not _AMOUNT_MAX and pattern is not _AMOUNT_ONLY
            if money and (money[1] or named or money_context):
                # "Forget the 50 euro limit": a budget withdrawn
                yield Assertion("budget", _budget_value(money), bool(_WITHDRAWN.search(before)))


_WITHDRAWN = re.compile(r"\b(?:forget|scrap|ignore|never\s+mind|disregard|drop)\b")


def _someone_elses(before: str) -> bool:
    """'my sister's budget', 'her total budget': the last two words name another owner."""
    return any(w.endswith("'s") or w in _OTHER_OWNERS for w in before.split()[-2:])


_OTHER_OWNERS = frozenset({"his", "her", "their", "your"})


def _bound_facts(c: _Clause, money_context: bool) -> Iterator[Assertion]:
    """'headphones under 50 euros', 'between 50 and 100 euros' (requests included)."""
    if _PRICE_DESCRIPTION.search(c.low) or _HYPOTHETICAL.search(c.low):
        return  # "it costs under 50 euros", "if it were under 50"
    for m in _UNDER.finditer(c.low):
        if _DESCRIBED_BEFORE.search(c.low, 0, m.start()):
            continue  # "the cheapest is under 20 dollars"
        money = _money(m, "1")
        if money and (money[1] or money_context):
            yield Assertion("budget", _budget_value(money))
    for m in _BETWEEN.finditer(c.low):
        low, high = _money(m, "1"), _money(m, "2")
        if low and high and (low[1] or high[1] or money_context):
            yield Assertion("budget", _budget_value((high[0], high[1] or low[1])))


def _spend_facts(c: _Clause) -> Iterator[Assertion]:
    """'I can spend up to 100', 'I can't go over $50', 'I don't want to pay more than 30'."""
    for m in _SPEND.finditer(c.low):
        if _HYPOTHETICAL.search(c.low[: m.start()]):
            continue
        if not _SUBJECT_START.match(m.group()) and _THIRD_PARTY_START.match(c.low):
            continue  # "my sister can spend 50"
        bound = re.sub(r"\s+", " ", m.group("bound") or "")
        refusing = bool(m.group("negmodal"))
        if refusing != (bound in _HIGHER_BOUND):
            continue  # "I want to spend more than 50", "I can't afford 200": no upper bound
        if not refusing and not (bound or m.group("modal")):
            continue  # "I spend 50 a month on books": a habit, not a limit
        if m.group("verb") == "go" and not refusing:
            continue  # "go" only bounds in "can't go over"
        money = _money(m, "1")
        if money:
            yield Assertion("budget", _budget_value(money))


_SUBJECT_START = re.compile(_SUBJECT)
_THIRD_PARTY_START = re.compile(r"(?:my|our|his|her|their)\s+(?!budget)\w+|he\b|she\b|they\b")


# --------------------------------------------------------------------- location

_PLACE_WORD = r"[^\W\d_][\w'.-]*"
_PLACE_RUN = re.compile(_PLACE_WORD + r"(?:[ ]+" + _PLACE_WORD + r"){0,5}")
_PLACE_STOP = _PHRASE_STOP | {
    "and", "or", "permanently", "originally", "myself", "alone", "full-time", "part-time",
    "area-wise", "years", "year", "months", "month", "weeks", "week", "days", "day", "any",
}  # fmt: skip
_PLACE_PARTICLES = _words(
    "de da do dos das del della di la le les el van von der den am an upon on sur en of y e im"
)
_PLACE_UPPER = {"uk": "UK", "us": "US", "usa": "USA", "uae": "UAE", "nyc": "NYC", "sf": "SF"}
_NOT_A_PLACE = _words(
    """
    a an my our his her their your this that these those some one same here there home town
    city country countryside suburbs suburb area village flat apartment house studio dorm
    north south east west middle center centre mountains woods hope fear denial peace
    harmony poverty luxury comfort style sin reality past moment future present bubble
    world region neighborhood neighbourhood capital
    """
)
# Countries and big cities: "I'm from X" (a weak cue) needs X capitalised or listed here.
_KNOWN_PLACES = _words(
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
_LIVE_IN = re.compile(
    _SPEAKER + _ADV + r"(?:(?P<neg>do\s+not|no\s+longer|never|used\s+to)\s+)?(?:live|living"
    r"|have\s+lived|have\s+been\s+living|been\s+living|reside|residing|based|located|settled"
    r"|(?:am|are)\s+(?:(?P<neg2>not|no\s+longer)\s+)?(?:living|residing|based|located"
    r"|settled))"
    r"(?:\s+with\s+[\w' ]{1,40}?)?\s+(?:" + _ADV + r"(?:here\s+)?in|out\s+of)\s+"
)
_MOVED_TO = re.compile(
    _SPEAKER + _ADV + r"(?:have\s+)?(?:just\s+|recently\s+|finally\s+)?(?:moved|relocated)"
    r"(?:\s+(?:back|here|over))?(?:\s+from\s+(?P<origin>[\w' ]{1,30}?))?\s+to\s+"
)
_MOVED_AWAY = re.compile(
    _SPEAKER + _ADV + r"(?:have\s+)?(?:just\s+|recently\s+)?(?:moved\s+away\s+from|moved\s+out\s+of"
    r"|left)\s+"
)
_FROM = re.compile(
    _SUBJECT + _ADV + r"(?:am|are|come)\s+(?:" + _NEG + r")?(?P<originally>originally\s+)?from\s+"
)
_MY_HOME = re.compile(
    r"(?:\b(?:my|our)\s+(?:home|house|flat|apartment|place)\s+is\s+in|^home\s+is(?:\s+in)?"
    r"|\b(?:i|we)\s+(?:am|are)\s+(?:a\s+)?(?:family|couple|household)(?:\s+of\s+\w+)?\s+in"
    r"|^as\s+an?\s+(?:\w+\s+){1,3}?(?:living|based)\s+in)\s+"
)
_LOCATION_HINTS = ("liv", "based", "located", "moved", "relocated", "resid", "settled", "home",
                   "left", "family", "couple", "household")  # fmt: skip


def _place(c: _Clause, start: int, *, weak: bool) -> str | None:
    """The place name at ``start``, title-cased as written; None if it is not one."""
    m = _PLACE_RUN.match(c.text, start)
    if m is None:
        return None
    words: list[str] = []
    for word in m.group().split():
        if word.islower() and word.rstrip(".") in _PLACE_STOP:
            break  # a stop word as written: "US" and "IN" (Indiana) are names
        words.append(word.rstrip("."))
    if not words or any(_PLACEHOLDER.search(w) for w in words):
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
        keep = any(ch.isupper() for ch in part) or (i > 0 and part in _PLACE_PARTICLES)
        if not keep:
            parts[i] = part[:1].upper() + part[1:]
    return "".join(parts)


# "Living in Berlin is expensive": the clause is about living there, not the speaker.
_GERUND_SUBJECT = re.compile(r"[^,.;!?]*?\b(?:is|was|can|could|must|sounds|seems|gets|costs)\b")


def _location_facts(c: _Clause) -> Iterator[Assertion]:
    for m in _scan(_LIVE_IN, c):
        if not _has_subject(c, m) and (m.start() > 0 or _GERUND_SUBJECT.match(c.low, m.end())):
            continue  # "a startup, based in Berlin" describes the startup
        place = _place(c, m.end(), weak=False)
        if place and _stated(c, m.end(), m):
            yield Assertion("location", place, _negated(m, c))
    for m in _scan(_MOVED_TO, c):
        place = _place(c, m.end(), weak=False)
        if place and _stated(c, m.end(), m):
            origin = m.group("origin") and _place(c, m.start("origin"), weak=False)
            if origin:
                yield Assertion("location", origin, negated=True)  # "moved from Berlin to Munich"
            yield Assertion("location", place)
    for m in _scan(_MOVED_AWAY, c):
        place = _place(c, m.end(), weak=m.group().rstrip().endswith("left"))
        if place and _stated(c, m.end(), m):
            yield Assertion("location", place, negated=True)
    for m in _scan(_MY_HOME, c):
        place = _place(c, m.end(), weak=False)
        if place and _stated(c, m.start()):
            yield Assertion("location", place)


def _origin_facts(c: _Clause) -> Iterator[Assertion]:
    """'I'm from Madrid' (a weaker cue: the place must look like one)."""
    if "from" not in c.low:
        return
    for m in _FROM.finditer(c.low):
        if m.group("originally"):
            continue  # where one grew up, not where one lives
        place = _place(c, m.end(), weak=True)
        if place and _stated(c, m.end(), m):
            yield Assertion("location", place, _negated(m, c))


# -------------------------------------------------------------------- household

_HOUSEHOLD_NOUNS = _words(
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
_HOUSEHOLD_MODIFIERS = _words(
    """
    little small young teenage grown grown-up adult older younger big old new newborn baby
    rescue lovely beautiful wonderful sweet adorable amazing two-year-old crazy lazy fat very
    really super tiny huge cute grumpy
    elderly senior indoor outdoor male female black white ginger tabby best
    """
)
_HAS = re.compile(
    _SPEAKER
    + _ADV
    + r"(?:(?P<neg>do\s+not|no\s+longer|never|did\s+not)\s+)?(?:have\s+(?:already\s+)?got"
    r"|have\s+been\s+blessed\s+with|have|got)\s+(?:(?P<no>no)\s+)?(?:any\s+)?"
)
_LIVE_WITH = re.compile(
    _SPEAKER + _ADV + r"(?:(?P<neg>do\s+not|no\s+longer|used\s+to)\s+)?(?:live|am\s+living"
    r"|are\s+living|share\s+(?:a|an|my|our)\s+(?:flat|house|apartment|place|home))\s+"
    r"(?:here\s+|in\s+[^,.;!?]{1,40}?\s+)?with\s+"  # "I live in Lyon with my husband"
)
_MARRIED_WITH = re.compile(_SPEAKER + _ADV + r"(?:am|are)\s+married\s+with\s+")
_PARENT_OF = re.compile(
    _SUBJECT + _ADV + r"(?:am|are)\s+(?:a\s+)?(?:(?:proud|single|busy|working|stay-at-home)\s+)*"
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
_WITH_A = re.compile(_SUBJECT + r"(?:am|are)\s+(?:a|an)\s+[a-z-]+(?:\s+[a-z-]+)?\s+with\s+")
_LEFT_PARENTS = re.compile(
    _SPEAKER + r"(?:have\s+)?moved\s+out\s+of\s+(?:my|our)\s+(?P<who>parents|mom|mum|dad)(?:'s?)?"
    r"\s+(?:place|house|home|flat)\b"
)
_PET_GONE = re.compile(
    r"\b(?:my|our)\s+(?P<noun>dog|cat|puppy|kitten|rabbit|hamster|parrot|bird|fish|goldfish"
    r"|horse|turtle|tortoise)\s+(?:died|passed\s+away|passed)\b"
)
_HOUSEHOLD_HINTS = ("have", "got", "liv", "share", "married", "mom", "mum", "dad", "parent",
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
            count = int(n) if n.isdigit() else _NUMBERS[n]
        text = text[m.end() :]
    text = _AGE.sub("", text)
    rest = text.split()
    while len(rest) > 1 and rest[0] in _HOUSEHOLD_MODIFIERS:
        rest = rest[1:]
    noun = " ".join(rest)
    known = noun in _HOUSEHOLD_NOUNS and noun not in _LIVE_WITH_ONLY
    if not known and not (live_with and noun in _LIVE_WITH_ONLY | _HOUSEHOLD_NOUNS):
        return None
    return f"{count} {noun}" if count > 1 else noun


def _household_list(c: _Clause, start: int, *, live_with: bool) -> list[str]:
    values = []
    for words in _phrase_items(c.low, start, max_words=5):
        value = _household_item(words, live_with=live_with)
        if value is None:
            break
        values.append(value)
    return values


def _household_facts(c: _Clause) -> Iterator[Assertion]:
    for m in _scan(_HAS, c):
        if _stated(c, m.end(), m):
            negated = bool(m.group("neg") or m.group("no")) or _retracted_after(c, m.end())
            for value in _household_list(c, m.end(), live_with=False):
                yield Assertion("household", value, negated)
    for m in _scan(_LIVE_WITH, c):
        if _stated(c, m.end(), m):
            for value in _household_list(c, m.end(), live_with=True):
                yield Assertion("household", value, _negated(m, c))
    for m in _scan(_MARRIED_WITH, c):
        if _stated(c, m.end(), m):
            for value in _household_list(c, m.end(), live_with=False):
                yield Assertion("household", value)
    for m in _scan(_PARENT_OF, c):
        if _stated(c, m.end(), m):
            count = int(m.group("num")) if m.group("num").isdigit() else _NUMBERS[m.group("num")]
            noun = re.sub(r"\s+", " ", m.group("noun") or "kids")
            noun = "kids" if noun == "little ones" else noun
            yield Assertion("household", f"{count} {noun}" if count > 1 else noun.rstrip("s"))
    for m in _scan(_PET_GONE, c):
        yield Assertion("household", m.group("noun"), negated=True)
    yield from _household_mentions(c)


def _and_i_live(low: str) -> Iterator[Assertion]:
    """'My husband and I share a flat' (the whole text: clauses are cut at "and I")."""
    for m in _AND_I_LIVE.finditer(low):
        value = _household_item(m.group("who").split(), live_with=True)
        if value and not _HYPOTHETICAL.search(low, 0, m.start()):
            yield Assertion("household", value)


def _household_mentions(c: _Clause) -> Iterator[Assertion]:
    """The other ways of saying who lives with the speaker (see _AND_I_LIVE and below)."""
    for pattern in (_LIVES_WITH_US, _LEFT_PARENTS):
        for m in _scan(pattern, c):
            value = _household_item(m.group("who").split(), live_with=True)
            if value and _stated(c, m.start()):
                yield Assertion("household", value, negated=pattern is _LEFT_PARENTS)
    for pattern in (_THERE_IS, _HOUSEHOLD_LIST, _WITH_A):
        for m in _scan(pattern, c):
            if _stated(c, m.end()):
                for value in _household_list(c, m.end(), live_with=pattern is _HOUSEHOLD_LIST):
                    yield Assertion("household", value)


# ------------------------------------------------------------------------- owns

# "have" and "got" alone are too loose ("I have a question"): their object must be a
# known kind of possession, a model name with a digit ("iphone 15", "ps5"), or an
# ordinal part of a series ("the first book").
_OWNABLE = _words(
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
_ABSTRACT = _words(
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
    _SPEAKER + _ADV + r"(?P<verb>own|have\s+owned|bought|purchased|have\s+bought|have\s+purchased"
    r"|picked\s+up|preordered|pre-ordered|got\s+myself|got\s+ourselves)\s+"
)
_OWN_WEAK = re.compile(_SPEAKER + _ADV + r"(?P<verb>have\s+(?:already\s+|just\s+)?got|have|got)\s+")
_OWN_GONE = re.compile(
    _SPEAKER + _ADV + r"(?:have\s+)?(?:just\s+)?(?:sold|got\s+rid\s+of|gave\s+away|returned"
    r"|traded\s+in|donated|threw\s+out|threw\s+away)\s+(?P<det>my|our|the)\s+"
)
_OWN_NOT = re.compile(
    _SPEAKER + _ADV + r"(?P<neg>do\s+not|no\s+longer|never)\s+(?:have|own)\s+(?:(?:a|an|any|my"
    r"|our)\s+)?"
)
_GIFT_AFTER = re.compile(
    r"\s*(?:for\s+(?:my|our|a|his|her|their|him|them|the)\b|as\s+(?:a\s+)?(?:gift|present)s?\b)"
)
_OWNS_HINTS = ("have", "got", "own", "bought", "purchas", "sold", "rid", "gave", "returned",
               "picked", "order", "donat", "threw", "traded")  # fmt: skip


def _owned(words: list[str], *, strong: bool, capitalised: bool = False) -> str | None:
    """The owned thing's phrase. After bare "have"/"got" it must be a known kind of
    possession, a model ("iphone 15"), a part of a series, or a name as written ("an
    Instant Pot"); after "own", "bought", "already have" any bounded thing counts."""
    cleaned = _clean_phrase([w for w in words if w != "own"])
    if cleaned is None:
        return None
    if cleaned[-1] in _HOUSEHOLD_NOUNS or cleaned[-1] in _ABSTRACT:
        return None  # "I have two kids" is household; "I have a question" is nothing
    phrase = " ".join(cleaned)
    if cleaned[0] in _NUMBERS and cleaned[0] not in ("a", "an"):
        cleaned = [str(_NUMBERS[cleaned[0]]), *cleaned[1:]]
        phrase = " ".join(cleaned)
    if strong:
        return phrase
    if "of" in cleaned:
        return None  # "got rid of my car", "have a lot of time"
    model = any(ch.isdigit() for ch in phrase) and not cleaned[0].isdigit()
    known = any(w in _OWNABLE for w in cleaned)
    return phrase if model or known or capitalised or _SERIES_PART.match(phrase) else None


def _owns_facts(c: _Clause) -> Iterator[Assertion]:
    for pattern, negated in (
        (_OWN_STRONG, False),
        (_OWN_WEAK, False),
        (_OWN_GONE, True),
        (_OWN_NOT, True),
    ):
        for m in _scan(pattern, c):
            if not _stated(c, m.end(), m):
                continue
            items = _phrase_items(c.low, m.end())
            if _bought_as_gift(c, m, pattern, items):
                continue
            gone = negated or (pattern is _OWN_WEAK and _retracted_after(c, m.end()))
            strong = _strong_owning(pattern, m)
            pos = m.end()
            for words in items:
                capitalised = _capitalised(c, pos, words)
                pos = _phrase_end(c.low, pos, words)
                value = _owned(words, strong=strong, capitalised=capitalised)
                if value is None:
                    break
                yield Assertion("owns", value, gone)


def _capitalised(c: _Clause, pos: int, words: list[str]) -> bool:
    """True when the phrase's first content word is written with a capital ("an Instant Pot")."""
    content = [w for w in words if w not in _DETERMINERS]
    if not content:
        return False
    start = c.low.find(content[0], pos)
    return start >= 0 and c.text[start : start + 1].isupper()


def _bought_as_gift(
    c: _Clause, m: re.Match[str], pattern: re.Pattern[str], items: list[list[str]]
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


# --------------------------------------------------------------- likes/dislikes

_LIKE = re.compile(
    _SPEAKER
    + _ADV
    + r"(?:(?P<neg>do\s+not|no\s+longer|never|used\s+to|stopped)\s+)?"
    + _ADV
    + r"(?P<verb>love|loved|like|liked|liking|loving|adore|enjoy|dig|prefer|have\s+a\s+soft"
    r"\s+spot\s+for|(?:(?:am|are)\s+" + _ADV + r"(?:(?P<neg2>no\s+longer)\s+)?)?(?:into"
    r"|(?:a\s+)?(?:big\s+|huge\s+|massive\s+|great\s+)?fans?\s+of|obsessed\s+with"
    r"|crazy\s+about|passionate\s+about|fond\s+of|a\s+sucker\s+for))\s+" + _ADV
)
# "I'm a huge horror fan", "Studio Ghibli films are my favourite", "likes: sci-fi",
# "I loved sci-fi as a teen and still do".
_X_FAN = re.compile(
    _SPEAKER + r"(?:(?:am|are)\s+)?(?:a\s+)?(?:big|huge|massive|great|total|die-hard)\s+"
    r"(?P<thing>[a-z][a-z-]*(?:\s+[a-z][a-z-]*)?)\s+fan\b"
)
_IS_FAVOURITE = re.compile(
    r"^(?P<thing>[a-z0-9][\w' -]{0,40}?)\s+(?:is|are)\s+(?:my|our)\s+(?:all[- ]time\s+"
    r"|absolute\s+)?favou?rites?\b"
)
_LIKES_FIELD = re.compile(r"\b(?P<field>likes|interests|hobbies|dislikes)\s*:\s*")
_STILL_DO = re.compile(
    _SPEAKER + _ADV + r"(?:loved|liked|adored|enjoyed)\s+(?=[^,.;!?]*\band\s+still\s+do\b)"
)
_DISLIKE = re.compile(
    _SPEAKER
    + _ADV
    + r"(?:(?P<neg>do\s+not|no\s+longer|used\s+to)\s+)?"
    + _ADV
    + r"(?P<verb>hate|dislike|detest|loathe|despise|cannot\s+stand|can\s+not\s+stand|cannot\s+bear"
    r"|can\s+not\s+bear|am\s+not\s+(?:really\s+)?into|are\s+not\s+into|am\s+not\s+(?:a\s+)?"
    r"(?:big\s+|huge\s+)?fan\s+of|am\s+not\s+fond\s+of|am\s+not\s+keen\s+on|am\s+not\s+big\s+on"
    r"|(?:am|are)\s+" + _ADV + r"(?:sick|tired)\s+of|(?:am|are)\s+" + _ADV + r"fed\s+up\s+with)"
    r"\s+" + _ADV
)
# "I find crowded beaches unbearable", "Mushrooms are disgusting to me", "No spicy food
# for me": opinions said another way.
_BAD = (
    r"(?:unbearable|boring|annoying|disgusting|overrated|awful|terrible|tedious|gross|horrible"
    r"|revolting|the\s+worst)"
)
_GOOD = r"(?:amazing|fascinating|relaxing|soothing|delicious|fun|wonderful|brilliant|great)"
_FIND = re.compile(
    _SPEAKER + r"(?:really\s+|honestly\s+|just\s+)?find\s+(?P<thing>[a-z][\w' -]{0,40}?)\s+"
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
_LIKES_HINTS = ("lik", "lov", "ador", "enjoy", "dig", "into", "fan", "obsess", "crazy",
                "passion", "fond", "soft spot", "sucker", "prefer", "hat", "dislik", "detest",
                "loath", "despis", "stand", "bear", "keen", "big on", "favo", "sick", "tired",
                "fed up", "find", "for me", "to me", "my thing", "cup of tea", "interests",
                "hobbies")  # fmt: skip


# "I like the colour", "I don't like the price": about the item being discussed.
_ITEM_ATTRIBUTES = _words(
    """
    option options choice choices suggestion suggestions recommendation recommendations
    result results answer answers price prices deal offer look color colour colors colours
    size design ending cover plot style shape material fit quality smell taste sound
    packaging delivery shipping service app website site interface font title layout print
    binding battery screen idea ideas
    """
)


def _liked(words: list[str]) -> str | None:
    cleaned = _clean_phrase(words)
    if cleaned is None or cleaned[-1] in _ITEM_ATTRIBUTES:
        return None
    phrase = " ".join(cleaned)
    gerund = _GERUND.match(phrase)
    if gerund:
        phrase = gerund.group(1)
        again = _clean_phrase(phrase.split())
        if again is None:
            return None
        phrase = " ".join(again)
    if phrase in _LANGUAGES:
        return None  # "I prefer German" is a language preference
    return phrase


def _liked_list(c: _Clause, start: int) -> list[str]:
    values = []
    for words in _phrase_items(c.low, start):
        value = _liked(words)
        if value is None:
            break
        values.append(value)
    return values


def _likes_facts(c: _Clause) -> Iterator[Assertion]:
    for m in _scan(_LIKE, c):
        if _stated(c, m.start("verb"), m):
            yield from _like_assertions(c, m)
    for m in _scan(_DISLIKE, c):
        if _stated(c, m.start("verb"), m):
            yield from _dislike_assertions(c, m)
    not_a_fan = _NOT_A_FAN.match(c.low)
    if not_a_fan:
        for value in _liked_list(c, not_a_fan.end()):
            yield Assertion("dislikes", value)
    for m in _scan(_FAVOURITE, c):
        if _stated(c, m.start()):
            for value in _liked_list(c, m.end()):
                yield Assertion("likes", value)
    yield from _opinion_facts(c)


def _opinion_facts(c: _Clause) -> Iterator[Assertion]:
    """Likes and dislikes said without a liking verb (see _X_FAN, _FIND, _BAD_TO_ME)."""
    for m in _scan(_X_FAN, c):
        value = _liked(m.group("thing").split())
        if value and _stated(c, m.start("thing"), m):
            yield Assertion("likes", value)
    for m in _scan(_STILL_DO, c):
        if _stated(c, m.end(), m):
            for value in _liked_list(c, m.end()):
                yield Assertion("likes", value)
    for pattern in (_IS_FAVOURITE, _FIND, _BAD_TO_ME):
        for m in _scan(pattern, c):
            thing = m.group("thing") or m.groupdict().get("none") or ""
            value = _liked(thing.split())
            if value and _stated(c, m.start(), m if pattern is _FIND else None):
                liked = pattern is _IS_FAVOURITE or (pattern is _FIND and not m.group("bad"))
                yield Assertion("likes" if liked else "dislikes", value)
    for m in _scan(_LIKES_FIELD, c):
        kind: FactType = "dislikes" if m.group("field") == "dislikes" else "likes"
        for value in _liked_list(c, m.end()):
            yield Assertion(kind, value)


_RIGHT_NOW = re.compile(r"(?:waiting|asking|searching|looking|scrolling|trying|this|it)\b")


def _dislike_assertions(c: _Clause, m: re.Match[str]) -> Iterator[Assertion]:
    """'I hate X'; 'I'm not into X any more' retracts a like; 'I used to hate X' a dislike."""
    if m.group("verb").endswith(" of") and _RIGHT_NOW.match(c.low, m.end()):
        return  # "I'm tired of waiting": about this conversation, not a taste
    retracted = bool(m.group("neg")) or _retracted_after(c, m.end())
    for value in _liked_list(c, m.end()):
        if "not" in m.group("verb") and retracted:
            yield Assertion("likes", value, True)  # "I'm not into X any more"
        else:
            yield Assertion("dislikes", value, retracted)


def _like_assertions(c: _Clause, m: re.Match[str]) -> Iterator[Assertion]:
    """'I love X'; 'I don't like X' is a dislike; 'no longer', 'used to', '... any more' retract."""
    neg = m.group("neg")
    if m.group("verb") in ("loved", "liked") and neg != "used to":
        return  # "I loved the first book": not a statement about now
    if m.group("verb") == "like" and not c.low.startswith(("i ", "we "), m.start()):
        return  # "something, like a thriller": "like" without its subject is a filler
    retracted = neg in ("no longer", "used to", "stopped") or bool(m.group("neg2"))
    retracted = retracted or _retracted_after(c, m.end())
    for value in _liked_list(c, m.end()):
        if neg == "do not" and not retracted:
            yield Assertion("dislikes", value)  # "I don't like horror"
        else:
            yield Assertion("likes", value, retracted)


# -------------------------------------------------------------- other languages

# The commonest statements in the other languages we serve (fr, de, es, it, pt, nl):
# "Je suis végétarien", "Ich wohne in Hamburg", "Soy alérgica a los mariscos". Their
# verbs are in the first person, so no subject check is needed; places must be
# capitalised as written.
_FOREIGN_I_AM = (
    r"\b(?:je\s+suis|nous\s+sommes|ich\s+bin|wir\s+sind|soy|somos|sono|siamo|sou|ik\s+ben"
    r"|wij\s+zijn|we\s+zijn)\s+"
)
_FOREIGN_DIET = re.compile(
    _FOREIGN_I_AM + r"(?:(?:un|une|eine?|een|strikt|streng|estrit[oa]|strett[oa]|estrict[oa])\s+)?"
    r"(?P<diet>v[ée]g[ée]tarien(?:ne)?s?|v[ée]g[ée]talien(?:ne)?s?|v[ée]ganes?|vegan[oa]?s?"
    r"|vegetarian[oa]s?|vegetarier(?:in)?|veganer(?:in)?|vegetarisch|vegetariër|veganist)\b"
)
_FOREIGN_LIVE = re.compile(
    r"\b(?:j'habite|je\s+vis|je\s+réside|nous\s+habitons|ich\s+wohne|ich\s+lebe|wir\s+wohnen"
    r"|wir\s+leben|vivo|vivimos|resido|abito|abitiamo|viviamo|moro|moramos|vivemos|ik\s+woon"
    r"|wij\s+wonen|we\s+wonen)\s+(?:à|a|au|aux|en|in|em|no|na|nel|nella)\s+"
)
_FOREIGN_ALLERGENS = {
    "arachides": "peanuts", "arachide": "peanuts", "cacahuètes": "peanuts",
    "noix": "nuts", "fruits à coque": "tree nuts", "crustacés": "shellfish",
    "fruits de mer": "shellfish", "œufs": "eggs", "oeufs": "eggs", "poisson": "fish",
    "lait": "milk", "pénicilline": "penicillin", "erdnüsse": "peanuts", "erdnuss": "peanuts",
    "nüsse": "nuts", "laktose": "lactose", "eier": "eggs", "meeresfrüchte": "shellfish",
    "schalentiere": "shellfish", "fisch": "fish", "sesam": "sesame", "milch": "milk",
    "katzen": "cats", "cacahuetes": "peanuts", "cacahuates": "peanuts", "maní": "peanuts",
    "nueces": "nuts", "frutos secos": "tree nuts", "mariscos": "shellfish",
    "lactosa": "lactose", "huevo": "eggs", "huevos": "eggs", "pescado": "fish",
    "sésamo": "sesame", "leche": "milk", "gatos": "cats", "polen": "pollen",
    "penicilina": "penicillin", "arachidi": "peanuts", "noci": "nuts",
    "frutta secca": "tree nuts", "crostacei": "shellfish", "frutti di mare": "shellfish",
    "glutine": "gluten", "lattosio": "lactose", "uova": "eggs", "pesce": "fish",
    "soia": "soy", "sesamo": "sesame", "latte": "milk", "gatti": "cats", "polline": "pollen",
    "penicillina": "penicillin", "amendoim": "peanuts", "amendoins": "peanuts",
    "nozes": "nuts", "frutos do mar": "shellfish", "marisco": "shellfish",
    "glúten": "gluten", "ovo": "eggs", "ovos": "eggs", "peixe": "fish", "gergelim": "sesame",
    "leite": "milk", "pólen": "pollen", "pinda's": "peanuts", "pinda": "peanuts",
    "noten": "nuts", "schaaldieren": "shellfish", "eieren": "eggs", "vis": "fish",
    "melk": "milk", "katten": "cats", "penicilline": "penicillin", "gluten": "gluten",
    "lactose": "lactose", "soja": "soy", "pollen": "pollen",
}  # fmt: skip
_FOREIGN_ALLERGY = re.compile(
    _FOREIGN_I_AM + r"(?:(?:très|sehr|muy|molto|muito|erg)\s+)?(?:allergique|allergisch"
    r"|al[ée]rgic[oa]|allergic[oa])\s+(?:aux|au|à\s+la|à\s+l'|à|gegen|auf|a\s+los|a\s+las|al"
    r"|a\s+la|ai|agli|alle|alla|ao|aos|às|voor|op|a)\s*(?:(?:den|die|das|der|les|le|la|el|los"
    r"|las|il|i|gli|le|o|os|as|de|het)\s+)?(?P<allergen>" + _trie(_FOREIGN_ALLERGENS) + r")\b"
)
_FOREIGN_HINTS = ("suis", "sommes", "bin ", "sind ", "soy ", "somos", "sono ", "siamo", "sou ",
                  "ben ", "zijn", "habit", "vis ", "wohn", "lebe", "vivo", "vivi", "vive", "resid",
                  "abit", "moro", "moramos", "woon", "wonen")  # fmt: skip


def _foreign_facts(c: _Clause) -> Iterator[Assertion]:
    for m in _FOREIGN_DIET.finditer(c.low):
        word = m.group("diet")
        vegan = word.startswith(("vegan", "végan", "vegan")) or "tal" in word
        yield Assertion("diet", "vegan" if vegan else "vegetarian")
    for m in _FOREIGN_LIVE.finditer(c.low):
        place = _capitalised_place(c, m.end())
        if place:
            yield Assertion("location", place)
    for m in _FOREIGN_ALLERGY.finditer(c.low):
        yield Assertion("allergy", _FOREIGN_ALLERGENS[m.group("allergen")])


def _capitalised_place(c: _Clause, start: int) -> str | None:
    """The run of capitalised words at ``start`` ("Rio de Janeiro"), as written."""
    words: list[str] = []
    for written in c.text[start:].split()[:5]:
        word = written.strip(".,;:!?)")
        if not (word[:1].isupper() or (words and word in _PLACE_PARTICLES)):
            break
        words.append(word)
    while words and words[-1] in _PLACE_PARTICLES:
        words.pop()
    return " ".join(words) if words else None


# --------------------------------------------------------------------- language

_LANGUAGES = {
    "english": "en", "french": "fr", "francais": "fr", "français": "fr", "german": "de",
    "deutsch": "de", "spanish": "es", "castilian": "es", "espanol": "es", "español": "es",
    "italian": "it", "italiano": "it", "portuguese": "pt", "portugues": "pt",
    "português": "pt", "dutch": "nl", "nederlands": "nl", "flemish": "nl", "polish": "pl",
    "swedish": "sv", "danish": "da", "norwegian": "no", "finnish": "fi", "greek": "el",
    "turkish": "tr", "russian": "ru", "ukrainian": "uk", "czech": "cs", "romanian": "ro",
    "hungarian": "hu", "japanese": "ja", "chinese": "zh", "mandarin": "zh", "korean": "ko",
    "arabic": "ar", "hebrew": "he", "hindi": "hi", "catalan": "ca",
}  # fmt: skip
_LANG = "(?P<lang>" + "|".join(sorted(_LANGUAGES, key=len, reverse=True)) + ")"
_STATED_LANGUAGE = (
    re.compile(
        r"\b(?:answer|reply|respond|write|talk|speak|chat|text|communicate|continue|switch"
        r"|change|translate\s+your\s+(?:answers|replies|responses))(?:\s+(?:to\s+me|back|with\s+me"
        r"|to\s+each\s+other|with\s+each\s+other|to\s+us|with\s+us|over|it|the\s+language))*"
        r"(?:\s+only)?\s+(?:in|to|into)\s+" + _LANG + r"\b"
    ),
    re.compile(
        _SUBJECT + _ADV + r"(?:would\s+)?prefer\s+(?:(?:to\s+)?(?:speak|speaking|chat|chatting"
        r"|talk|talking|write|writing|communicate|communicating)\s+(?:in\s+)?|(?:answers|replies"
        r"|responses|messages)\s+in\s+|(?:it\s+)?in\s+)?"
        + _LANG
        + r"(?=\s*(?:[,.!;)]|$)|\s+(?:please|thanks|thank|if|actually|instead|now|over|to"
        r"|from|for)\b)"
    ),
    re.compile(r"\b(?:in|use)\s+" + _LANG + r"\s+(?:please|pls|plz)\b"),
    re.compile(r"\b(?:please|pls|plz)\s+(?:use|in)\s+" + _LANG + r"\b"),
    re.compile(r"\bpreferred\s+language(?:\s+is|:)?\s+" + _LANG + r"\b"),
    re.compile(_SUBJECT + _ADV + r"only\s+(?:speak|read|understand)\s+" + _LANG + r"\b"),
)
# "Por favor, contéstame en inglés", "réponds-moi en anglais", "antworte bitte auf Englisch"
_FOREIGN_NAMES = {
    "inglés": "en", "ingles": "en", "anglais": "en", "englisch": "en", "inglese": "en",
    "inglês": "en", "engels": "en", "español": "es", "espanol": "es", "castellano": "es",
    "espagnol": "es", "spanisch": "es", "spagnolo": "es", "espanhol": "es", "spaans": "es",
    "francés": "fr", "frances": "fr", "français": "fr", "francais": "fr", "französisch": "fr",
    "francese": "fr", "francês": "fr", "frans": "fr", "alemán": "de", "aleman": "de",
    "allemand": "de", "deutsch": "de", "tedesco": "de", "alemão": "de", "duits": "de",
    "italiano": "it", "italien": "it", "italienisch": "it", "italiaans": "it",
    "portugués": "pt", "portugais": "pt", "portugiesisch": "pt", "portoghese": "pt",
    "português": "pt", "portugees": "pt", "neerlandés": "nl", "holandés": "nl",
    "néerlandais": "nl", "niederländisch": "nl", "olandese": "nl", "holandês": "nl",
    "nederlands": "nl",
}  # fmt: skip
_FOREIGN_STATED = re.compile(
    r"\b(?:contéstame|contestame|contesta|respóndeme|respondeme|responde|háblame|hablame"
    r"|escríbeme|escribeme|réponds|répondez|parle|parlez|écris|écrivez|antworte|antworten"
    r"|schreib|schreibe|sprich|rispondi|rispondimi|scrivi|scrivimi|parla|parlami|responda"
    r"|fale|escreva|antwoord|schrijf|spreek)\b(?:[\s-]+\w+){0,3}?\s+(?:en|in|em|auf|in\s+het"
    r"|op)\s+(?P<lang>" + "|".join(sorted(_FOREIGN_NAMES, key=len, reverse=True)) + r")\b"
)
_LANGUAGE_NAME = re.compile(r"\b" + _LANG + r"\b")
_NEGATION_BEFORE = re.compile(r"\b(?:not|never|no)\b[\w\s]{0,12}$")


def _stated_language(low: str, *, loose: bool) -> str | None:
    """The language the speaker asked to be answered in; the last one stated wins."""
    stated: str | None = None
    position = -1
    foreign = _FOREIGN_STATED.search(low)
    if foreign:
        stated, position = _FOREIGN_NAMES[foreign.group("lang")], foreign.start()
    if not _LANGUAGE_NAME.search(low):
        return stated
    for pattern in _STATED_LANGUAGE:
        for m in pattern.finditer(low):
            if m.start() > position and not _NEGATION_BEFORE.search(low[: m.start()]):
                stated, position = _LANGUAGES[m.group("lang")], m.start()
    if stated is None and loose:
        named = {_LANGUAGES[m.group("lang")] for m in _LANGUAGE_NAME.finditer(low)}
        if len(named) == 1:
            stated = named.pop()
    return stated


# Detection is restricted in effect to the languages we serve: the identifier ranks
# all its ~97 languages, and the answer counts only when (a) these languages hold a
# fair share of the probability (so Swedish or Polish text is not forced into Dutch
# or German) and (b) one of them clearly leads the others.
DETECTED_LANGUAGES: tuple[str, ...] = ("en", "fr", "de", "es", "it", "pt", "nl")
_MIN_SERVED_MASS = 0.2
_MIN_SHARE = 0.6
_MIN_WORDS = 3
_DETECT_CHARS = 300  # enough to tell the language; the identifier's cost grows with length
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")
_NOT_LANGUAGE = re.compile(
    r"\[(?:email|phone|card|account)\]|https?://\S+|www\.\S+|(?<!\S)\S+@\S+|\d+"
)


class _Detector(Protocol):
    def __call__(self, text: str) -> tuple[str, float, float] | None: ...


@cache
def _language_identifier() -> _Detector:
    """py3langid's identifier, built once (a 4.5 MB model: ~1 s, not at import).

    It ranks all ~97 of its languages (its public ``rank``, ~50 µs a message); only
    the languages we serve count, as shares of their total probability.
    """
    from py3langid.langid import (  # type: ignore[import-untyped]  # noqa: PLC0415
        MODEL_FILE,
        LanguageIdentifier,
    )

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    served = frozenset(DETECTED_LANGUAGES)

    def detect(text: str) -> tuple[str, float, float] | None:
        """(best served language, its share among them, their total probability)."""
        ranked = [(lang, float(p)) for lang, p in identifier.rank(text) if lang in served]
        mass = sum(p for _, p in ranked)
        if not ranked or mass <= 0.0:
            return None
        best, probability = ranked[0]
        return best, probability / mass, mass

    return detect


def _detected_language(text: str) -> str | None:
    # removed spans leave space runs, which would count as features: collapse them
    cleaned = " ".join(_NOT_LANGUAGE.sub(" ", text[:_DETECT_CHARS]).split())
    if len(_WORD.findall(cleaned)) < _MIN_WORDS:
        return None
    detected = _language_identifier()(cleaned)
    if detected is None:
        return None
    language, share, mass = detected
    return language if mass >= _MIN_SERVED_MASS and share >= _MIN_SHARE else None


# Words a pattern cannot match without: a substring test is far cheaper than a scan.
_PATTERN_NEEDS: dict[re.Pattern[str], tuple[str, ...]] = {
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
    _ALLERGIC_TO: ("allergic",),
    _INTOLERANT: ("intolerant", "sensitive"),
    _CELIAC: ("celiac", "coeliac"),
    _HAS_ALLERGY: ("allerg", "intoleran"),
    _MY_ALLERGY: ("allerg", "intoleran"),
    _CANNOT_EAT: ("cannot", "can not", "unable", "must"),
    _NO_MEAT: ("meat", "animal", "gluten", "dairy", "fish"),
}


# Keyed by id(): hashing a compiled pattern hashes its whole program, on every lookup.
_NEEDS = {id(pattern): words for pattern, words in _PATTERN_NEEDS.items()}


def _scan(pattern: re.Pattern[str], c: _Clause) -> Iterator[re.Match[str]]:
    """``pattern.finditer(c.low)``, skipped when no word it needs is there."""
    needed = _NEEDS.get(id(pattern))
    if needed is None:
        return pattern.finditer(c.low)
    for word in needed:
        if word in c.low:
            return pattern.finditer(c.low)
    return iter(())


# ------------------------------------------------------------------- assembling


_FIRST_PERSON = re.compile(r"\b(?:i|we|my|our|me)\b")
_DIGIT = re.compile(r"\d")


_FAMILIES: tuple[tuple[Callable[[_Clause], Iterator[Assertion]], tuple[str, ...]], ...] = (
    (_diet_facts, _DIET_HINTS),
    (_allergy_facts, _ALLERGY_HINTS),
    (_location_facts, _LOCATION_HINTS),
    (_household_facts, _HOUSEHOLD_HINTS),
    (_owns_facts, _OWNS_HINTS),
    (_likes_facts, _LIKES_HINTS),
    (_foreign_facts, _FOREIGN_HINTS),
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
_HINT = re.compile(_trie(_HINT_FAMILIES))


def _clause_facts(c: _Clause, intent: str | None) -> Iterator[Assertion]:
    """Every fact one clause states; one hint scan skips the rules that cannot match."""
    if _DIGIT.search(c.low):
        yield from _budget_facts(c, intent)
    if c.question:
        return
    awake = {i for m in _HINT.finditer(c.low) for i in _HINT_FAMILIES[m.group()]}
    for i, (rules, _) in enumerate(_FAMILIES):
        if i in awake:
            yield from rules(c)


def _one_budget(found: list[Assertion]) -> list[Assertion]:
    """One message states one budget: the last bound stated (a correction comes later),
    besides any it withdraws ("forget the 50 euro limit, I can spend up to 80")."""
    budgets = [a for a in found if a.type == "budget" and not a.negated]
    if len(budgets) < 2:
        return found
    return [a for a in found if a.type != "budget" or a.negated or a is budgets[-1]]


def _dedupe(found: list[Assertion]) -> list[Assertion]:
    """One assertion per (type, value); a later one (a correction) replaces an earlier one."""
    latest: dict[tuple[str, str], Assertion] = {}
    for a in found:
        if _PLACEHOLDER.search(a.value) or "[" in a.value:
            continue  # a redacted identifier is never a value
        latest.pop((a.type, a.value), None)
        latest[(a.type, a.value)] = a
    return list(latest.values())
