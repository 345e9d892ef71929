"""Pure decisions: how history is weighted, Thompson sampling over a few arms, and the
catalogue overlay (new items, and which of them a ranking considers).

Bandit: from explicit feedback counts.

Each arm's chance of a good rating has a Beta(1 + successes, 1 + failures)
posterior; every choice draws once from each and takes the best draw. An arm
with little evidence draws widely, so it keeps being tried until the evidence
settles it; a clearly better arm wins almost every draw. The counts come from
the profile service (``GET /v1/feedback/arms``), which sums `feedback` events
exactly once, so every replica of this service learns from the same evidence.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rapport.common.catalog import CatalogDelete, CatalogUpsert


@dataclass(frozen=True)
class ArmEvidence:
    successes: int = 0
    failures: int = 0


class ThompsonSampler:
    def __init__(self, arms: Sequence[str], rng: random.Random | None = None) -> None:
        if not arms:
            raise ValueError("a bandit needs at least one arm")
        self.arms = tuple(arms)
        self.rng = rng or random.Random()  # noqa: S311 - sampling, not secrets
        self.evidence: dict[str, ArmEvidence] = {arm: ArmEvidence() for arm in self.arms}

    def update(self, counts: Mapping[str, ArmEvidence]) -> None:
        """Replace the evidence with fresh totals; arms not listed have none yet."""
        self.evidence = {arm: counts.get(arm, ArmEvidence()) for arm in self.arms}

    def choose(self) -> str:
        draws = {
            arm: self.rng.betavariate(1 + ev.successes, 1 + ev.failures)
            for arm, ev in self.evidence.items()
        }
        return max(draws, key=draws.__getitem__)

    def expected(self) -> dict[str, float]:
        """Posterior mean success rate per arm (for logs and the README)."""
        return {
            arm: (1 + ev.successes) / (2 + ev.successes + ev.failures)
            for arm, ev in self.evidence.items()
        }


def history_weights(count: int, decay: float) -> list[float]:
    """The newest item weighs 1, each older one ``decay`` times the previous."""
    return [decay**i for i in range(count)]


# ---- the catalogue overlay: items the served model was not trained on ------------------


@dataclass(frozen=True)
class NewItem:
    """A catalogue item the model does not know: Triton scores it by its categories."""

    item_id: str
    title: str
    categories: tuple[str, ...]
    published_at: datetime


@dataclass
class _TenantCatalog:
    # Each dict is in the order of the items' latest upserts, so the newest is last.
    items: dict[str, NewItem] = field(default_factory=dict)
    by_category: dict[str, dict[str, NewItem]] = field(default_factory=dict)
    retracted: set[str] = field(default_factory=set)  # known items the tenant deleted

    def remove(self, item_id: str) -> None:
        old = self.items.pop(item_id, None)
        for category in old.categories if old else ():
            members = self.by_category[category]
            del members[item_id]
            if not members:
                del self.by_category[category]


class CatalogOverlay:
    """Every tenant's catalogue records (``rapport.catalog.v1``) over the model's catalogue.

    An upsert of an item the model was not trained on makes it a candidate; one of an
    item the model knows changes nothing (the model's own data wins). A delete removes a
    candidate, and a known item deleted by its tenant is never recommended to it again
    (until an upsert brings it back). Records are applied in the topic's order, so an
    item's last record decides.
    """

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.known = frozenset(known)
        self._tenants: dict[str, _TenantCatalog] = {}

    def __len__(self) -> int:
        """New items held, every tenant's."""
        return sum(len(t.items) for t in self._tenants.values())

    def apply(self, record: CatalogUpsert | CatalogDelete) -> None:
        tenant = self._tenants.setdefault(record.tenant, _TenantCatalog())
        tenant.remove(record.item_id)
        if isinstance(record, CatalogUpsert):
            tenant.retracted.discard(record.item_id)
            if record.item_id not in self.known:
                item = NewItem(
                    record.item_id, record.title, tuple(record.categories), record.published_at
                )
                tenant.items[item.item_id] = item
                for category in item.categories:
                    tenant.by_category.setdefault(category, {})[item.item_id] = item
        elif record.item_id in self.known:
            tenant.retracted.add(record.item_id)
        if not (tenant.items or tenant.retracted):
            del self._tenants[record.tenant]

    def retracted(self, tenant: str) -> frozenset[str]:
        """Items the model knows that ``tenant`` deleted: never to be recommended to it."""
        found = self._tenants.get(tenant)
        return frozenset(found.retracted) if found else frozenset()

    def candidates(
        self,
        tenant: str,
        *,
        affinities: Mapping[str, float],
        category: str | None,
        exclude: Collection[str],
        limit: int,
    ) -> list[NewItem]:
        """Up to ``limit`` new items for one ranking: only ``category``'s when there is a
        filter, those in categories the user likes first (the more liked, the earlier),
        then the newest. Triton scores them beside the known items.

        Bounded work per request, whatever the overlay holds: the newest ``limit`` of each
        liked category and of the whole pool are looked at, not every item.
        """
        found = self._tenants.get(tenant)
        if found is None or limit <= 0:
            return []
        pool = found.items if category is None else found.by_category.get(category, {})
        liked = [c for c, weight in affinities.items() if weight > 0]
        sources = [found.by_category.get(c, {}) for c in liked] + [pool]
        chosen: dict[str, NewItem] = {}
        for source in sources:
            taken = 0
            for item in reversed(source.values()):  # newest first
                if taken == limit:
                    break
                if item.item_id in exclude or (category and category not in item.categories):
                    continue
                chosen[item.item_id] = item
                taken += 1

        def interest(item: NewItem) -> float:
            return sum(max(affinities.get(c, 0.0), 0.0) for c in item.categories)

        ranked = sorted(
            chosen.values(), key=lambda i: (-interest(i), -i.published_at.timestamp(), i.item_id)
        )
        return ranked[:limit]
