"""Quality of the chat fact extractor on a hand-labelled set, and its time per message.

No servers. Every row of ``tests/data/memory_facts.jsonl`` (method and counts in
``tests/data/memory_facts.md``) is run through the profile service's
``rapport.profile.domain.facts.extract`` (with the service's language detector,
``rapport.profile.adapters.language``), one message at a time, and the
multiset of ``(type, value, negated)`` it returns is compared with the row's labels:

- values are normalised on both sides before comparing (``normalise_value``:
  casefold, whitespace collapsed, one leading a/an/the/my/our dropped, one
  trailing "s" dropped from a last word longer than three characters);
- a row's expected ``language`` assertions are its explicit language-preference
  facts when it has any, else the language the message is written in (the row's
  ``language`` field) when that is known, else none;
- per fact type: true positives (an expected triple extracted), false positives
  (an extracted triple not expected, counted under the extracted type), false
  negatives (an expected triple missed), precision, recall, F1 and support
  (expected triples); micro totals over every type and over every type but
  ``language``; the same totals per row kind;
- false alarms: rows with no labelled fact where the extractor returned anything
  not expected (the message's own language is expected), counted per kind;
- the extractor's time per message in microseconds (mean and p99, after a warm-up).

Writes ``bench/results/memory_quality.json``.

    .venv/bin/python -m bench.memory_quality [--split dev|test|all] [--show-errors N]
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from bench.options import parser
from bench.results_file import write_results
from bench.stats import Stopwatch, percentile
from rapport.common.contracts import FACT_TYPES

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET = REPO_ROOT / "tests" / "data" / "memory_facts.jsonl"
LANGUAGE = "language"
KINDS = (
    "plain",
    "multi",
    "negation",
    "hypothetical",
    "question",
    "third_party",
    "distractor",
    "non_english",
    "pii",
)
SPLITS = ("dev", "test")
WARMUP = 20
_LEADING_WORD = re.compile(r"^(?:a|an|the|my|our) ")

Triple = tuple[str, str, bool]  # (type, normalised value, negated)


class AssertionLike(Protocol):
    """What the extractor returns: ``rapport.profile.domain.facts.Assertion``."""

    @property
    def type(self) -> str: ...

    @property
    def value(self) -> str: ...

    @property
    def negated(self) -> bool: ...


@dataclass(frozen=True)
class Fact:
    type: str
    value: str
    negated: bool = False


@dataclass(frozen=True)
class Row:
    id: str
    text: str
    facts: tuple[Fact, ...]
    language: str | None
    kind: str
    split: str


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def support(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.support if self.support else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def as_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "support": self.support,
        }


@dataclass(frozen=True)
class Mistake:
    row: Row
    missed: tuple[Triple, ...]  # expected, not extracted
    extra: tuple[Triple, ...]  # extracted, not expected


def parse_row(record: dict[str, Any]) -> Row:
    facts = tuple(
        Fact(str(f["type"]), str(f["value"]), bool(f.get("negated", False)))
        for f in record["facts"]
    )
    language = record.get("language")
    return Row(
        id=str(record["id"]),
        text=str(record["text"]),
        facts=facts,
        language=None if language is None else str(language),
        kind=str(record["kind"]),
        split=str(record["split"]),
    )


def load_rows(path: Path = DATASET, split: str = "all") -> list[Row]:
    """The labelled rows in file order, only those of ``split`` unless it is ``all``."""
    with path.open(encoding="utf-8") as handle:
        rows = [parse_row(json.loads(line)) for line in handle if line.strip()]
    return rows if split == "all" else [r for r in rows if r.split == split]


def normalise_value(value: str) -> str:
    """The form two values are compared in (applied to labels and predictions alike)."""
    text = " ".join(value.casefold().split())
    text = _LEADING_WORD.sub("", text, count=1)
    words = text.split(" ")
    if len(words[-1]) > 3 and words[-1].endswith("s"):
        words[-1] = words[-1][:-1]
    return " ".join(words)


def triple(type_: str, value: str, negated: bool = False) -> Triple:
    return (type_, normalise_value(value), negated)


def expected_triples(row: Row) -> list[Triple]:
    """The row's labels; its written language stands in for an absent language preference."""
    triples = [triple(f.type, f.value, f.negated) for f in row.facts]
    if row.language is not None and not any(f.type == LANGUAGE for f in row.facts):
        triples.append(triple(LANGUAGE, row.language))
    return triples


