"""The fact extractor's labelled set is well formed, and bench/memory_quality.py scores right."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from bench.memory_quality import (
    DATASET,
    KINDS,
    LANGUAGE,
    SPLITS,
    Counts,
    Fact,
    Row,
    expected_triples,
    false_alarm,
    false_alarms_by_kind,
    load_rows,
    micro,
    mistakes,
    normalise_value,
    score,
    triple,
)
from rapport.common.contracts import FACT_TYPES

pytestmark = pytest.mark.unit

RECORDS = [
    json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip()
]
ROWS = load_rows()

DIETS = {
    "vegetarian",
    "vegan",
    "pescatarian",
    "halal",
    "kosher",
    "gluten-free",
    "dairy-free",
    "keto",
    "paleo",
    "low-carb",
}
BUDGET = re.compile(r"^\d+(\.\d+)? [A-Z]{3}$|^\d+(\.\d+)?$")
LANGUAGE_CODE = re.compile(r"^[a-z]{2}$")
NUMBER_WORDS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"}
PII = re.compile(
    r"[\w.+-]+@[\w-]+\.[\w.]+"  # an email address
    r"|\+?\(?\d[\d ()-]{6,}\d"  # a phone, card, IBAN or order digits
)
MINIMUM_PER_KIND = {
    "negation": 40,
    "hypothetical": 25,
    "question": 30,
    "third_party": 20,
    "distractor": 60,
}


def test_every_row_has_exactly_the_fields_and_a_unique_id_and_text() -> None:
    fields = {"id", "text", "facts", "language", "kind", "split"}
    assert all(set(record) == fields for record in RECORDS)
    assert all(set(f) == {"type", "value", "negated"} for r in RECORDS for f in r["facts"])
    assert all(isinstance(f["negated"], bool) for r in RECORDS for f in r["facts"])
    assert all(re.fullmatch(r"m\d{3,}", r["id"]) for r in RECORDS)
    assert len({r["id"] for r in RECORDS}) == len(RECORDS)
    assert len({r["text"] for r in RECORDS}) == len(RECORDS)
    assert all(r.text.strip() == r.text and r.text for r in ROWS)


def test_types_kinds_splits_and_languages_are_from_their_lists() -> None:
    assert {f.type for r in ROWS for f in r.facts} <= set(FACT_TYPES)
    assert {r.kind for r in ROWS} == set(KINDS)
    assert {r.split for r in ROWS} == set(SPLITS)
    for row in ROWS:
        assert row.language is None or LANGUAGE_CODE.fullmatch(row.language), row.id
        if len(row.text.split()) < 3:
            assert row.language is None, f"{row.id}: fewer than 3 words has no language"


def test_the_set_is_big_enough_in_every_kind_and_type() -> None:
    assert len(ROWS) >= 330
    kinds = Counter(r.kind for r in ROWS)
    for kind, least in MINIMUM_PER_KIND.items():
        assert kinds[kind] >= least, kind
    assert 20 <= kinds["non_english"] <= 40
    positive = Counter(t for r in ROWS for t in {f.type for f in r.facts if not f.negated})
    for type_ in FACT_TYPES:
        assert positive[type_] >= (10 if type_ == LANGUAGE else 20), type_
    non_english = {r.language for r in ROWS if r.kind == "non_english"}
    assert {"fr", "de", "es", "it", "pt", "nl"} <= non_english


def test_each_kind_holds_what_its_name_says() -> None:
    for row in ROWS:
        negated = [f for f in row.facts if f.negated]
        if row.kind == "plain":
            assert len(row.facts) == 1, row.id
            assert not negated, row.id
        elif row.kind == "multi":
            assert len(row.facts) >= 2, row.id
            assert not negated, row.id
        elif row.kind == "negation":
            assert negated, row.id
        elif row.kind == "distractor":
            assert not row.facts, row.id
        elif row.kind == "non_english":
            assert row.language != "en", row.id
        elif row.kind == "pii":
            assert PII.search(row.text), row.id
        else:  # the traps: facts only from a separate plain statement, and never retracted
            assert not negated, row.id
    for kind in ("hypothetical", "question", "third_party"):
        chosen = [r for r in ROWS if r.kind == kind]
        assert sum(not r.facts for r in chosen) >= 0.8 * len(chosen), kind


def test_the_split_takes_every_second_row_of_each_kind_for_test() -> None:
    for kind in KINDS:
        splits = [r.split for r in ROWS if r.kind == kind]
        assert splits == [SPLITS[i % 2] for i in range(len(splits))], kind
    share = sum(r.split == "test" for r in ROWS) / len(ROWS)
    assert 0.45 <= share <= 0.55


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_every_label_follows_the_normalisation_rules(row: Row) -> None:
    for fact in row.facts:
        value = fact.value
        assert value, row.id
        assert value == " ".join(value.split()), row.id
        if fact.type == "diet":
            assert value in DIETS
        elif fact.type == "budget":
            assert BUDGET.fullmatch(value)
            assert not re.match(r"^0\d|.*\.\d*0\b", value), "no leading zero, no zero decimals"
        elif fact.type == "language":
            assert LANGUAGE_CODE.fullmatch(value)
        elif fact.type == "location":
            assert all(word[0].isupper() for word in value.split() if word[0].isalpha())
        else:  # allergy, household, owns, likes, dislikes: lowercase, no article or number word
            assert value == value.lower()
            first = value.split()[0]
            assert first not in {"a", "an", "the", "my", "our", "his", "her", "their"}
            assert first not in NUMBER_WORDS, "numbers as digits"


def test_values_are_compared_casefolded_without_article_or_plural_s() -> None:
    assert normalise_value("  The   Kindle ") == "kindle"
    assert normalise_value("My  Two Kids") == "two kid"
    assert normalise_value("2 kids") == normalise_value("2 Kid") == "2 kid"
    assert normalise_value("an air fryer") == "air fryer"
    assert normalise_value("our dog") == "dog"
    assert normalise_value("peanuts") == normalise_value("peanut")
    assert normalise_value("50 EUR") == "50 eur"  # a last word of 3 characters keeps its s
    assert normalise_value("gas") == "gas"
    assert normalise_value("the") == "the"
    assert normalise_value("Straße") == "strasse"


def test_the_written_language_is_expected_unless_a_preference_is_stated() -> None:
    written = Row(
        "x1", "ich wohne in Hamburg", (Fact("location", "Hamburg"),), "de", "plain", "dev"
    )
    assert expected_triples(written) == [("location", "hamburg", False), ("language", "de", False)]
    preferred = Row(
        "x2", "answer in French please", (Fact("language", "fr"),), "en", "plain", "dev"
    )
    assert expected_triples(preferred) == [("language", "fr", False)]
    short = Row("x3", "hi", (), None, "distractor", "dev")
    assert expected_triples(short) == []


def test_scoring_counts_a_multiset_of_type_value_and_negation() -> None:
    expected = [
        triple("diet", "vegetarian"),
        triple("household", "2 kids"),
        triple("household", "dog"),
        triple("location", "Berlin", negated=True),
        triple("language", "en"),
    ]
    predicted = [
        triple("diet", "Vegetarian"),  # tp (case)
        triple("household", "2 kid"),  # tp (plural)
        triple("household", "the dog"),  # tp (article)
        triple("household", "dog"),  # fp: the dog only once
        triple("location", "Berlin"),  # fp and a fn: the negation is wrong
        triple("likes", "jazz"),  # fp
        # language missed: fn
    ]
    counts = score([(expected, predicted)])
    assert list(counts) == list(FACT_TYPES)

    def figures(c: Counts) -> tuple[int, int, int]:
        return (c.tp, c.fp, c.fn)

    assert figures(counts["diet"]) == (1, 0, 0)
    assert figures(counts["household"]) == (2, 1, 0)
    assert figures(counts["location"]) == (0, 1, 1)
    assert figures(counts["likes"]) == (0, 1, 0)
    assert figures(counts["language"]) == (0, 0, 1)
    assert figures(counts["budget"]) == (0, 0, 0)
    total = micro(counts)
    assert figures(total) == (3, 3, 2)
    assert figures(micro(counts, exclude=[LANGUAGE])) == (3, 3, 1)
    assert total.precision == 0.5
    assert total.recall == 0.6
    assert total.f1 == pytest.approx(6 / 11)
    assert total.support == 5
    assert counts["budget"].precision == counts["budget"].recall == counts["budget"].f1 == 0.0


def test_scores_add_up_over_rows_and_keep_an_unknown_predicted_type() -> None:
    first = ([triple("diet", "vegan")], [triple("diet", "vegan")])
    second = ([triple("diet", "vegan")], [triple("mood", "happy")])
    counts = score([first, second], types=["diet"])
    assert (counts["diet"].tp, counts["diet"].fn) == (1, 1)
    assert (counts["mood"].fp, counts["mood"].support) == (1, 0)


def test_a_false_alarm_is_something_unexpected_on_a_row_without_facts() -> None:
    question = Row("q1", "is this vegan?", (), "en", "question", "dev")
    fact = Row("p1", "I'm vegan, thanks", (Fact("diet", "vegan"),), "en", "plain", "dev")
    assert not false_alarm(question, [triple("language", "en")])
    assert false_alarm(question, [triple("diet", "vegan")])
    assert false_alarm(question, [triple("language", "fr")])
    assert not false_alarm(fact, [triple("likes", "thanks")])  # a mistake, not a false alarm
    alarms = false_alarms_by_kind(
        [question, fact, question], [[triple("diet", "vegan")], [], [triple("language", "en")]]
    )
    assert alarms == {"question": {"rows_without_facts": 2, "false_alarms": 1}}
    found = mistakes([fact], [[triple("diet", "vegan", negated=True), triple("language", "en")]])
    assert list(found) == ["diet"]
    assert found["diet"][0].missed == (("diet", "vegan", False),)
    assert found["diet"][0].extra == (("diet", "vegan", True),)
