"""The commonest statements in the other languages we serve (fr, de, es, it, pt, nl).

"Je suis végétarien", "Ich wohne in Hamburg", "Soy alérgica a los mariscos". Their
verbs are in the first person, so no subject check is needed; places must be
capitalised as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from rapport.profile.domain.facts.assertion import Assertion
from rapport.profile.domain.facts.clauses import Clause, trie
from rapport.profile.domain.facts.location import PLACE_PARTICLES

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
    r"|las|il|i|gli|le|o|os|as|de|het)\s+)?(?P<allergen>" + trie(_FOREIGN_ALLERGENS) + r")\b"
)
FOREIGN_HINTS = ("suis", "sommes", "bin ", "sind ", "soy ", "somos", "sono ", "siamo", "sou ",
                 "ben ", "zijn", "habit", "vis ", "wohn", "lebe", "vivo", "vivi", "vive", "resid",
                 "abit", "moro", "moramos", "woon", "wonen")  # fmt: skip


def foreign_facts(c: Clause) -> Iterator[Assertion]:
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


def _capitalised_place(c: Clause, start: int) -> str | None:
    """The run of capitalised words at ``start`` ("Rio de Janeiro"), as written."""
    words: list[str] = []
    for written in c.text[start:].split()[:5]:
        word = written.strip(".,;:!?)")
        if not (word[:1].isupper() or (words and word in PLACE_PARTICLES)):
            break
        words.append(word)
    while words and words[-1] in PLACE_PARTICLES:
        words.pop()
    return " ".join(words) if words else None
