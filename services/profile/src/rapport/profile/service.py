"""Profile reads, trending, bandit feedback, consent, memory and erasure: one method per
operation.

The tenant always comes from the caller's API key (the routes pass it in).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError
from uuid_utils.compat import uuid7

from rapport.common.cache import REDIS_ERRORS
from rapport.common.contracts import (
    ArmCounts,
    FeedbackCounts,
    ProfileView,
    Recalled,
    RecalledMessage,
    RecallRequest,
    TrendingView,
)
from rapport.common.events import SCHEMA_HEADER, ConsentAttributes, ConsentEventIn, encode_for_topic
from rapport.common.experiments import Experiment, ExperimentList, ExperimentReport
from rapport.common.problems import ProblemError
from rapport.common.profiles import profile_id
from rapport.common.published import PublishedProfiles, PublishedView, RecallEntry
from rapport.profile.adapters.cache import (
    AggregateCache,
    experiment_key,
    feedback_key,
    trending_key,
)
from rapport.profile.adapters.memory import MemoryStore
from rapport.profile.adapters.published import Publisher
from rapport.profile.adapters.store import COMPARE_AND_SET_ATTEMPTS, ProfileStore
from rapport.profile.adapters.waiting import CacheOp, Waiting, WaitingWrites
from rapport.profile.domain import (
    ConsentAccepted,
    Profile,
    Rules,
    TrendingPool,
    arm_totals,
    cold_start,
    trending,
    trending_view,
    view,
)
from rapport.profile.domain.analysis import analyse
from rapport.profile.domain.clock import Clock, utc_now
from rapport.profile.domain.memory import MESSAGE_ID_PREFIX, MemoryRules, forget, remembered_within
from rapport.profile.metrics import ProfileMetrics

log = logging.getLogger(__name__)

TRENDING_POOL = 500  # items kept per tenant; filters and limits apply to these
# A report is one aggregation over the experiment's enrolled profiles: readers polling it
# (a dashboard, a person re-running the CLI) share one every few seconds.
REPORT_TTL_S = 5


class ProfileService:
    def __init__(
        self,
        *,
        store: ProfileStore,
        cache: AggregateCache,
        published: PublishedProfiles,
        publisher: Publisher,
        producer: AIOKafkaProducer,
        rules: Rules,
        events_topic: str,
        changes_topic: str,
        trending_half_life: timedelta = timedelta(hours=24),
        clock: Clock = utc_now,
        memory: MemoryStore | None = None,
        recall_timeout_s: float = 0.2,
        metrics: ProfileMetrics | None = None,
        waiting: WaitingWrites | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.publisher = publisher
        self.published = published
        self.producer = producer
        self.rules = rules
        self.events_topic = events_topic
        self.changes_topic = changes_topic
        self.trending_half_life = trending_half_life
        self.clock = clock
        self.memory = memory
        self.recall_timeout_s = recall_timeout_s
        self.metrics = metrics
        self.waiting = waiting  # writes that wait in MongoDB for Milvus or Redis

    @contextlib.contextmanager
    def timed_recall(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.metrics is not None:
                self.metrics.recall_duration.observe(time.perf_counter() - started)

    @property
    def memory_rules(self) -> MemoryRules:
        return self.rules.memory

    async def read(self, tenant: str, user_id: str) -> ProfileView:
        """The published view; when there is none, MongoDB's profile, published again."""
        now = self.clock()
        published = await self._published(tenant, user_id)
        if published is not None:
            return published.at(now)
        pid = profile_id(tenant, user_id)
        profile = (await self.store.load([pid])).get(pid)
        if profile is None:
            return cold_start(user_id, await self.trending_pool(tenant))
        await self.republish(pid, profile)  # the cache may vanish; MongoDB answered
        return view(profile, user_id, "store", self.rules, now)

    async def _published(self, tenant: str, user_id: str) -> PublishedView | None:
        try:
            return (await self.published.read(tenant, user_id)).view
        except REDIS_ERRORS:
            log.warning("redis unavailable: profile read from MongoDB")
        except ValidationError:  # published by another version: read MongoDB and publish
            log.warning("published profile unreadable: read from MongoDB")
        return None

    async def republish(self, pid: str, profile: Profile) -> bool:
        """The user's view and whole recall set (from the vector store), unless a newer
        version is published meanwhile; False when Redis could not be written."""
        return await self.publisher.replace(
            pid, profile, self.clock(), await self._recall_set(pid, profile)
        )

    async def _recall_set(self, pid: str, profile: Profile) -> list[RecallEntry] | None:
        """Every kept message with its vector; None when the vector store cannot say."""
        kept = {r.memory_id for r in profile.remembered}
        if not kept:
            return []
        if self.memory is None or not self.memory.ready:
            return None
        try:
            rows = await self.memory.rows_of(pid)
            if self.waiting is not None:  # not written to the vector store yet
                rows += await self.waiting.rows_of(pid)
        except Exception as exc:  # the store is away: readers keep using the recall API
            log.warning("recall set not read", extra={"error": f"{type(exc).__name__}"})
            return None
        unique = {row.memory_id: row for row in rows if row.memory_id in kept}
        return [row.recall_entry() for row in unique.values()]

    async def recall(self, tenant: str, user_id: str, request: RecallRequest) -> Recalled:
        """The user's own past messages nearest the current one's vector.

        Nothing for a user who opted out, with memory off, or with nothing remembered;
        only messages the profile still names (one forgotten by id is gone even if its
        row's delete failed) and within the retention.
        """
        nothing = Recalled(user_id=user_id)
        if self.memory is None or not self.memory_rules.enabled:
            return nothing
        pid = profile_id(tenant, user_id)
        profile = (await self.store.load([pid])).get(pid)
        if profile is None or not profile.personalization_allowed:
            return nothing
        now = self.clock()
        kept = {r.memory_id for r in remembered_within(profile.remembered, now, self.memory_rules)}
        if not kept:
            return nothing
        if not self.memory.ready:
            if self.metrics is not None:
                self.metrics.recall_failures.inc()
            raise ProblemError(
                503,
                detail="The vector store of remembered messages is not available yet.",
                slug="memory-unavailable",
                headers={"Retry-After": "2"},
            )
        try:
            vector = request.vector.values()
        except ValueError as exc:
            raise ProblemError(422, detail=f"vector: {exc}", slug="invalid-vector") from exc
        try:
            hits = await self.memory.search(
                pid,
                vector,
                encoder=request.vector.model,
                not_before=now - self.memory_rules.retention,
                limit=request.k,
                timeout_s=self.recall_timeout_s,
            )
        except Exception as exc:  # away or past its deadline: the caller degrades memory
            if self.metrics is not None:
                self.metrics.recall_failures.inc()
            log.warning("recall failed", extra={"error": f"{type(exc).__name__}"})
            raise ProblemError(
                503,
                detail="The vector store of remembered messages did not answer in time.",
                slug="memory-unavailable",
                headers={"Retry-After": "1"},
            ) from exc
        if not await self.publisher.recall_complete(pid):
            await self.republish(pid, profile)  # respond reads it again from Redis
        return Recalled(
            user_id=user_id,
            recalled=[
                RecalledMessage(
                    memory_id=hit.memory_id,
                    text=hit.text,
                    occurred_at=datetime.fromtimestamp(hit.at_ms / 1000, UTC),
                    score=round(hit.score, 4),
                )
                for hit in hits
                if hit.memory_id in kept and hit.score >= request.min_score
            ],
        )

    async def forget(self, tenant: str, user_id: str, memory_id: str) -> bool:
        """Forget one fact or message; False when the user has no such memory.

        Compare-and-set against the processor, which may be writing the same profile.
        """
        pid = profile_id(tenant, user_id)
        for _ in range(COMPARE_AND_SET_ATTEMPTS):
            profile = (await self.store.load([pid])).get(pid)
            if profile is None:
                return False
            loaded = profile.version
            remembered = forget(profile.facts, profile.remembered, memory_id)
            if remembered is None:
                return False
            profile.remembered = remembered
            profile.version += 1
            if not await self.store.save({pid: (loaded, profile)}):
                # After the save: a waiting message written back meanwhile is deleted
                # by this, or by the drain's check against the profile.
                if memory_id.startswith(MESSAGE_ID_PREFIX):
                    await self._delete_vectors(pid, memory_id)
                if not await self.republish(pid, profile):
                    await self._hold_cache(pid, "republish")
                if self.metrics is not None:
                    self.metrics.memory.labels("forgotten").inc()
                return True
        raise ProblemError(
            503,
            detail="The profile kept changing while the memory was being forgotten; retry.",
            slug="busy",
            headers={"Retry-After": "1"},
        )

    async def expire_memory(self) -> None:
        """Delete remembered messages past the retention (the profiles drop their references
        as the user's next messages are applied, and never serve them meanwhile)."""
        if self.memory is not None and self.memory.ready:
            await self.memory.expire(self.clock() - self.memory_rules.retention)

    async def trending(
        self, tenant: str, category: str | None = None, limit: int = 20
    ) -> TrendingView:
        pool = await self.trending_pool(tenant)
        return trending_view(pool, self.clock(), self.trending_half_life, category, limit)

    async def trending_pool(self, tenant: str) -> TrendingPool:
        """Computed from the tenant's profiles at most every AGGREGATE_TTL_S, then cached."""

        async def compute() -> TrendingPool:
            recent = await self.store.recent_items(tenant)
            return trending(recent, self.clock(), self.trending_half_life, TRENDING_POOL)

        return await self.cache.get_or_compute(trending_key(tenant), TrendingPool, compute)

    async def feedback_counts(self, tenant: str, policy: str) -> FeedbackCounts:
        """Summed from the tenant's profiles at most every AGGREGATE_TTL_S, like trending."""

        async def compute() -> FeedbackCounts:
            totals = arm_totals(await self.store.feedback(tenant), policy)
            return FeedbackCounts(
                policy=policy,
                arms={arm: ArmCounts(**c.model_dump()) for arm, c in sorted(totals.items())},
            )

        return await self.cache.get_or_compute(
            feedback_key(tenant, policy), FeedbackCounts, compute
        )

    async def experiment_report(self, tenant: str, name: str) -> ExperimentReport:
        """One experiment's report from the tenant's enrolled profiles, at most
        ``REPORT_TTL_S`` old; a 404 when no experiment has that name."""
        experiment = self.rules.experiments.get(name)
        if experiment is None:
            raise ProblemError(
                404,
                title="Experiment not found",
                detail=f"No experiment is named `{name}`; `GET /v1/experiments` lists them.",
                slug="experiment-not-found",
            )
        return await self._cached_report(experiment, tenant)

    async def experiment_reports(self, tenant: str) -> ExperimentList:
        experiments = self.rules.experiments.experiments
        return ExperimentList(
            experiments=[await self._cached_report(e, tenant) for e in experiments]
        )

    async def _cached_report(self, experiment: Experiment, tenant: str) -> ExperimentReport:
        return await self.cache.get_or_compute(
            experiment_key(tenant, experiment.name),
            ExperimentReport,
            partial(self._report, experiment, tenant),
            ttl_s=REPORT_TTL_S,
        )

    async def _report(self, experiment: Experiment, tenant: str | None) -> ExperimentReport:
        counts = await self.store.experiment_counts(
            experiment.name,
            experiment.kpis,
            experiment.attribution_window_hours * 3600,
            tenant,
        )
        return analyse(experiment, counts, self.clock())

    async def export_experiment_gauges(self) -> None:
        """Every experiment's report over all tenants, as gauges (dashboards, the SRM alert)."""
        if self.metrics is None:
            return
        for experiment in self.rules.experiments.experiments:
            self.metrics.experiment_report(await self._report(experiment, None))

    async def change_consent(self, tenant: str, user_id: str, allowed: bool) -> ConsentAccepted:
        """A consent event on the user's partition, so it is ordered with their activity."""
        now = self.clock()
        event_id = uuid7()
        submitted = ConsentEventIn(
            type="consent",
            user_id=user_id,
            occurred_at=now,
            source="profile-api",
            attributes=ConsentAttributes(personalization=allowed),
        )
        value = encode_for_topic(submitted, event_id=event_id, received_at=now, tenant=tenant)
        await self.producer.send_and_wait(
            self.events_topic,
            key=user_id.encode(),
            value=value,
            headers=[SCHEMA_HEADER],
        )
        return ConsentAccepted(user_id=user_id, personalization=allowed, event_id=str(event_id))

    async def erase(self, tenant: str, user_id: str) -> None:
        """Marker first (so nothing in flight can bring the user back), then every copy:
        the profile with its facts, the remembered messages (those waiting for the
        vector store too), the cache. A store that is away gets its part when it returns:
        the part waits in MongoDB, so the erasure is durable once this returns."""
        pid = profile_id(tenant, user_id)
        await self.store.erase(pid, self.clock())
        if self.memory is not None:
            if self.waiting is not None:
                await self.waiting.drop_profile(pid)
            try:
                await self.memory.delete_profiles([pid])
            except Exception:
                if self.waiting is None:
                    raise
                log.warning("vector store unavailable: the erasure waits for it")
                await self.waiting.hold_erasure(pid)
        if not await self.publisher.erase([pid]):
            await self._hold_cache(pid, "tombstone")
        # The user leaves the experiments' counts now, not when the cached reports expire.
        names = [e.name for e in self.rules.experiments.experiments]
        await self.cache.forget([experiment_key(tenant, name) for name in names])
        await self.producer.send_and_wait(self.changes_topic, key=pid.encode(), value=None)

    async def _delete_vectors(self, pid: str, memory_id: str) -> None:
        if self.memory is None:
            return
        try:
            if not self.memory.ready:
                raise RuntimeError("not opened yet")
            await self.memory.delete([memory_id])
        except Exception:
            if self.waiting is None:
                raise
            log.warning("vector store unavailable: the delete waits for it")
            await self.waiting.hold([], {memory_id: pid})

    async def _hold_cache(self, pid: str, op: CacheOp) -> None:
        """Redis missed a forget or an erasure: retried until it answers, so the cache
        never serves what the user removed for longer than Redis is away."""
        if self.waiting is not None:
            await self.waiting.hold_cache(pid, op)

    async def settle_waiting(self, limit: int = 500) -> None:
        """One round: writes that waited for the vector store, then for Redis.

        A waiting message is written only while its profile still names it, and checked
        again after the write: a forget or an erasure that ran meanwhile deletes it then.
        """
        waiting = self.waiting
        if waiting is None:
            return
        cache = await waiting.next_cache_ops(limit)
        if cache.docs:
            await self._settle_cache(waiting, cache)
        if self.memory is None:
            return
        count = await waiting.count_vector_ops()
        if self.metrics is not None:
            self.metrics.memory_waiting.set(count)
        if count and self.memory.ready:
            await self._settle_vectors(self.memory, waiting, await waiting.next_vector_ops(limit))
            count = await waiting.count_vector_ops()
            if self.metrics is not None:
                self.metrics.memory_waiting.set(count)
        waiting.holding = count > 0

    async def _settle_vectors(
        self, memory: MemoryStore, waiting: WaitingWrites, queued: Waiting
    ) -> None:
        if erased := queued.ops("erase"):
            await memory.delete_profiles(erased)
        rows = queued.upserts
        named = await self._named({row.pid for row in rows})
        kept = [row for row in rows if row.memory_id in named.get(row.pid, set())]
        await memory.write(kept)
        stale = queued.deletes | ({row.memory_id for row in rows} - {r.memory_id for r in kept})
        await memory.delete(stale)
        named = await self._named({row.pid for row in kept})
        await memory.delete(
            row.memory_id for row in kept if row.memory_id not in named.get(row.pid, set())
        )
        await waiting.done(queued.docs)

    async def _named(self, pids: set[str]) -> dict[str, set[str]]:
        """The messages each stored profile names now (an erased user has none)."""
        profiles = await self.store.load(pids)
        return {pid: {r.memory_id for r in p.remembered} for pid, p in profiles.items()}

    async def _settle_cache(self, waiting: WaitingWrites, queued: Waiting) -> None:
        tombstones = queued.ops("tombstone")
        if tombstones and not await self.publisher.erase(tombstones):
            return
        republish = queued.ops("republish") - tombstones
        profiles = await self.store.load(republish)
        for pid in republish:
            profile = profiles.get(pid)
            written = (
                await self.republish(pid, profile)
                if profile is not None
                else await self.publisher.erase([pid])  # erased since: nothing to show
            )
            if not written:
                return
        await waiting.done(queued.docs)
