"""What Rapport remembers of a user's own words: the fact types and memory ids.

profile derives and serves facts and recalled messages; respond shows them in a reply
and hands them to the LLM. Their models cross that hop, so they are in
:mod:`rapport.common.contracts` (``MemoryFact``, ``RecalledMessage``, ``RecallRequest``,
``Recalled``).
"""

from __future__ import annotations

from typing import Literal, get_args

FactType = Literal[
    "diet",
    "allergy",
    "budget",
    "location",
    "household",
    "owns",
    "likes",
    "dislikes",
    "language",
]
FACT_TYPES: tuple[str, ...] = get_args(FactType)

# Ids say which kind of memory they name: f- a fact, m- a remembered message.
FACT_ID_PREFIX = "f-"
MESSAGE_ID_PREFIX = "m-"
MEMORY_ID_PATTERN = r"^[fm]-[0-9a-f-]{8,64}$"
