"""Recall and precision of the chat PII redaction on a labelled set, before and after issue 29.

No servers. Every row of ``tests/data/pii_labelled.jsonl`` (built by
``tests/data/build_pii_labelled.py``, method in ``tests/data/pii_labelled.md``) is
redacted by:

- ``before``: ``services/profile/src/rapport/profile/domain/pii.py`` as it was at commit
  ``BEFORE_COMMIT`` (read with ``git show``, run as a module of its own);
- ``after``: the installed ``rapport.profile.domain.pii``;
- ``presidio`` (with ``--presidio-results FILE``): Microsoft Presidio's predefined
  pattern recognizers, run by ``bench/pii_presidio.py`` in a venv of their own.

The redacted text is aligned back onto the original (what lies between two placeholders
is copied verbatim), which gives each redaction's span and label. Then, per split:

- per labelled type: support, ``recall`` (labelled spans wholly covered by redactions),
  ``label_right`` (covered by redactions that all carry the type's own label);
- per predicted label: redactions, ``precision`` (redactions that overlap a labelled
  span / all redactions of that label);
- look-alike rows (nothing labelled) that were changed at all;
- µs per message (mean, after a warm-up; indicative only, not a timing claim).

Writes ``bench/results/pii.json``.

    .venv/bin/python -m bench.pii [--presidio-results FILE] [--show-errors N]
"""

from __future__ import annotations

import json
import re
import subprocess
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.options import parser
from bench.results_file import write_results
from bench.stats import Stopwatch

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET = REPO_ROOT / "tests" / "data" / "pii_labelled.jsonl"
PII_MODULE = "services/profile/src/rapport/profile/domain/pii.py"
# The last commit before issue 29 changed the redaction.
BEFORE_COMMIT = "a4ea6158ef5735983b3807b14edc459af856a19d"
SPLITS = ("dev", "test")
TYPES = (
    "email", "phone", "card", "iban", "account", "secret", "token", "address", "postcode",
    "ssn", "nino", "sin", "aadhaar", "dni", "nie",
)  # fmt: skip
# The placeholder each labelled type should become (an IBAN is an account number).
EXPECTED_LABEL = {t: t for t in TYPES} | {"iban": "account"}
WARMUP = 20
_PLACEHOLDER = re.compile(r"\[([a-z]+)\]")

Redact = Callable[[str], str]


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class Row:
    id: str
    text: str
    spans: tuple[Span, ...]  # labelled: label is the type
    kind: str
    split: str


def load_rows(path: Path = DATASET, split: str = "all") -> list[Row]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record = json.loads(line)
            spans = tuple(
                Span(int(s["start"]), int(s["end"]), str(s["type"])) for s in record["spans"]
            )
            rows.append(
                Row(
                    str(record["id"]),
                    str(record["text"]),
                    spans,
                    str(record["kind"]),
                    str(record["split"]),
                )
            )
    return rows if split == "all" else [r for r in rows if r.split == split]


def aligned(original: str, redacted: str, labels: Iterable[str]) -> list[Span]:
    """Where each placeholder of ``redacted`` stands in ``original``: the text between two
    placeholders is copied unchanged, so a pattern of those literals finds the gaps."""
    known = set(labels)
    parts: list[str] = []
    found: list[str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(redacted):
        if m.group(1) not in known or m.group() in original:
            continue
        parts.append(re.escape(redacted[pos : m.start()]))
        found.append(m.group(1))
        pos = m.end()
    if not found:
        return []
    pattern = "(.+?)".join(parts) + "(.+?)" + re.escape(redacted[pos:])
    gaps = re.fullmatch(pattern, original, re.DOTALL)
    if gaps is None:
        raise ValueError(f"redaction does not align: {original!r} -> {redacted!r}")
    return [Span(gaps.start(i + 1), gaps.end(i + 1), label) for i, label in enumerate(found)]


@dataclass
class TypeCounts:
    support: int = 0
    covered: int = 0
    label_right: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "support": self.support,
            "covered": self.covered,
            "recall": round(self.covered / self.support, 4) if self.support else None,
            "label_right": self.label_right,
            "label_accuracy": round(self.label_right / self.support, 4) if self.support else None,
        }


@dataclass
class LabelCounts:
    redactions: int = 0
    hits: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "redactions": self.redactions,
            "hits": self.hits,
            "precision": round(self.hits / self.redactions, 4) if self.redactions else None,
        }


