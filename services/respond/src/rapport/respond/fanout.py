"""The fan-out: what is known about a turn, gathered under the deadline.

Two serial network stages (each outbound call gets what is left of the budget):

1. at the same time:
   - the profile: the view profile publishes in Redis, with the user's recall set,
     in one round trip (profile's HTTP API when nothing is published), with at most
     ``profile_share`` of the budget;
   - recommend, with the message: it reads the same published view itself, and
     answers with the ranked items and what the message means (intent,
     out-of-scope, sentiment and, when knowledge or memory is on, its vector);
2. with that vector, at the same time: knowledge, the passages of the tenant's
   documents that fit the message, and memory's recall, the user's own past
   messages that fit it, scored here against the published recall set (profile's
   recall API when it is not complete); ``knowledge_reserve_ms`` of the budget is
   kept for them. The facts the user stated came with the profile.

A part that is slow or down is left out and named in :attr:`Gathered.degraded`; the
fan-out never fails for it. Only a key that lacks a scope the reads need fails it (403).

Opted-out users: profile publishes only their consent flag and version, and recommend
ranks without any profile data; what the fan-out keeps of their profile is the flag.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeVar

from rapport.common.auth import ApiKey
from rapport.common.contracts import (
    ConsentView,
    KnowledgeHit,
    MemoryFact,
    MessageUnderstanding,
    ProfileView,
    RecalledMessage,
    Recommendations,
)
from rapport.common.experiments import NO_EXPERIMENTS, Tone
from rapport.common.http import ServiceCallError
from rapport.common.problems import ProblemError
from rapport.common.profiles import ProfileClient
from rapport.common.published import ProfileRead, ProfileReader, nearest
from rapport.respond import domain
from rapport.respond.adapters.knowledge import KnowledgeSearch, KnowledgeUnavailable
from rapport.respond.adapters.recommend import RecommendClient
from rapport.respond.domain import Deadline
from rapport.respond.experiments import EXPLORATION_SLOT_ITEMS, Experiments, Plan
from rapport.respond.metrics import RespondMetrics
from rapport.respond.settings import RespondSettings

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
MAX_RECOMMEND_MESSAGE = 2000  # recommend's limit
MIN_CALL_S = 0.001  # below this a call cannot succeed; skip it and degrade
# Each dependency: the part a reply lacks without it, and the scope the caller's key needs.
DEPENDENCIES = {
    "profile": ("profile", "profiles:read"),
    "recommend": ("recommendations", "recommend:invoke"),
    "knowledge": ("knowledge", "knowledge:read"),
    "memory": ("memory", "profiles:read"),
}
OVERLOADED = "overloaded"  # recommend's fallback reason when its admission limit sheds
# recommend's names for its degraded parts, as a reply names them.
RECOMMEND_PARTS = {"items": "recommendations", "message": "intent"}
T = TypeVar("T")


@dataclass
class Turn:
    user_id: str | None
    session_id: str | None
    message: str
    channel: str | None = None
    locale: str | None = None
    # False when the conversation does not end with the user (an agent sending back a tool
    # result): the user's message was recorded with the request that brought it.
    record: bool = True


@dataclass
class Gathered:
    """What the fan-out found, and what it could not."""

    profile: ProfileView | None
    personalized: bool
    recommendations: Recommendations | None
    items: list[domain.ShownItem]
    tone: Tone
    degraded: list[str] = field(default_factory=list)
    # A dependency timed out or failed: the fan-out's latency was its, not this box's load.
    dependency_failed: bool = False
    # recommend turned the call away (its own admission limit): this gateway let too many in.
    downstream_overloaded: bool = False
    knowledge: list[KnowledgeHit] = field(default_factory=list)
    facts: list[MemoryFact] = field(default_factory=list)
    recalled: list[RecalledMessage] = field(default_factory=list)

    @classmethod
    def nothing_yet(cls, turn: Turn) -> Gathered:
        """Before the fan-out: personalized when there is a user, until consent says no."""
        return cls(None, turn.user_id is not None, None, [], "neutral")

    @property
    def message(self) -> MessageUnderstanding | None:
        """What recommend understood of the message, when it answered."""
        return self.recommendations.message if self.recommendations else None

    @property
    def intent(self) -> str | None:
        message = self.message
        return message.intent if message else None

    @property
    def sentiment(self) -> str | None:
        message = self.message
        return message.sentiment if message else None

    @property
    def segment(self) -> str | None:
        recs = self.recommendations
        if not self.personalized or recs is None or recs.segment is None:
            return None
        return domain.safe_label(recs.segment.name)

    @property
    def profile_version(self) -> int | None:
        profile = self.profile
        return profile.version if profile is not None and profile.known else None

    def degrade(self, part: str, metrics: RespondMetrics) -> None:
        """Names a part the reply goes without; counted once per reply, when it is named."""
        if part not in self.degraded:
            self.degraded.append(part)
            metrics.degraded.labels(part).inc()


def forbidden(service: str, scope: str) -> ProblemError:
    return ProblemError(
        403,
        detail=f"The {service} service refused this key. respond forwards the caller's key, "
        f"so it also needs the `{scope}` scope.",
        slug="forbidden",
    )


@dataclass
class FanOut:
    settings: RespondSettings
    reader: ProfileReader  # the published view, else profile's API
    recommend: RecommendClient
    profiles: ProfileClient  # memory's recall API, when the published recall set is not whole
    knowledge: KnowledgeSearch | None  # None: replies carry no company knowledge
    metrics: RespondMetrics
    max_items: int  # the recommendations a reply shows
    experiments: Experiments = field(default_factory=lambda: Experiments(NO_EXPERIMENTS))

    async def gather(
        self,
        turn: Turn,
        *,
        caller: ApiKey,
        authorization: str,
        deadline: Deadline,
        plan: Plan | None = None,
    ) -> Gathered:
        """``plan``: the experiments enrolled before the fan-out; completed here once the
        user's segments and consent are known, and told what reached the reply."""
        gathered = Gathered.nothing_yet(turn)
        # respond reads the profile and the knowledge index itself: the caller's key must
        # allow what it would have to ask of profile and knowledge.
        reads = {"profile": turn.user_id is not None, "knowledge": self.knowledge is not None}
        for service, reads_it in reads.items():
            scope = DEPENDENCIES[service][1]
            if reads_it and scope not in caller.scopes:
                raise forbidden(service, scope)
        # Stage 1: the profile and recommend (which reads the published view itself).
        profile_read = (
            asyncio.create_task(
                self._profile(turn.user_id, caller, authorization, deadline, gathered)
            )
            if turn.user_id is not None
            else None
        )
        try:
            recs = await self._recommend(turn, authorization, deadline, gathered, plan)
            read = await profile_read if profile_read is not None else None
        finally:
            if profile_read is not None and not profile_read.done():
                profile_read.cancel()
        self._take_profile(read, gathered)
        self._take_recommendations(recs, gathered)
        if plan is not None:
            self._enrol_by_segment(plan, turn, caller.tenant, gathered)
        # Stage 2: knowledge and recall, with the message's vector.
        message = recs.message if recs else None
        await asyncio.gather(
            self._knowledge(turn, message, caller.tenant, authorization, deadline, gathered),
            self._recall(
                turn,
                message,
                read,
                authorization=authorization,
                deadline=deadline,
                gathered=gathered,
            ),
        )
        profile = gathered.profile
        gathered.tone = domain.choose_tone(message, profile if gathered.personalized else None)
        if plan is not None and plan.enrolments:
            self._apply_plan(plan, recs, gathered)
        return gathered

    def _enrol_by_segment(self, plan: Plan, turn: Turn, tenant: str, gathered: Gathered) -> None:
        """An opted-out user leaves every experiment. One whose profile could not be read
        (late, or down) stays, as their chat message is recorded: profile, which enforces
        consent where events are applied, drops the exposure of a user who opted out.
        Leaving them out instead would leave out most new users under load (their first
        read goes to profile's API), and the experiments would measure returning users."""
        if not gathered.personalized or turn.user_id is None:
            plan.enrolments.clear()
            return
        self.experiments.enrol(
            plan,
            tenant=tenant,
            user_id=turn.user_id,
            channel=turn.channel,
            segments=domain.segments(gathered.profile, gathered.segment),
            at=datetime.now(UTC),
        )
        for enrolment in plan.enrolments:
            self.metrics.experiment_assignments.labels(
                enrolment.experiment.name, enrolment.variant.name
            ).inc()

    def _apply_plan(self, plan: Plan, recs: Recommendations | None, gathered: Gathered) -> None:
        """The variants' changes to what was gathered, and which of them reached the reply.

        A part a variant switches off was still fetched: whether there was anything to
        leave out decides the exposure, the same way for the variant that keeps it."""
        ranked = recs is not None and not recs.fallback
        plan.expose("exploration_rate", ranked and len(gathered.items) >= EXPLORATION_SLOT_ITEMS)
        plan.expose("memory", bool(gathered.facts or gathered.recalled))
        if plan.switched_off("memory"):
            gathered.facts, gathered.recalled = [], []
        plan.expose("knowledge", bool(gathered.knowledge))
        if plan.switched_off("knowledge"):
            gathered.knowledge = []
        owner = plan.owner("tone")
        if owner is not None:
            chosen = gathered.tone
            tones = {value or chosen for value in owner.values("tone")}
            plan.expose("tone", len(tones) > 1)
            gathered.tone = plan.tone or chosen

    def _take_profile(self, read: ProfileRead | None, gathered: Gathered) -> None:
        if read is None:
            return
        profile = read.view
        if not profile.consent.personalization:
            # Opted out: keep nothing but the flag, before anything else sees the profile.
            profile = ProfileView(
                user_id=profile.user_id,
                known=profile.known,
                version=profile.version,
                consent=ConsentView(personalization=False),
            )
            gathered.personalized = False
        gathered.profile = profile
        if gathered.personalized and self.settings.memory:
            gathered.facts = profile.facts

    def _take_recommendations(self, recs: Recommendations | None, gathered: Gathered) -> None:
        gathered.recommendations = recs
        if recs is None:
            return
        if not recs.personalized:  # recommend read an opted-out user's view
            gathered.personalized = False
        gathered.items = domain.shown_items(recs.items, self.max_items)
        for part in recs.degraded:
            gathered.degrade(RECOMMEND_PARTS.get(part, part), self.metrics)
        if recs.fallback:
            gathered.degrade("ranking", self.metrics)
            gathered.downstream_overloaded = recs.fallback_reason == OVERLOADED

    async def _profile(
        self,
        user_id: str,
        caller: ApiKey,
        authorization: str,
        deadline: Deadline,
        gathered: Gathered,
    ) -> ProfileRead | None:
        timeout = min(
            self.settings.profile_timeout_ms / 1000,
            deadline.budget_s * self.settings.profile_share,
            deadline.remaining_s(self.settings.reserve_ms / 1000),
        )
        return await self._within_budget(
            gathered,
            "profile",
            timeout,
            lambda: self.reader.read(
                caller.tenant,
                user_id,
                authorization=authorization,
                recall=self.settings.memory,
                timeout_s=timeout,
            ),
        )

    async def _recommend(
        self,
        turn: Turn,
        authorization: str,
        deadline: Deadline,
        gathered: Gathered,
        plan: Plan | None,
    ) -> Recommendations | None:
        """recommend reads the user's published view itself; an anonymous turn gets the
        cold-start default inline."""
        settings = self.settings
        searches = self.knowledge is not None or settings.memory
        reserve_s = settings.reserve_ms / 1000
        reserve_s += settings.knowledge_reserve_ms / 1000 if searches else 0.0
        timeout = min(settings.recommend_timeout_ms / 1000, deadline.remaining_s(reserve_s))
        return await self._within_budget(
            gathered,
            "recommend",
            timeout,
            lambda: self.recommend.recommend(
                user_id=turn.user_id or ANONYMOUS,
                authorization=authorization,
                profile=None
                if turn.user_id is not None
                else ProfileView(user_id=ANONYMOUS, known=False),
                message=turn.message[:MAX_RECOMMEND_MESSAGE].strip() or None,
                k=settings.recommendations,
                vector=searches,
                exploration_rate=plan.exploration_rate if plan is not None else None,
                timeout_s=timeout,
            ),
        )

    async def _knowledge(  # noqa: PLR0917 - the fan-out's common arguments
        self,
        turn: Turn,
        message: MessageUnderstanding | None,
        tenant: str,
        authorization: str,
        deadline: Deadline,
        gathered: Gathered,
    ) -> None:
        """The passages that fit the message, found with the vector recommend computed.

        Without that vector (recommend or its models were late or down) there is
        nothing to search with: encoding the message again here would cost the
        reply a second encoder call, so ``knowledge`` is degraded instead.
        """
        client = self.knowledge
        if client is None or not turn.message.strip():
            return
        if message is None or message.vector is None:
            gathered.degrade("knowledge", self.metrics)
            return
        vector = message.vector
        settings = self.settings
        timeout = self._search_timeout(settings.knowledge_timeout_ms, deadline)
        hits = await self._within_budget(
            gathered,
            "knowledge",
            timeout,
            lambda: client.search(
                vector,
                tenant=tenant,
                authorization=authorization,
                k=settings.knowledge_passages,
                min_score=settings.knowledge_min_score,
                timeout_s=timeout,
            ),
        )
        gathered.knowledge = hits or []

    async def _recall(
        self,
        turn: Turn,
        message: MessageUnderstanding | None,
        read: ProfileRead | None,
        *,
        authorization: str,
        deadline: Deadline,
        gathered: Gathered,
    ) -> None:
        """The user's own past messages that fit this one, found with the same vector:
        scored here against the recall set profile publishes beside the view, or asked of
        profile's recall API when that set is not whole.

        Only when the profile says memory keeps messages for this user, so a new or
        opted-out user costs nothing.
        """
        profile = gathered.profile
        if not (self.settings.memory and turn.user_id and gathered.personalized):
            return
        if read is None or profile is None or profile.remembered_messages == 0:
            return
        if message is None or message.vector is None:
            gathered.degrade("memory", self.metrics)
            return
        vector, user_id, settings = message.vector, turn.user_id, self.settings
        not_before = read.recall_not_before(datetime.now(UTC))
        if read.recall is not None and not_before is not None:
            with self.metrics.stage("recall"):
                try:
                    query = vector.array()
                except ValueError:
                    gathered.degrade("memory", self.metrics)
                    return
                gathered.recalled = nearest(
                    read.recall,
                    query,
                    encoder=vector.model,
                    not_before=not_before,
                    k=settings.memory_recall,
                    min_score=settings.memory_min_score,
                )
            return
        timeout = self._search_timeout(settings.memory_timeout_ms, deadline)
        found = await self._within_budget(
            gathered,
            "memory",
            timeout,
            lambda: self.profiles.recall(
                user_id,
                vector,
                authorization=authorization,
                k=settings.memory_recall,
                min_score=settings.memory_min_score,
                timeout_s=timeout,
            ),
        )
        gathered.recalled = found.recalled if found is not None else []

    def _search_timeout(self, ceiling_ms: int, deadline: Deadline) -> float:
        """A search after recommend: its ceiling, or what is left but the reply's reserve."""
        return min(ceiling_ms / 1000, deadline.remaining_s(self.settings.reserve_ms / 1000))

    async def _within_budget(
        self,
        gathered: Gathered,
        service: Literal["profile", "recommend", "knowledge", "memory"],
        timeout_s: float,
        call: Callable[[], Awaitable[T]],
    ) -> T | None:
        """``call`` within ``timeout_s``; when it fails or is late, its part is degraded.

        A 401 or 403 is the caller's key lacking the scope: that is the caller's error.
        """
        part, scope = DEPENDENCIES[service]
        if timeout_s >= MIN_CALL_S:
            with self.metrics.stage(service):
                try:
                    async with asyncio.timeout(timeout_s):
                        return await call()
                except ServiceCallError as exc:
                    if exc.status in (401, 403):
                        raise forbidden(service, scope) from exc
                    log.warning(f"{service} unavailable", extra={"error": str(exc)[:200]})
                except KnowledgeUnavailable as exc:
                    log.warning(f"{service} unavailable", extra={"error": str(exc)})
                except TimeoutError:
                    log.warning(f"{service} slower than the deadline")
                gathered.dependency_failed = True
        gathered.degrade(part, self.metrics)
        return None
