"""A tenant's trending items, derived from its users' recent items: pure logic, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import Field

from rapport.common.scores import significant
from rapport.profile.domain.state import Seen, StateModel, decay


class Trend(StateModel):
    item_id: str
    category: str | None
    weight: float = Field(description="Its votes' worth, relative to one vote cast at as_of.")


class TrendingPool(StateModel):
    """A tenant's most popular items, as of their newest vote.

    Weights are relative to the newest vote, not decayed to a clock: after any
    pause in traffic they keep their order and their ratios, and a read scales
    them to its own time with ``scale_at``.
    """

    as_of: datetime | None = None
    trends: list[Trend] = Field(default_factory=list)

    def scale_at(self, now: datetime, half_life: timedelta) -> float:
        """What one vote cast at ``as_of`` is worth at ``now``."""
        if self.as_of is None:
            return 0.0
        return decay(1.0, max(now - self.as_of, timedelta(0)), half_life)

    def category_weights(self) -> dict[str, float]:
        """Summed weight per category, strongest first (ties by name)."""
        totals: dict[str, float] = {}
        for trend in self.trends:
            if trend.category:
                totals[trend.category] = totals.get(trend.category, 0.0) + trend.weight
        return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def trending(
    recent: Sequence[list[Seen]], now: datetime, half_life: timedelta, limit: int
) -> TrendingPool:
    """Decayed popularity from every user's recent items: one vote per user and item,
    worth less the older it is than the newest vote. Derived from profiles, so it is
    exactly-once with them and an erased user's votes go with their profile.

    A vote dated after ``now`` (a client's clock ahead) counts as cast ``now``.
    """
    newest = max((min(seen.at, now) for items in recent for seen in items), default=None)
    if newest is None:
        return TrendingPool()
    weights: dict[str, float] = {}
    categories: dict[str, str | None] = {}
    for items in recent:
        for seen in items:
            age = newest - min(seen.at, now)
            weights[seen.value] = weights.get(seen.value, 0.0) + decay(1.0, age, half_life)
            categories[seen.value] = seen.category or categories.get(seen.value)
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return TrendingPool(
        as_of=newest,
        trends=[
            Trend(item_id=item, category=categories[item], weight=significant(weight))
            for item, weight in ranked
        ],
    )
