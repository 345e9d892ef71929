"""Identifier types every contract uses: events, records, API paths and hop models."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

# Identifiers: no whitespace or control characters, bounded. The classes are spelled
# out because `\s` means different things to Python, Rust (pydantic) and ECMA-262
# (JSON Schema) regexes: U+0085, for one, is whitespace to the first two only.
NO_SPACE_OR_CONTROL = (
    r"^[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$"
)
# `\s` as pydantic's (Rust) regexes read it, Unicode's White_Space, for a pattern to
# spell out: [^{WHITESPACE}].
WHITESPACE = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=NO_SPACE_OR_CONTROL)
]


def record_key(tenant: str, stable_id: str) -> bytes:
    """The key of a tenant's record on a compacted topic (knowledge's documents, the
    catalogue's items): it only keeps one id's versions on one partition, in order; the
    record names its tenant and id in its value."""
    return f"{tenant}/{stable_id}".encode()
