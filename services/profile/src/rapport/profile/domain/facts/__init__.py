"""Typed facts a user states about themselves in a chat message: pure logic, no I/O.

It runs on every chat message on the apply path, after ``pii.redact``, so it is
precompiled regexes over short clauses, each family of rules skipped unless one of
its hint words is there, plus one call to a small language identifier (about 100 µs
a typical message in all, a third of it the identifier).

Precision first: a wrong remembered fact is worse than a missed one. The rules are
English, plus the commonest statements in the other languages we serve ("Je suis
végétarien", "Ich wohne in Hamburg", "soy alérgica a los mariscos", budget bounds
such as "bis zu 50 Euro").

- :mod:`.extractor`: :func:`extract`, every family on each clause, and what the
  message's intent label changes;
- :mod:`.clauses`: sentences and clauses, and whether a clause states a fact about
  its speaker as true now; :mod:`.phrases`: the bounded noun phrases values are;
- a module per family: :mod:`.diet`, :mod:`.allergy`, :mod:`.budget`,
  :mod:`.location`, :mod:`.household`, :mod:`.owns`, :mod:`.likes`, :mod:`.foreign`
  (the other languages' statements) and :mod:`.language`.

The language identifier is the caller's (:class:`DetectLanguage`; ``adapters.language``
builds it), so that this package does no I/O.
"""

from rapport.profile.domain.facts.assertion import Assertion
from rapport.profile.domain.facts.extractor import extract
from rapport.profile.domain.facts.language import DetectLanguage

__all__ = ["Assertion", "DetectLanguage", "extract"]
