"""The knowledge-quality bench's pure parts: the FAQ base, the ranking metrics, the threshold."""

from __future__ import annotations

import numpy as np
import pytest

from bench.knowledge_quality import (
    Example,
    answering,
    as_sentence,
    best_f1,
    build_faq,
    choose_threshold,
    chunk_documents,
    document_scores,
    fuse,
    held_out,
    mean_reciprocal_rank,
    ranks,
    recall_at,
    tokenize,
)

pytestmark = pytest.mark.unit

DATA = [
    Example("book a flight to paris", "book_flight"),
    Example("what is my balance?", "balance"),
    Example("fly me to rome", "book_flight"),
    Example("tell me a joke", "oos"),
    Example("how much money do i have", "balance"),
    Example("I need a plane ticket!", "book_flight"),
    Example("is it raining on mars", "oos"),
]


def test_the_faq_has_one_document_per_in_scope_intent_of_its_first_utterances() -> None:
    documents = build_faq(DATA, per_doc=2)
    assert [d.doc_id for d in documents] == ["balance", "book_flight"]
    assert documents[1].title == "book flight"
    assert documents[1].text == "book a flight to paris. fly me to rome."
    assert documents[0].text == "what is my balance? how much money do i have."
    assert as_sentence("  wow!  ") == "wow!"
    chunks = chunk_documents(documents)
    assert chunks.texts == [
        "balance. what is my balance? how much money do i have.",
        "book flight. book a flight to paris. fly me to rome.",
    ]
    assert chunks.starts.tolist() == [0, 1]


def test_tuning_queries_are_the_utterances_after_the_documents_and_every_oos() -> None:
    tuning = held_out(DATA, per_doc=2, count=5)
    assert tuning == [
        Example("I need a plane ticket!", "book_flight"),
        Example("tell me a joke", "oos"),
        Example("is it raining on mars", "oos"),
    ]
    assert held_out(DATA, per_doc=1, count=1)[:2] == [
        Example("how much money do i have", "balance"),
        Example("fly me to rome", "book_flight"),
    ]
    assert tokenize("What's my Balance?") == ["what", "s", "my", "balance"]


def test_a_document_scores_its_best_chunk() -> None:
    chunk_scores = np.array([[0.1, 0.9, 0.2, 0.3, 0.5], [0.4, 0.0, 0.8, 0.1, 0.2]])
    starts = np.array([0, 2, 4])  # documents of chunks 0-1, 2-3 and 4
    assert document_scores(chunk_scores, starts).tolist() == [[0.9, 0.3, 0.5], [0.4, 0.8, 0.2]]
    assert document_scores(chunk_scores[0], starts).tolist() == [0.9, 0.3, 0.5]


def test_recall_at_k_and_mrr_from_the_right_documents_rank() -> None:
    scores = np.array(
        [
            [0.9, 0.1, 0.2, 0.0],  # right doc 0: rank 1
            [0.5, 0.4, 0.6, 0.1],  # right doc 1: rank 3
            [0.2, 0.3, 0.1, 0.8],  # right doc 2: rank 4
            [0.5, 0.5, 0.1, 0.0],  # right doc 0, tied with doc 1: rank 2
        ]
    )
    rank = ranks(scores, np.array([0, 1, 2, 0]))
    assert rank.tolist() == [1, 3, 4, 2]
    assert recall_at(rank, 1) == 0.25
    assert recall_at(rank, 3) == 0.75
    assert recall_at(rank, 4) == 1.0
    assert mean_reciprocal_rank(rank) == pytest.approx((1 + 1 / 3 + 1 / 4 + 1 / 2) / 4)


def test_fusion_adds_reciprocal_ranks() -> None:
    first = np.array([[0.9, 0.5, 0.1]])  # ranks 1, 2, 3
    second = np.array([[1.0, 7.0, 3.0]])  # ranks 3, 1, 2
    fused = fuse(first, second, k=0)
    assert fused[0].tolist() == pytest.approx([1 + 1 / 3, 1 / 2 + 1, 1 / 3 + 1 / 2])
    assert int(fused.argmax()) == 1


def test_answering_counts_oos_answers_as_wrong_and_recall_over_in_scope() -> None:
    best = np.array([0.9, 0.8, 0.6, 0.4, 0.7, 0.2])
    correct = np.array([True, False, True, True, False, False])
    in_scope = np.array([True, True, True, True, False, False])
    at = answering(best, correct, in_scope, 0.5)
    # answered: 0.9 (right), 0.8 (wrong doc), 0.6 (right), 0.7 (oos): 2 of 4 right
    assert at.precision == 0.5
    assert at.recall == 0.5  # 2 of the 4 in-scope queries
    assert at.f1 == 0.5
    assert at.oos_answered == 0.5
    nothing = answering(best, correct, in_scope, 0.95)
    assert (nothing.precision, nothing.recall, nothing.f1, nothing.oos_answered) == (0, 0, 0, 0)
    assert answering(best[:4], correct[:4], in_scope[:4], 0.5).oos_answered is None


def test_the_threshold_is_the_grid_value_of_best_f1() -> None:
    best = np.array([0.9, 0.8, 0.7, 0.65, 0.55, 0.45, 0.6, 0.35])
    correct = np.array([True, True, True, False, True, False, False, False])
    in_scope = np.array([True, True, True, True, True, True, False, False])
    grid = [0.3, 0.4, 0.5, 0.6, 0.7]
    # t=0.3: 4 right of 8 answered, recall 4/6, F1 0.571; t=0.4: 4/7, F1 0.615;
    # t=0.5: 4/6, F1 0.667; t=0.6: 3/5, 3/6, F1 0.545; t=0.7: 3/3, 3/6, F1 0.667 (a tie).
    chosen = best_f1(best, correct, in_scope, grid)
    assert chosen.threshold == 0.5  # the lower of the tied best
    assert chosen.f1 == pytest.approx(2 / 3)
    assert chosen.oos_answered == 0.5
    assert best_f1(best, correct, in_scope, [0.7]).threshold == 0.7


def test_the_threshold_is_the_lowest_that_reaches_the_precision_target() -> None:
    best = np.array([0.9, 0.8, 0.7, 0.65, 0.55, 0.45, 0.6, 0.35])
    correct = np.array([True, True, True, False, True, False, False, False])
    in_scope = np.array([True, True, True, True, True, True, False, False])
    grid = [0.3, 0.4, 0.5, 0.6, 0.7]
    # Precision by t: 0.5, 0.571, 0.667, 0.6, 1.0.
    assert choose_threshold(best, correct, in_scope, 0.65, grid).threshold == 0.5
    assert choose_threshold(best, correct, in_scope, 0.9, grid).threshold == 0.7
    # Out of reach: the most precise threshold.
    assert choose_threshold(best[:4], correct[:4] & False, in_scope[:4], 0.9, grid).precision == 0
