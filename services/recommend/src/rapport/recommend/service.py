"""One recommendation: the profile, the models, the fallback and the exploration slot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapport.common.auth import SCOPE_PROFILES_READ, ApiKey
from rapport.common.contracts import (
    Exploration,
    MessageUnderstanding,
    ProfileView,
    Reason,
    ReasonKind,
    RecommendationRequest,
    Recommendations,
    RecommendedItem,
    Segment,
    TrendingItem,
)
from rapport.common.limits import InFlightLimit
from rapport.common.problems import ProblemError
from rapport.common.profiles import ProfileClient, ProfileServiceError
from rapport.common.published import ProfileReader
from rapport.common.scores import significant
from rapport.common.vectors import MessageVector
from rapport.recommend.adapters.catalog import CatalogEntry
from rapport.recommend.adapters.triton import (
    Intent,
    ModelUnavailable,
    RankedItem,
    Ranking,
    RankingQuery,
    Sentiment,
    TritonModels,
)
from rapport.recommend.domain import (
    ArmEvidence,
    CatalogOverlay,
    NewItem,
    ThompsonSampler,
    history_weights,
)
from rapport.recommend.drift import DriftMonitor
from rapport.recommend.metrics import RecommendMetrics

log = logging.getLogger(__name__)


POLICY = "explore_slot"
ARMS = ("model", "trending", "discovery")
EXTRA_CANDIDATES = 10  # ranked beyond k, for the discovery arm to choose from
TRENDING_TTL_S = 30.0


@dataclass
class _Bandit:
    sampler: ThompsonSampler
    fetched_at: float = 0.0
    refreshing: bool = False


PROFILE_FORBIDDEN = (
    "The profile service refused this key; recommend forwards the caller's key, so it also "
    "needs the `profiles:read` scope."
)


@dataclass
class RecommendService:
    models: TritonModels
    profiles: ProfileClient  # trending and the bandit's counts
    reader: ProfileReader  # a user's view: published in Redis, else profile's API
    metrics: RecommendMetrics
    catalog: dict[str, CatalogEntry]  # the items the served model was trained on
    history_decay: float
    history_items: int
    explore: bool
    bandit_refresh_s: float
    admission: InFlightLimit
    model_wait_s: float = 0.0  # past the admission limit, how long a request waits for a place
    bandits: dict[str, _Bandit] = field(default_factory=dict)
    trending_cache: dict[tuple[str, str | None], tuple[float, list[TrendingItem]]] = field(
        default_factory=dict
    )
    background: set[asyncio.Task[None]] = field(default_factory=set)
    rng: random.Random = field(default_factory=random.Random)  # a request's exploration_rate draw
    overlay: CatalogOverlay | None = None  # catalogue items the model was not trained on
    max_new_items: int = 0  # of them, how many one ranking considers
    drift: DriftMonitor | None = None  # live drift and exposure windows (None: not measured)

    def title(self, item_id: str) -> str:
        entry = self.catalog.get(item_id)
        return entry.title if entry else item_id

    async def recommend(
        self, request: RecommendationRequest, *, caller: ApiKey, authorization: str
    ) -> Recommendations:
        tenant = caller.tenant
        degraded: list[str] = []
        profile = request.profile or await self._profile(
            request.user_id, caller, authorization, degraded
        )
        personalized = profile.consent.personalization
        history = profile.recent_items[: self.history_items] if personalized else []
        affinities = profile.affinities if personalized else {}
        # A known item its tenant deleted from the catalogue is excluded like a seen one.
        retracted = sorted(self.overlay.retracted(tenant)) if self.overlay else []
        exclude = list(dict.fromkeys([*request.exclude, *history, *retracted]))
        categories = [request.category] if request.category else []
        new_items: list[NewItem] = []
        if self.overlay is not None:
            new_items = self.overlay.candidates(
                tenant,
                affinities=affinities,
                category=request.category,
                exclude=set(exclude),
                limit=self.max_new_items,
            )
        ranking: Ranking | ModelUnavailable
        intent: Intent | ModelUnavailable | None = None
        sentiment: Sentiment | ModelUnavailable | None = None
        async with self.admission.wait_for_place(self.model_wait_s) as ticket:
            if not ticket.admitted:
                # Shed before Triton: a longer queue there would time out every caller.
                ranking = ModelUnavailable("overloaded")
                intent = sentiment = ranking if request.message else None
            else:
                query = RankingQuery(
                    history=history,
                    weights=history_weights(len(history), self.history_decay),
                    affinities=affinities,
                    exclude=exclude,
                    categories=categories,
                    k=request.k + EXTRA_CANDIDATES,
                    new_items=new_items,
                )
                try:
                    if request.message:
                        ranking, intent, sentiment = await self.models.rank_and_read(
                            query, request.message
                        )
                    else:
                        ranking = await self.models.rank(query)
                except ModelUnavailable as exc:
                    ranking = exc
                    intent = sentiment = exc if request.message else None
        result = Recommendations(
            user_id=request.user_id,
            items=[],
            fallback=False,
            degraded=degraded,
            personalized=personalized,
            profile_version=profile.version if profile.known else None,
        )
        if isinstance(ranking, Ranking):
            result.models[self.models.item_model] = ranking.version
            result.segment = Segment(id=ranking.segment, name=ranking.segment_name)
            result.items = [
                self._ranked_item(i, affinities, known=profile.known) for i in ranking.items
            ]
            await self._explore(
                result=result,
                request=request,
                exclude=exclude,
                tenant=tenant,
                authorization=authorization,
                affinities=affinities,
            )
        else:
            reason = ranking.reason if isinstance(ranking, ModelUnavailable) else "error"
            self.metrics.fallbacks.labels(reason).inc()
            result.fallback, result.fallback_reason = True, reason
            result.items = await self._trending_items(
                request, exclude, tenant, authorization, result
            )
        result.items = result.items[: request.k]
        if request.message:
            result.message = self._understanding(
                result, intent, sentiment, with_vector=request.vector
            )
        if self.drift is not None:
            self.drift.observe(result, intent)
        return result

    async def _profile(
        self, user_id: str, caller: ApiKey, authorization: str, degraded: list[str]
    ) -> ProfileView:
        """The user's view; a cold-start default (``profile`` degraded) when it cannot be read."""
        if SCOPE_PROFILES_READ not in caller.scopes:
            raise ProblemError(403, detail=PROFILE_FORBIDDEN)
        try:
            read = await self.reader.read(caller.tenant, user_id, authorization=authorization)
        except ProfileServiceError as exc:
            if exc.status in (401, 403):
                raise ProblemError(exc.status, detail=PROFILE_FORBIDDEN) from exc
            log.warning("profile unavailable", extra={"error": str(exc)})
            degraded.append("profile")
            return ProfileView(user_id=user_id, known=False, source="default")
        return read.view

    def _ranked_item(
        self, ranked: RankedItem, affinities: dict[str, float], *, known: bool
    ) -> RecommendedItem:
        liked = [c for c in ranked.categories if affinities.get(c, 0.0) > 0]
        if ranked.because_item:
            why = Reason(
                kind=ReasonKind.BECAUSE_YOU_WATCHED,
                label=self.title(ranked.because_item),
                item_id=ranked.because_item,
            )
        elif liked and known:
            strongest = max(liked, key=affinities.__getitem__)
            why = Reason(kind=ReasonKind.MATCHES_INTEREST, label=strongest)
        elif liked:  # a cold-start profile's affinities are what is popular, not the user's
            why = Reason(kind=ReasonKind.POPULAR_IN, label=max(liked, key=affinities.__getitem__))
        else:
            why = Reason(kind=ReasonKind.POPULAR_OVERALL)
        return RecommendedItem(
            item_id=ranked.item_id,
            title=ranked.title,
            score=significant(ranked.score),
            why=why,
            categories=list(ranked.categories),
        )

    def _understanding(
        self,
        result: Recommendations,
        intent: Intent | ModelUnavailable | None,
        sentiment: Sentiment | ModelUnavailable | None,
        *,
        with_vector: bool = False,
    ) -> MessageUnderstanding | None:
        if isinstance(sentiment, Sentiment):
            result.models[self.models.sentiment_model] = sentiment.version
        else:
            result.degraded.append("sentiment")
        if not isinstance(intent, Intent):
            result.degraded.append("message")
            return None
        result.models[self.models.intent_model] = intent.version
        result.models[self.models.encoder_model] = intent.encoder_version
        return MessageUnderstanding(
            intent=intent.intent,
            confidence=round(intent.confidence, 6),
            out_of_scope=intent.out_of_scope,
            sentiment=sentiment.label if isinstance(sentiment, Sentiment) else None,
            sentiment_score=round(sentiment.score, 6) if isinstance(sentiment, Sentiment) else None,
            vector=MessageVector.of_array(
                intent.vector, f"{self.models.encoder_model}:{intent.encoder_version}"
            )
            if with_vector and intent.vector is not None and intent.vector.size
            else None,
        )

    async def _trending(
        self, tenant: str, authorization: str, category: str | None
    ) -> list[TrendingItem]:
        key = (tenant, category)
        cached = self.trending_cache.get(key)
        now = time.monotonic()
        if cached and now - cached[0] < TRENDING_TTL_S:
            return cached[1]
        items = (await self.profiles.trending(authorization, category=category, limit=100)).items
        self.trending_cache[key] = (now, items)
        return items

    async def _trending_items(
        self,
        request: RecommendationRequest,
        exclude: Sequence[str],
        tenant: str,
        authorization: str,
        result: Recommendations,
    ) -> list[RecommendedItem]:
        try:
            trending = await self._trending(tenant, authorization, request.category)
        except ProfileServiceError as exc:
            log.warning("trending unavailable", extra={"error": str(exc)})
            result.degraded.append("items")
            return []
        skip = set(exclude)
        return [
            RecommendedItem(
                item_id=t.item_id,
                title=self.title(t.item_id),
                score=significant(t.score),
                why=Reason(kind=ReasonKind.TRENDING_IN, label=t.category)
                if t.category
                else Reason(kind=ReasonKind.TRENDING_NOW),
                categories=[t.category] if t.category else [],
            )
            for t in trending
            if t.item_id not in skip
        ]

    async def _explore(
        self,
        *,
        result: Recommendations,
        request: RecommendationRequest,
        exclude: Sequence[str],
        tenant: str,
        authorization: str,
        affinities: dict[str, float],
    ) -> None:
        """Fill the last of k (k >= 3) slots by the bandit's arm."""
        if request.k < 3 or len(result.items) < request.k or not self._explores(request):
            return
        arm = self._bandit(tenant, authorization).sampler.choose()
        self.metrics.bandit_choices.labels(POLICY, arm).inc()
        shown = {i.item_id for i in result.items[: request.k - 1]}
        chosen: RecommendedItem | None = None
        if arm == "model":
            chosen = result.items[request.k - 1]
        elif arm == "discovery":
            liked = set(affinities)
            for item in result.items[request.k - 1 :]:
                if item.categories and not liked.intersection(item.categories):
                    chosen = item.model_copy(
                        update={
                            "why": Reason(
                                kind=ReasonKind.SOMETHING_DIFFERENT, label=item.categories[0]
                            )
                        }
                    )
                    break
        elif arm == "trending":
            seen = shown | set(exclude)
            with contextlib.suppress(ProfileServiceError):
                for t in await self._trending(tenant, authorization, request.category):
                    if t.item_id not in seen:
                        chosen = RecommendedItem(
                            item_id=t.item_id,
                            title=self.title(t.item_id),
                            score=significant(t.score),
                            why=Reason(kind=ReasonKind.SOMETHING_NEW),
                            categories=[t.category] if t.category else [],
                        )
                        break
        if chosen is None:  # the arm had nothing to offer: the model's own pick
            chosen = result.items[request.k - 1]
        result.items[request.k - 1] = chosen.model_copy(update={"slot": "explore"})
        result.exploration = Exploration(policy=POLICY, arm=arm, item_id=chosen.item_id)

    def _explores(self, request: RecommendationRequest) -> bool:
        """A request's rate (an experiment's variant) decides for it; else the setting."""
        if request.exploration_rate is None:
            return self.explore
        return self.rng.random() < request.exploration_rate  # in [0, 1): 0 never, 1 always

    def _bandit(self, tenant: str, authorization: str) -> _Bandit:
        bandit = self.bandits.get(tenant)
        if bandit is None:
            bandit = self.bandits[tenant] = _Bandit(ThompsonSampler(ARMS))
        stale = time.monotonic() - bandit.fetched_at > self.bandit_refresh_s
        if stale and not bandit.refreshing:
            bandit.refreshing = True
            task = asyncio.create_task(self._refresh(bandit, authorization))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
        return bandit

    async def _refresh(self, bandit: _Bandit, authorization: str) -> None:
        """Off the request path: the next choices use the new counts."""
        try:
            counts = await self.profiles.feedback(authorization, POLICY)
            bandit.sampler.update(
                {a: ArmEvidence(c.successes, c.failures) for a, c in counts.arms.items()}
            )
        except ProfileServiceError as exc:
            log.warning("bandit counts unavailable", extra={"error": str(exc)})
        finally:
            bandit.fetched_at = time.monotonic()
            bandit.refreshing = False
