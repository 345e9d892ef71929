"""Microsoft Presidio's predefined pattern recognizers over the PII labelled set, offline.

Runs in a venv of its own with ``presidio-analyzer`` (not the project's: it pulls in
spaCy), and imports nothing from Rapport. No model is downloaded or loaded:

- ``recognizers``: each pattern recognizer below called directly,
  ``analyze(text, entities, nlp_artifacts=None)`` (patterns and their validators, e.g.
  Luhn, the IBAN checksum, the NIF check letter; no context words);
- ``engine``: ``AnalyzerEngine`` with a registry of only those recognizers and an NLP
  engine that is spaCy's blank English tokenizer (``spacy.blank("en")``, part of the
  spaCy package, no model), each token's lower case standing in for its lemma, so
  Presidio's context enhancer raises a pattern's score when a context word ("ssn",
  "postcode", ...) is near.

The e-mail recognizer's domain check (tldextract) is pointed at the public suffix list
tldextract ships, so nothing is fetched either. Only recognizers of the set's types run
(a date or URL recognizer would only add redactions the set does not ask for). Every
result is written with its score, and only those at or above ``--threshold`` are kept
(Presidio's default is 0: everything).

    # from the repository root, as a module (run as a script, bench/profile.py would
    # shadow the standard library's profile module, which spaCy's imports reach)
    python3 -m venv /tmp/presidio-venv && /tmp/presidio-venv/bin/pip install presidio-analyzer
    /tmp/presidio-venv/bin/python -m bench.pii_presidio --mode engine --out /tmp/presidio.json
    .venv/bin/python -m bench.pii --presidio-results /tmp/presidio.json
"""

from __future__ import annotations

import argparse
import json
from importlib import metadata
from pathlib import Path
from typing import Any

DATASET = Path(__file__).resolve().parents[1] / "tests" / "data" / "pii_labelled.jsonl"

# Presidio entity -> the set's placeholder label (an IBAN or a bank number is an account).
LABELS = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "card",
    "IBAN_CODE": "account",
    "US_BANK_NUMBER": "account",
    "ABA_ROUTING_NUMBER": "account",
    "US_SSN": "ssn",
    "UK_NINO": "nino",
    "CA_SIN": "sin",
    "IN_AADHAAR": "aadhaar",
    "ES_NIF": "dni",
    "ES_NIE": "nie",
    "UK_POSTCODE": "postcode",
    "CA_POSTAL_CODE": "postcode",
    "DE_PLZ": "postcode",
}
# Recognizer class names in presidio_analyzer.predefined_recognizers, one per entity.
RECOGNIZERS = [
    "EmailRecognizer", "PhoneRecognizer", "CreditCardRecognizer", "IbanRecognizer",
    "UsBankRecognizer", "AbaRoutingRecognizer", "UsSsnRecognizer", "UkNinoRecognizer",
    "CaSinRecognizer", "InAadhaarRecognizer", "EsNifRecognizer", "EsNieRecognizer",
    "UkPostcodeRecognizer", "CaPostalCodeRecognizer", "DePlzRecognizer",
]  # fmt: skip


def recognizers() -> list[Any]:
    # Not in the project's venv (mypy there cannot see them).
    import tldextract  # type: ignore[import-not-found]  # noqa: PLC0415
    from presidio_analyzer import predefined_recognizers  # type: ignore[import-not-found]  # noqa: PLC0415

    # The e-mail recognizer validates the domain with tldextract, which fetches the public
    # suffix list from the network on first use: use the snapshot it ships instead.
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())

    # Every one in English: the Spanish and German ones default to their own language,
    # and the set is mostly English chat.
    return [getattr(predefined_recognizers, name)(supported_language="en") for name in RECOGNIZERS]


