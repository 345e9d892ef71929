"""A bench's command-line options: the description from its docstring, a ``--seconds``
option, and every figure given held between bounds (a bench's run stays bounded).

    options = parser(__doc__, seconds=8.0)
    options.add_argument("--rounds", type=int, default=40)
    args = options.parse_args()
    seconds, rounds = bounded(args.seconds, 2.0, 60.0), bounded(args.rounds, 5, 500)
"""

from __future__ import annotations

import argparse
from typing import TypeVar

Number = TypeVar("Number", int, float)


def parser(
    doc: str | None, *, seconds: float | None = None, seconds_help: str = "per load level (bounded)"
) -> argparse.ArgumentParser:
    """A bench's options: the first paragraph of its docstring as the description; with
    ``seconds``, a ``--seconds`` option with that default."""
    summary = " ".join(doc.split("\n\n")[0].split()) if doc else None
    options = argparse.ArgumentParser(description=summary)
    if seconds is not None:
        options.add_argument("--seconds", type=float, default=seconds, help=seconds_help)
    return options


def bounded(value: Number, low: Number, high: Number) -> Number:
    """``value`` held between ``low`` and ``high``."""
    return max(low, min(value, high))
