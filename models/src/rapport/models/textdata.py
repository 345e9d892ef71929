"""Reading and checking `text,intent` CSV files (any team's, not only CLINC150)."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

OOS_LABEL = "oos"
MAX_TEXT_CHARS = 2000


class CsvError(ValueError):
    """A CSV a user brought is unusable; the message names the file, row and column."""


@dataclass(frozen=True)
class Labelled:
    texts: list[str]
    intents: list[str]

    @property
    def in_scope_labels(self) -> list[str]:
        return sorted({i for i in self.intents if i != OOS_LABEL})


def _reader(path: Path, required: tuple[str, ...]) -> tuple[list[dict[str, str]], list[str]]:
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise CsvError(f"{path}: cannot read: {exc.strerror}") from exc
    with handle:
        try:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            missing = [c for c in required if c not in header]
            if missing:
                raise CsvError(
                    f"{path}: row 1 (header): missing column(s) {', '.join(missing)}; "
                    f"found {header or 'no header'}, need {', '.join(required)}"
                )
            rows = list(reader)
        except UnicodeDecodeError as exc:
            raise CsvError(f"{path}: not UTF-8 text ({exc.reason})") from exc
        except csv.Error as exc:
            raise CsvError(f"{path}: row {reader.line_num}: {exc}") from exc
    return rows, header


def _text(path: Path, row_number: int, row: Mapping[str, str | None]) -> str:
    text = (row.get("text") or "").strip()
    if not text:
        raise CsvError(f"{path}: row {row_number}, column text: empty")
    if len(text) > MAX_TEXT_CHARS:
        raise CsvError(
            f"{path}: row {row_number}, column text: {len(text)} characters "
            f"(at most {MAX_TEXT_CHARS})"
        )
    return text


def read_labelled(*paths: Path) -> Labelled:
    """Training/evaluation CSVs, concatenated: columns `text`, `intent` (`oos`: out of scope)."""
    texts, intents = [], []
    for path in paths:
        rows, _ = _reader(path, ("text", "intent"))
        for n, row in enumerate(rows, start=2):  # row 1 is the header
            if None in row:
                raise CsvError(f"{path}: row {n}: more fields than the header has columns")
            texts.append(_text(path, n, row))
            intent = (row.get("intent") or "").strip()
            if not intent:
                raise CsvError(f"{path}: row {n}, column intent: empty")
            intents.append(intent)
    if len({i for i in intents if i != OOS_LABEL}) < 2:
        names = ", ".join(str(p) for p in paths)
        raise CsvError(f"{names}: column intent: need at least two in-scope intents")
    return Labelled(texts, intents)


def read_texts(path: Path) -> list[str]:
    """A CSV to label: a `text` column (other columns are ignored)."""
    rows, _ = _reader(path, ("text",))
    return [_text(path, n, row) for n, row in enumerate(rows, start=2)]