def predicted_triples(assertions: Iterable[AssertionLike]) -> list[Triple]:
    return [triple(str(a.type), a.value, bool(a.negated)) for a in assertions]


def compare(expected: Sequence[Triple], predicted: Sequence[Triple]) -> dict[str, Counts]:
    """One row's counts per fact type, matching the two multisets of triples."""
    want, got = Counter(expected), Counter(predicted)
    counts: dict[str, Counts] = {}
    for key in sorted(want.keys() | got.keys()):
        hit = min(want[key], got[key])
        figures = counts.setdefault(key[0], Counts())
        figures.tp += hit
        figures.fn += want[key] - hit
        figures.fp += got[key] - hit
    return counts


def score(
    pairs: Iterable[tuple[Sequence[Triple], Sequence[Triple]]],
    types: Sequence[str] = FACT_TYPES,
) -> dict[str, Counts]:
    """Counts per fact type over (expected, predicted) pairs; every type of ``types`` is
    present, and a predicted type outside it gets its own entry."""
    totals = {t: Counts() for t in types}
    for expected, predicted in pairs:
        for type_, figures in compare(expected, predicted).items():
            totals.setdefault(type_, Counts()).add(figures)
    return totals


def micro(counts: dict[str, Counts], exclude: Iterable[str] = ()) -> Counts:
    skip = set(exclude)
    total = Counts()
    for type_, figures in counts.items():
        if type_ not in skip:
            total.add(figures)
    return total


def false_alarm(row: Row, predicted: Sequence[Triple]) -> bool:
    """A row with no labelled fact for which something unexpected was extracted."""
    return not row.facts and bool(Counter(predicted) - Counter(expected_triples(row)))


def false_alarms_by_kind(
    rows: Sequence[Row], predictions: Sequence[Sequence[Triple]]
) -> dict[str, dict[str, int]]:
    """Per kind: rows with no labelled fact, and how many of them raised a false alarm."""
    out: dict[str, dict[str, int]] = {}
    for row, predicted in zip(rows, predictions, strict=True):
        if row.facts:
            continue
        entry = out.setdefault(row.kind, {"rows_without_facts": 0, "false_alarms": 0})
        entry["rows_without_facts"] += 1
        entry["false_alarms"] += int(false_alarm(row, predicted))
    return {kind: out[kind] for kind in sorted(out, key=_kind_order)}


def mistakes(
    rows: Sequence[Row], predictions: Sequence[Sequence[Triple]]
) -> dict[str, list[Mistake]]:
    """Per fact type, the rows where that type has a miss or an extra, in row order."""
    out: dict[str, list[Mistake]] = {}
    for row, predicted in zip(rows, predictions, strict=True):
        expected = expected_triples(row)
        missed = Counter(expected) - Counter(predicted)
        extra = Counter(predicted) - Counter(expected)
        for type_ in sorted({k[0] for k in missed} | {k[0] for k in extra}):
            out.setdefault(type_, []).append(
                Mistake(
                    row,
                    tuple(k for k in sorted(missed.elements()) if k[0] == type_),
                    tuple(k for k in sorted(extra.elements()) if k[0] == type_),
                )
            )
    return out


def _kind_order(kind: str) -> tuple[int, str]:
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), kind)


def run_extractor(
    extract: Callable[[str], Sequence[AssertionLike]], rows: Sequence[Row]
) -> tuple[list[list[Triple]], list[float]]:
    """Every row's predicted triples and the extractor's time on it in microseconds."""
    for row in rows[:WARMUP]:
        extract(row.text)
    predictions: list[list[Triple]] = []
    took: list[float] = []
    for row in rows:
        with Stopwatch() as call:
            assertions = extract(row.text)
        took.append(call.seconds * 1e6)
        predictions.append(predicted_triples(assertions))
    return predictions, took


def _fmt(triples: Sequence[Triple]) -> str:
    return ", ".join(f"{'NOT ' if n else ''}{t}={v!r}" for t, v, n in triples) or "-"