def blank_engine() -> Any:
    """An ``NlpEngine`` that tokenizes with spaCy's blank English pipeline (no model)."""
    import spacy  # type: ignore[import-not-found]  # noqa: PLC0415
    from presidio_analyzer.nlp_engine import (  # type: ignore[import-not-found]  # noqa: PLC0415
        NlpArtifacts,
        NlpEngine,
    )

    class BlankEnglish(NlpEngine):  # type: ignore[misc]
        def __init__(self) -> None:
            self.nlp = spacy.blank("en")

        def load(self) -> None:
            return None

        def is_loaded(self) -> bool:
            return True

        def process_text(self, text: str, language: str) -> Any:
            doc = self.nlp(text)
            return NlpArtifacts(
                entities=[],
                tokens=doc,
                tokens_indices=[t.idx for t in doc],
                lemmas=[t.text.lower() for t in doc],
                nlp_engine=self,
                language=language,
            )

        def process_batch(self, texts: Any, language: str, **kwargs: Any) -> Any:
            for text in texts:
                yield text, self.process_text(str(text), language)

        def is_stopword(self, word: str, language: str) -> bool:
            return bool(self.nlp.vocab[word].is_stop)

        def is_punct(self, word: str, language: str) -> bool:
            return bool(self.nlp.vocab[word].is_punct)

        def get_supported_entities(self) -> list[str]:
            return []

        def get_supported_languages(self) -> list[str]:
            return ["en"]

    return BlankEnglish()


def main() -> None:
    options = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    options.add_argument("--mode", choices=["recognizers", "engine"], default="engine")
    options.add_argument("--threshold", type=float, default=0.0, help="keep scores >= this")
    options.add_argument("--out", type=Path, required=True)
    args = options.parse_args()

    rows = [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines()]
    chosen = recognizers()
    entities = sorted(LABELS)
    found: dict[str, list[dict[str, Any]]] = {}
    if args.mode == "recognizers":
        for row in rows:
            results = [r for rec in chosen for r in rec.analyze(row["text"], entities, None)]
            found[row["id"]] = _spans(results, args.threshold)
    else:
        from presidio_analyzer import (  # noqa: PLC0415
            AnalyzerEngine,
            RecognizerRegistry,
        )

        registry = RecognizerRegistry(supported_languages=["en"])
        for recognizer in chosen:
            registry.add_recognizer(recognizer)
        engine = AnalyzerEngine(
            registry=registry, nlp_engine=blank_engine(), supported_languages=["en"]
        )
        for row in rows:
            results = engine.analyze(row["text"], language="en", entities=entities)
            found[row["id"]] = _spans(results, args.threshold)
    version = metadata.version("presidio-analyzer")
    args.out.write_text(
        json.dumps(
            {
                "system": f"presidio-{args.mode}"
                + (f"@{args.threshold:g}" if args.threshold else ""),
                "presidio_analyzer": version,
                "spacy": metadata.version("spacy"),
                "phonenumbers": metadata.version("phonenumbers"),
                "mode": args.mode,
                "threshold": args.threshold,
                "recognizers": RECOGNIZERS,
                "labels": LABELS,
                "rows": found,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"presidio-analyzer {version}, {args.mode}: {len(rows)} rows -> {args.out}")


def _spans(results: list[Any], threshold: float) -> list[dict[str, Any]]:
    """Overlapping results merged the way an anonymizer would replace them: the longer
    span first, then the higher score."""
    kept = sorted(
        (r for r in results if r.score >= threshold),
        key=lambda r: (-(r.end - r.start), -r.score, r.start),
    )
    taken: list[dict[str, Any]] = []
    for r in kept:
        if any(r.start < t["end"] and t["start"] < r.end for t in taken):
            continue
        taken.append(
            {
                "start": r.start,
                "end": r.end,
                "label": LABELS.get(r.entity_type, r.entity_type.lower()),
                "entity": r.entity_type,
                "score": round(float(r.score), 3),
            }
        )
    return sorted(taken, key=lambda t: t["start"])


if __name__ == "__main__":
    main()
