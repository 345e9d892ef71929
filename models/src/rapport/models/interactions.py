"""Rapport's own interactions, for retraining: read from the events topic, filtered by
consent and erasure in the profile store.

Positives (implicit feedback, as the served model reads MovieLens):

- ``item_view``, ``click``, ``add_to_cart``, ``purchase``: the user chose to look at,
  or buy, that item, like a MovieLens rating says the user chose to watch the film;
- ``feedback`` with an ``item_id`` and a ``rating`` of 4 or 5: explicit approval.
  A rating of 1 to 3 says the user did not like the item, so it adds no positive (it
  does not remove a view either: the user still chose to look).

Every other type (page views, searches, messages, preferences, exposures) names no
item the user chose. ``occurred_at`` (the client's time) orders the interactions: the
time split holds out the newest.

Who is left out, whatever the event says:

- **erased users**: an event received at or before the user's erasure marker, the
  rule profile applies when it replays the topic (a user who comes back after an
  erasure starts afresh);
- **users who opted out of personalization**: their profile's consent is off, or the
  latest ``consent`` event on the topic says so (either one is enough: the stricter
  reading while profile catches up).

The topic is read from the beginning of every partition to its end when the read
starts, with no consumer group (nothing is committed; two runs read the same).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import ConsumerRecord, TopicPartition
from pymongo.asynchronous.database import AsyncDatabase

from rapport.common.catalog import CATALOG_RECORD, CATALOG_SCHEMA_HEADER, CatalogUpsert
from rapport.common.events import (
    SCHEMA_HEADER,
    ConsentEvent,
    Event,
    FeedbackEvent,
    ItemEvent,
    parse_event,
)
from rapport.common.kafka import (
    CATALOG_TOPIC,
    EVENTS_TOPIC,
    PoisonRecord,
    create_consumer,
    parse_value,
    read_until_end,
)
from rapport.common.mongo import Document, create_mongo_client
from rapport.common.profiles import (
    CONSENT_VALUE_FIELD,
    ERASED_AT_FIELD,
    ERASURES_COLLECTION,
    PROFILES_COLLECTION,
    profile_id,
)
from rapport.common.settings import KafkaSettings, MongoSettings

log = logging.getLogger(__name__)

ITEM_TYPES = frozenset({"item_view", "click", "add_to_cart", "purchase"})
# 4 and 5 of 5: "liked", the threshold the bandit's feedback uses too (profile's ArmFeedback).
POSITIVE_RATING = 4.0
# Profile ids per MongoDB query ($in), so a large tenant is not one huge query.
QUERY_CHUNK = 5000
FETCH_TIMEOUT_MS = 200


@dataclass(frozen=True, slots=True)
class Interaction:
    user_id: str
    item_id: str
    at: float  # occurred_at, seconds since the epoch
    kind: str  # the event type
    received_at: float  # when ingest accepted it (the erasure rule reads this one)


@dataclass
class EventLog:
    """What the topic holds for one tenant: positives, item categories, consent."""

    positives: list[Interaction] = field(default_factory=list)
    categories: dict[str, str] = field(default_factory=dict)  # item -> latest category seen
    # user -> (occurred_at, personalization) of their latest consent event
    consent: dict[str, tuple[float, bool]] = field(default_factory=dict)
    records: int = 0
    unreadable: int = 0
    other_tenants: int = 0


@dataclass(frozen=True)
class Exclusions:
    erased_at: dict[str, float]  # user -> erasure time (seconds since the epoch)
    opted_out: frozenset[str]  # users whose profile has personalization off


@dataclass(frozen=True)
class Interactions:
    rows: list[Interaction]
    categories: dict[str, str]
    counts: dict[str, int]  # what was read and what was dropped, for the report

    def users(self) -> set[str]:
        return {row.user_id for row in self.rows}


def positive(event: Event) -> Interaction | None:
    """The interaction an event is, if it is a positive (see the module docstring)."""
    liked = isinstance(event, FeedbackEvent) and event.rating >= POSITIVE_RATING
    if not (isinstance(event, ItemEvent) or liked) or event.item_id is None:
        return None
    return Interaction(
        user_id=event.user_id,
        item_id=event.item_id,
        at=event.occurred_at.timestamp(),
        kind=event.type,
        received_at=event.received_at.timestamp(),
    )


def add_event(events: EventLog, event: Event, tenant: str) -> None:
    if event.tenant != tenant:
        events.other_tenants += 1
        return
    if isinstance(event, ConsentEvent):
        at = event.occurred_at.timestamp()
        latest = events.consent.get(event.user_id)
        if latest is None or at >= latest[0]:
            events.consent[event.user_id] = (at, event.attributes.personalization)
        return
    found = positive(event)
    if found is None:
        return
    events.positives.append(found)
    if event.category is not None:
        events.categories[found.item_id] = event.category


def apply_exclusions(events: EventLog, exclusions: Exclusions) -> Interactions:
    """The positives of users who consent, less what an erasure removed (pure)."""
    opted_out = set(exclusions.opted_out) | {
        user for user, (_, allowed) in events.consent.items() if not allowed
    }
    kept: list[Interaction] = []
    erased = withheld = 0
    for row in events.positives:
        if row.user_id in opted_out:
            withheld += 1
            continue
        marker = exclusions.erased_at.get(row.user_id)
        if marker is not None and row.received_at <= marker:
            erased += 1
            continue
        kept.append(row)
    counts = {
        "records": events.records,
        "unreadable": events.unreadable,
        "other_tenants": events.other_tenants,
        "positives": len(events.positives),
        "dropped_opted_out": withheld,
        "dropped_erased": erased,
        "kept": len(kept),
        "users_kept": len({r.user_id for r in kept}),
        "users_opted_out": len(opted_out & {r.user_id for r in events.positives}),
        "users_erased": len(set(exclusions.erased_at) & {r.user_id for r in events.positives}),
    }
    return Interactions(rows=kept, categories=dict(events.categories), counts=counts)


# ---- the topic ----------------------------------------------------------------------------


async def topic_records(
    kafka: KafkaSettings, topic: str
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of every partition, from its beginning to where it ended when the read
    started (no consumer group: nothing is committed)."""
    consumer = create_consumer(kafka, group_id=None, fetch_max_wait_ms=FETCH_TIMEOUT_MS)
    try:
        await consumer.start()  # inside: a start that fails still closes the client
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer.topics()  # refresh the metadata once: the topic may be new to it
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async for record in read_until_end(consumer, tps, fetch_timeout_ms=FETCH_TIMEOUT_MS):
            yield record
    finally:
        await consumer.stop()