@dataclass
class Score:
    types: dict[str, TypeCounts] = field(default_factory=dict)
    labels: dict[str, LabelCounts] = field(default_factory=dict)
    lookalikes: int = 0
    lookalikes_touched: int = 0
    touched_ids: list[str] = field(default_factory=list)
    missed: dict[str, list[str]] = field(default_factory=dict)  # type: row ids

    @property
    def micro(self) -> dict[str, Any]:
        support = sum(t.support for t in self.types.values())
        hit = sum(t.covered for t in self.types.values())
        redactions = sum(c.redactions for c in self.labels.values())
        hits = sum(c.hits for c in self.labels.values())
        return {
            "support": support,
            "recall": round(hit / support, 4) if support else None,
            "redactions": redactions,
            "precision": round(hits / redactions, 4) if redactions else None,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "per_type": {t: c.as_dict() for t, c in self.types.items()},
            "per_label": {label: c.as_dict() for label, c in sorted(self.labels.items())},
            "micro": self.micro,
            "lookalikes": self.lookalikes,
            "lookalikes_touched": self.lookalikes_touched,
            "lookalikes_touched_ids": self.touched_ids,
        }


def score(rows: Sequence[Row], predicted: Mapping[str, Sequence[Span]]) -> Score:
    out = Score(types={t: TypeCounts() for t in TYPES})
    for row in rows:
        spans = list(predicted.get(row.id, ()))
        for labelled in row.spans:
            counts = out.types.setdefault(labelled.label, TypeCounts())
            counts.support += 1
            chars = [i for i in range(labelled.start, labelled.end) if not row.text[i].isspace()]
            inside = [p for p in spans if p.overlaps(labelled)]
            if all(any(p.start <= i < p.end for p in inside) for i in chars):
                counts.covered += 1
                if all(p.label == EXPECTED_LABEL.get(labelled.label) for p in inside):
                    counts.label_right += 1
            else:
                out.missed.setdefault(labelled.label, []).append(row.id)
        for p in spans:
            label = out.labels.setdefault(p.label, LabelCounts())
            label.redactions += 1
            label.hits += any(p.overlaps(labelled) for labelled in row.spans)
        if not row.spans:
            out.lookalikes += 1
            if spans:
                out.lookalikes_touched += 1
                out.touched_ids.append(row.id)
    return out


def load_module(source: str, name: str) -> types.ModuleType:
    """``source`` run as a module of its own (the redaction as it was at a commit)."""
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module


