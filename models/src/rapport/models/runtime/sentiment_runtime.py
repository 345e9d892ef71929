"""Message sentiment at serve time: VADER (Hutto & Gilbert 2014), a rule-based lexicon model.

No labelled sentiment data is available offline, so nothing is trained: VADER's
compound score in [-1, 1] is the score, and its authors' thresholds (+-0.05)
give the label.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

POSITIVE_FROM = 0.05
NEGATIVE_TO = -0.05


@dataclass(frozen=True)
class Sentiment:
    label: str  # "negative" | "neutral" | "positive"
    score: float  # VADER compound, in [-1, 1]


def label_of(score: float) -> str:
    if score >= POSITIVE_FROM:
        return "positive"
    if score <= NEGATIVE_TO:
        return "negative"
    return "neutral"


class SentimentModel:
    def __init__(self) -> None:
        self.analyzer = SentimentIntensityAnalyzer()  # reads its lexicon from the package

    def predict(self, text: str) -> Sentiment:
        score = float(self.analyzer.polarity_scores(text)["compound"])
        return Sentiment(label_of(score), score)