async def read_events(kafka: KafkaSettings, tenant: str, topic: str = EVENTS_TOPIC) -> EventLog:
    """The tenant's positives, item categories and consent events on the events topic."""
    found = EventLog()
    async for record in topic_records(kafka, topic):
        found.records += 1
        try:
            event = parse_value(record, SCHEMA_HEADER, parse_event)
        except PoisonRecord:
            found.unreadable += 1  # profile dead-letters it: it never counted
            continue
        if event is not None:
            add_event(found, event, tenant)
    return found


@dataclass(frozen=True)
class CatalogEntry:
    item_id: str
    title: str
    categories: tuple[str, ...]


@dataclass
class CatalogLog:
    """The tenant's items on the catalogue topic: the latest record of each."""

    items: dict[str, CatalogEntry] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    unreadable: int = 0


async def read_catalog(kafka: KafkaSettings, tenant: str, topic: str = CATALOG_TOPIC) -> CatalogLog:
    """Items posted as catalogue records (upserts replace, deletes retract); records of an
    item share a partition, so offset order is publication order."""
    found = CatalogLog()
    async for record in topic_records(kafka, topic):
        try:
            item = parse_value(record, CATALOG_SCHEMA_HEADER, CATALOG_RECORD.validate_json)
        except PoisonRecord:
            found.unreadable += 1
            continue
        if item is None or item.tenant != tenant:
            continue  # a compaction tombstone, or another tenant's
        if isinstance(item, CatalogUpsert):
            found.items[item.item_id] = CatalogEntry(
                item.item_id, item.title, tuple(item.categories)
            )
            found.deleted.discard(item.item_id)
        else:
            found.items.pop(item.item_id, None)
            found.deleted.add(item.item_id)
    return found


# ---- the profile store --------------------------------------------------------------------


async def read_exclusions(
    db: AsyncDatabase[Document], tenant: str, users: Iterable[str]
) -> Exclusions:
    """Erasure markers of these users, and the tenant's profiles with consent off."""
    by_pid = {profile_id(tenant, user): user for user in users}
    erased: dict[str, float] = {}
    pids = list(by_pid)
    for start in range(0, len(pids), QUERY_CHUNK):
        chunk = pids[start : start + QUERY_CHUNK]
        cursor = db[ERASURES_COLLECTION].find({"_id": {"$in": chunk}})
        async for doc in cursor:
            at: datetime = doc[ERASED_AT_FIELD]
            erased[by_pid[doc["_id"]]] = at.timestamp()
    opted_out = {
        str(doc["user_id"])
        async for doc in db[PROFILES_COLLECTION].find(
            {"tenant": tenant, CONSENT_VALUE_FIELD: False}, {"user_id": 1}
        )
    }
    return Exclusions(erased_at=erased, opted_out=frozenset(opted_out))


async def load(kafka: KafkaSettings, mongo: MongoSettings, tenant: str) -> Interactions:
    """One tenant's positives that may be used for training (see the module docstring)."""
    found = await read_events(kafka, tenant)
    client = create_mongo_client(mongo, app_name="rapport-models-retrain")
    try:
        users = {row.user_id for row in found.positives}
        exclusions = await read_exclusions(client[mongo.mongo_database], tenant, users)
    finally:
        await client.close()
    result = apply_exclusions(found, exclusions)
    log.info("interactions read", extra={"tenant": tenant, **result.counts})
    return result


def load_sync(kafka: KafkaSettings, mongo: MongoSettings, tenant: str) -> Interactions:
    return asyncio.run(load(kafka, mongo, tenant))
