"""The language to answer in: the one the speaker asked for, else the one they write in.

What the speaker asked for ("please answer in French", "I prefer German", "réponds-moi
en anglais") wins and is the only one emitted. Else the language the message is written
in, as the caller's :class:`DetectLanguage` names it (``adapters.language``: py3langid,
only when the detection is confident), when the message has three words or more once
links, numbers and redacted placeholders are left out (see :func:`detected_language`).
"""

from __future__ import annotations

import re
from typing import Protocol

from rapport.profile.domain.facts.clauses import ADV, SUBJECT

LANGUAGES = {
    "english": "en", "french": "fr", "francais": "fr", "français": "fr", "german": "de",
    "deutsch": "de", "spanish": "es", "castilian": "es", "espanol": "es", "español": "es",
    "italian": "it", "italiano": "it", "portuguese": "pt", "portugues": "pt",
    "português": "pt", "dutch": "nl", "nederlands": "nl", "flemish": "nl", "polish": "pl",
    "swedish": "sv", "danish": "da", "norwegian": "no", "finnish": "fi", "greek": "el",
    "turkish": "tr", "russian": "ru", "ukrainian": "uk", "czech": "cs", "romanian": "ro",
    "hungarian": "hu", "japanese": "ja", "chinese": "zh", "mandarin": "zh", "korean": "ko",
    "arabic": "ar", "hebrew": "he", "hindi": "hi", "catalan": "ca",
}  # fmt: skip
_LANG = "(?P<lang>" + "|".join(sorted(LANGUAGES, key=len, reverse=True)) + ")"
_STATED_LANGUAGE = (
    re.compile(
        r"\b(?:answer|reply|respond|write|talk|speak|chat|text|communicate|continue|switch"
        r"|change|translate\s+your\s+(?:answers|replies|responses))(?:\s+(?:to\s+me|back|with\s+me"
        r"|to\s+each\s+other|with\s+each\s+other|to\s+us|with\s+us|over|it|the\s+language))*"
        r"(?:\s+only)?\s+(?:in|to|into)\s+" + _LANG + r"\b"
    ),
    re.compile(
        SUBJECT + ADV + r"(?:would\s+)?prefer\s+(?:(?:to\s+)?(?:speak|speaking|chat|chatting"
        r"|talk|talking|write|writing|communicate|communicating)\s+(?:in\s+)?|(?:answers|replies"
        r"|responses|messages)\s+in\s+|(?:it\s+)?in\s+)?"
        + _LANG
        + r"(?=\s*(?:[,.!;)]|$)|\s+(?:please|thanks|thank|if|actually|instead|now|over|to"
        r"|from|for)\b)"
    ),
    re.compile(r"\b(?:in|use)\s+" + _LANG + r"\s+(?:please|pls|plz)\b"),
    re.compile(r"\b(?:please|pls|plz)\s+(?:use|in)\s+" + _LANG + r"\b"),
    re.compile(r"\bpreferred\s+language(?:\s+is|:)?\s+" + _LANG + r"\b"),
    re.compile(SUBJECT + ADV + r"only\s+(?:speak|read|understand)\s+" + _LANG + r"\b"),
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


def stated_language(low: str, *, loose: bool) -> str | None:
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
                stated, position = LANGUAGES[m.group("lang")], m.start()
    if stated is None and loose:
        named = {LANGUAGES[m.group("lang")] for m in _LANGUAGE_NAME.finditer(low)}
        if len(named) == 1:
            stated = named.pop()
    return stated


# ------------------------------------------------------------------------ detection


class DetectLanguage(Protocol):
    """The language ``text`` is written in (ISO 639-1), or None when unsure."""

    def __call__(self, text: str, /) -> str | None: ...


_MIN_WORDS = 3
_DETECT_CHARS = 300  # enough to tell the language; the identifier's cost grows with length
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")
_NOT_LANGUAGE = re.compile(
    r"\[(?:email|phone|card|account)\]|https?://\S+|www\.\S+|(?<!\S)\S+@\S+|\d+"
)


def detected_language(text: str, detect: DetectLanguage) -> str | None:
    """What ``detect`` names for the words of ``text``; None for fewer than three."""
    # removed spans leave space runs, which would count as features: collapse them
    cleaned = " ".join(_NOT_LANGUAGE.sub(" ", text[:_DETECT_CHARS]).split())
    if len(_WORD.findall(cleaned)) < _MIN_WORDS:
        return None
    return detect(cleaned)