def print_tables(
    counts: dict[str, Counts],
    by_kind: dict[str, Counts],
    alarms: dict[str, dict[str, int]],
    timing: dict[str, float],
) -> None:
    print()
    print("| type | support | tp | fp | fn | precision | recall | F1 |")
    print("|---|---|---|---|---|---|---|---|")
    lines = [*counts.items()]
    lines.append(("**micro, all types**", micro(counts)))
    lines.append(("**micro, all but language**", micro(counts, exclude=[LANGUAGE])))
    for name, c in lines:
        print(
            f"| {name} | {c.support} | {c.tp} | {c.fp} | {c.fn} | "
            f"{c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} |"
        )
    print()
    print("| kind (all but language) | support | tp | fp | fn | precision | recall | F1 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, c in by_kind.items():
        print(
            f"| {name} | {c.support} | {c.tp} | {c.fp} | {c.fn} | "
            f"{c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} |"
        )
    print()
    print("| kind | rows without facts | false alarms |")
    print("|---|---|---|")
    for kind, entry in alarms.items():
        print(f"| {kind} | {entry['rows_without_facts']} | {entry['false_alarms']} |")
    print()
    print(
        f"extractor: {timing['mean_us']:.1f} µs per message mean, {timing['p99_us']:.1f} µs p99 "
        f"({int(timing['messages'])} messages, one at a time, after {WARMUP} warm-up calls)"
    )
    print()


def print_mistakes(found: dict[str, list[Mistake]], limit: int) -> None:
    for type_ in [*FACT_TYPES, *sorted(set(found) - set(FACT_TYPES))]:
        errors = found.get(type_, [])
        if not errors:
            continue
        print(
            f"-- {type_}: {len(errors)} rows with mistakes (first {min(limit, len(errors))}; "
            "values as compared, normalised)"
        )
        for m in errors[:limit]:
            print(f"  {m.row.id} [{m.row.kind}] {m.row.text!r}")
            print(f"      missed: {_fmt(m.missed)}   extra: {_fmt(m.extra)}")
    print()


def main() -> None:
    options = parser(__doc__)
    options.add_argument(
        "--split", choices=[*SPLITS, "all"], default="all", help="which rows to score"
    )
    options.add_argument(
        "--show-errors", type=int, default=0, metavar="N", help="print up to N mistakes per type"
    )
    args = options.parse_args()
    if args.show_errors < 0:
        options.error("--show-errors must be at least 0")

    # only the run needs them
    from rapport.profile.adapters.language import LanguageDetector  # noqa: PLC0415
    from rapport.profile.domain.facts import extract  # noqa: PLC0415

    rows = load_rows(DATASET, args.split)
    print(f"{len(rows)} rows ({args.split}) from {DATASET.relative_to(REPO_ROOT)}")
    detect = LanguageDetector().detect
    predictions, took = run_extractor(partial(extract, detect_language=detect), rows)
    pairs = [(expected_triples(r), p) for r, p in zip(rows, predictions, strict=True)]
    counts = score(pairs)
    by_kind: dict[str, Counts] = {}
    for kind in sorted({r.kind for r in rows}, key=_kind_order):
        chosen = [pair for pair, r in zip(pairs, rows, strict=True) if r.kind == kind]
        by_kind[kind] = micro(score(chosen), exclude=[LANGUAGE])
    alarms = false_alarms_by_kind(rows, predictions)
    timing = {
        "messages": float(len(took)),
        "mean_us": sum(took) / len(took),
        "p99_us": percentile(took, 99),
    }
    print_tables(counts, by_kind, alarms, timing)
    if args.show_errors:
        print_mistakes(mistakes(rows, predictions), args.show_errors)

    write_results(
        "memory_quality",
        [{"type": t, **c.as_dict()} for t, c in counts.items()],
        split=args.split,
        micro={
            "all_types": micro(counts).as_dict(),
            "all_but_language": micro(counts, exclude=[LANGUAGE]).as_dict(),
        },
        by_kind={kind: c.as_dict() for kind, c in by_kind.items()},
        false_alarms=alarms,
        timing={
            "mean_us": round(timing["mean_us"], 2),
            "p99_us": round(timing["p99_us"], 2),
            "messages": len(took),
            "how": f"one message at a time, time.perf_counter, after {WARMUP} warm-up calls; "
            "p99 linear between the closest ranks",
        },
        setup={
            "data": str(DATASET.relative_to(REPO_ROOT)),
            "rows": len(rows),
            "extractor": "rapport.profile.domain.facts.extract(text, "
            "detect_language=LanguageDetector().detect)",
            "language_rule": "explicit preference facts, else the row's written language",
            "normalisation": "casefold, collapse whitespace, strip one leading a/an/the/my/our, "
            "strip one trailing s from a last word longer than 3 characters",
        },
    )


if __name__ == "__main__":
    main()
