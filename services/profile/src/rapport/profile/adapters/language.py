"""The language a chat message is written in: py3langid's identifier, for the fact extractor.

The domain asks for it through :class:`rapport.profile.domain.facts.DetectLanguage`
(``LanguageDetector().detect``); the model is a file read on first use, not at import.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Protocol

# Detection is restricted in effect to the languages we serve: the identifier ranks
# all its ~97 languages, and the answer counts only when (a) these languages hold a
# fair share of the probability (so Swedish or Polish text is not forced into Dutch
# or German) and (b) one of them clearly leads the others.
DETECTED_LANGUAGES: tuple[str, ...] = ("en", "fr", "de", "es", "it", "pt", "nl")
_SERVED = frozenset(DETECTED_LANGUAGES)
_MIN_SERVED_MASS = 0.2
_MIN_SHARE = 0.6


class _Identifier(Protocol):
    def rank(self, text: str) -> Iterable[tuple[str, float]]: ...


@cache
def _identifier() -> _Identifier:
    """py3langid's identifier, built once a process (a 4.5 MB model: ~1 s, not at import)."""
    from py3langid.langid import (  # type: ignore[import-untyped]  # noqa: PLC0415
        MODEL_FILE,
        LanguageIdentifier,
    )

    identifier: _Identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return identifier


class LanguageDetector:
    """Names the served language a text is written in, when the identifier is confident.

    It ranks all the identifier's languages (its public ``rank``, ~50 µs a message);
    only the languages we serve count, as shares of their total probability.
    """

    def prepare(self) -> None:
        """Build the identifier now (otherwise the first message that needs it does)."""
        _identifier()

    def detect(self, text: str) -> str | None:
        ranked = [(lang, float(p)) for lang, p in _identifier().rank(text) if lang in _SERVED]
        mass = sum(p for _, p in ranked)
        if not ranked or mass <= 0.0:
            return None
        best, probability = ranked[0]
        return best if mass >= _MIN_SERVED_MASS and probability / mass >= _MIN_SHARE else None