def before_module(commit: str = BEFORE_COMMIT) -> types.ModuleType:
    source = subprocess.run(  # noqa: S603 - fixed argv
        ["git", "show", f"{commit}:{PII_MODULE}"],  # noqa: S607 - git on PATH
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return load_module(source, "pii_before")


def run_redact(
    redact: Redact, labels: Iterable[str], rows: Sequence[Row]
) -> tuple[dict[str, list[Span]], dict[str, str], float]:
    """Every row's redactions, its redacted text, and the mean µs per message."""
    known = [label.strip("[]") for label in labels]
    for row in rows[:WARMUP]:
        redact(row.text)
    spans: dict[str, list[Span]] = {}
    texts: dict[str, str] = {}
    took = 0.0
    for row in rows:
        with Stopwatch() as call:
            out = redact(row.text)
        took += call.seconds
        texts[row.id] = out
        spans[row.id] = aligned(row.text, out, known)
    return spans, texts, took / len(rows) * 1e6


def load_presidio(path: Path) -> tuple[dict[str, list[Span]], dict[str, Any]]:
    document = json.loads(path.read_text(encoding="utf-8"))
    spans = {
        row_id: [Span(int(s["start"]), int(s["end"]), str(s["label"])) for s in found]
        for row_id, found in document["rows"].items()
    }
    return spans, {k: v for k, v in document.items() if k != "rows"}


def print_table(title: str, scores: Mapping[str, Score]) -> None:
    names = list(scores)
    print(f"\n{title}")
    print("| type | support | " + " | ".join(f"{n} recall (label right)" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for t in TYPES:
        support = next(iter(scores.values())).types[t].support
        cells = []
        for n in names:
            c = scores[n].types[t]
            cells.append(
                f"{c.covered / c.support:.2f} ({c.label_right / c.support:.2f})"
                if c.support
                else "-"
            )
        print(f"| {t} | {support} | " + " | ".join(cells) + " |")
    print("| **micro** | " + str(next(iter(scores.values())).micro["support"]) + " | "
          + " | ".join(f"{scores[n].micro['recall']:.2f}" for n in names) + " |")  # fmt: skip
    labels = sorted({label for s in scores.values() for label in s.labels})
    print()
    print("| predicted label | " + " | ".join(f"{n} precision (n)" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for label in labels:
        cells = []
        for n in names:
            made = scores[n].labels.get(label)
            cells.append(f"{made.hits / made.redactions:.2f} ({made.redactions})" if made else "-")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| **all** | " + " | ".join(
        f"{scores[n].micro['precision']:.2f} ({scores[n].micro['redactions']})" for n in names
    ) + " |")  # fmt: skip
    print()
    for n in names:
        s = scores[n]
        print(f"{n}: look-alikes touched {s.lookalikes_touched}/{s.lookalikes} {s.touched_ids}")


def print_errors(rows: Sequence[Row], score_: Score, texts: Mapping[str, str], limit: int) -> None:
    by_id = {r.id: r for r in rows}
    for type_, ids in score_.missed.items():
        print(f"-- missed {type_}: {len(ids)}")
        for row_id in ids[:limit]:
            print(f"   {row_id} {by_id[row_id].text!r} -> {texts[row_id]!r}")
    for row_id in score_.touched_ids[:limit]:
        print(f"-- look-alike touched {row_id} {by_id[row_id].text!r} -> {texts[row_id]!r}")


def main() -> None:
    options = parser(__doc__)
    options.add_argument(
        "--presidio-results",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="spans from bench/pii_presidio.py (run in a venv with presidio-analyzer); "
        "may be given more than once",
    )
    options.add_argument(
        "--show-errors", type=int, default=0, metavar="N", help="print up to N mistakes"
    )
    options.add_argument("--before", default=BEFORE_COMMIT, help="commit of the old redaction")
    args = options.parse_args()

    from rapport.profile.domain import pii  # noqa: PLC0415 - only the run needs it

    rows = load_rows()
    print(f"{len(rows)} rows from {DATASET.relative_to(REPO_ROOT)}")
    old = before_module(args.before)
    runs: dict[str, dict[str, list[Span]]] = {}
    texts: dict[str, dict[str, str]] = {}
    timing: dict[str, float] = {}
    for name, module in (("before", old), ("after", pii)):
        runs[name], texts[name], timing[name] = run_redact(module.redact, module.PLACEHOLDERS, rows)
    presidio_setup: dict[str, Any] = {}
    for path in args.presidio_results:
        spans, setup = load_presidio(path)
        runs[setup["system"]] = spans
        presidio_setup[setup["system"]] = setup

    results: dict[str, dict[str, Any]] = {}
    for split in (*SPLITS, "all"):
        chosen = rows if split == "all" else [r for r in rows if r.split == split]
        scores = {name: score(chosen, spans) for name, spans in runs.items()}
        results[split] = {name: s.as_dict() for name, s in scores.items()}
        print_table(f"== split: {split} ({len(chosen)} rows)", scores)
        if args.show_errors and split == "dev":
            for name in ("before", "after"):
                print(f"\n## {name}, dev")
                print_errors(chosen, scores[name], texts[name], args.show_errors)
    print(
        "\nµs per message (mean, one at a time, after a warm-up; indicative): "
        + ", ".join(f"{n} {v:.1f}" for n, v in timing.items())
    )
    write_results(
        "pii",
        [
            {"system": name, "split": split, **figures}
            for split, by_system in results.items()
            for name, figures in by_system.items()
        ],
        setup={
            "data": str(DATASET.relative_to(REPO_ROOT)),
            "rows": len(rows),
            "before": f"git show {args.before}:{PII_MODULE}",
            "after": "rapport.profile.domain.pii (this checkout)",
            "presidio": presidio_setup or None,
            "recall": "labelled spans whose every non-space character is inside a redaction",
            "label_right": "covered, and every redaction over it carries the type's own label "
            "(iban: account)",
            "precision": "redactions that overlap a labelled span / all redactions",
        },
        timing_us_per_message={n: round(v, 2) for n, v in timing.items()},
    )


if __name__ == "__main__":
    main()
