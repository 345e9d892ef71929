from __future__ import annotations

import math

import pytest

from rapport.common.scores import normalised, significant

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3.0, 3.0),
        (0.1234567, 0.123457),
        (123456.789, 123457.0),
        (2.0**-60, 8.67362e-19),
        (0.0, 0.0),
        (-1.23456789e-30, -1.23457e-30),
    ],
)
def test_significant_keeps_six_digits_however_small(value: float, expected: float) -> None:
    assert significant(value) == expected


def test_normalised_puts_the_top_at_one_in_the_same_order() -> None:
    scores = {"b": 2.0**-70, "a": 3 * 2.0**-70, "c": 2.0**-80}
    assert normalised(scores) == {
        "b": pytest.approx(1 / 3, rel=1e-5),
        "a": 1.0,
        "c": pytest.approx(2.0**-10 / 3, rel=1e-5),
    }
    assert list(normalised(scores)) == ["b", "a", "c"]


@pytest.mark.parametrize(
    "scores", [{}, {"a": 0.0}, {"a": 0.0, "b": -1.0}, {"a": math.inf}, {"a": math.nan}]
)
def test_normalised_is_empty_with_nothing_to_scale_against(scores: dict[str, float]) -> None:
    assert normalised(scores) == {}
