"""Noun phrases: the open-ended values (owned things, likes, places, allergens).

Precision first, so they are bounded: they stop at punctuation, conjunctions,
prepositions and relative clauses, are at most five words, and pronouns or abstract
nouns ("it", "a question") are refused.
"""

from __future__ import annotations

import re

from rapport.profile.domain.pii import PLACEHOLDERS


def word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
_TOKEN = re.compile(r"[^\W_][\w'+&.-]*[\w+]|[^\W_]|[^\w\s]")
# Words that end a noun phrase (list separators are handled apart).
PHRASE_STOP = word_set(
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
DETERMINERS = frozenset({"the", "a", "an", "some", "all", "any", "my", "our", "own", "both"})
_QUANTIFIERS = re.compile(
    r"^(?:a lot of|lots of|a bunch of|bunch of|loads of|tons of|all kinds of|all sorts of"
    r"|any kind of|any type of|most kinds of|most|all|some|any)\s+"
)
_NOT_A_THING = word_set(
    """
    it its this that these those them you your yours him his her hers me us mine ours their
    theirs everything anything nothing something everyone anyone someone nobody one ones
    both either neither how what when where why who to idea way fact thought sound look feel
    lot bit stuff kind sort type much same other others way thing time rid used
    """
)
# What domain/pii.py leaves in place of an identifier: never part of a value.
PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))


def phrase_items(low: str, start: int, max_words: int = 5) -> list[list[str]]:
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
        if tok in _INTENSIFIERS and all(w in DETERMINERS or w in NUMBERS for w in current):
            continue  # "a very lazy cat"
        if tok == ":":
            current = []  # "likes: sci-fi, budget: 30": "budget" labels the next field
            break
        if not tok[0].isalnum() or tok in PHRASE_STOP:
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


def clean_phrase(words: list[str]) -> list[str] | None:
    """Strip determiners and quantifiers; None for pronouns and non-things."""
    text = _QUANTIFIERS.sub("", " ".join(words))
    words = text.split()
    while words and words[0] in DETERMINERS:
        words = words[1:]
    if not words or words[0] in _NOT_A_THING or words[-1] in _NOT_A_THING:
        return None
    if not any(ch.isalpha() for ch in "".join(words)):
        return None
    return words


_BOUNDARY = PHRASE_STOP | _LIST_SEPARATORS | {"any", "only", "diet"}


def bounded(low: str, pos: int) -> bool:
    """True when the word at ``pos`` (if any) does not continue the phrase before it."""
    if low.startswith("-", pos):
        return False  # "vegan-curious"
    m = _TOKEN.search(low, pos)
    return m is None or not m.group()[0].isalnum() or m.group() in _BOUNDARY
