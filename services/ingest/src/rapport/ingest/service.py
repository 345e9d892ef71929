"""Accepting a request's events: check, deduplicate, produce, confirm.

The order matters for durability:

1. Every event is checked first; one bad event refuses the whole request
   (all-or-nothing), before anything is claimed or produced.
2. In one Redis round trip, the key's token bucket is charged one token per
   event and, if that is allowed, event ids are claimed
   (see :mod:`rapport.ingest.adapters.dedup`).
4. Claimed events are produced with ``acks=all``; the request waits for the
   broker's acknowledgement of every one, up to the produce deadline.
5. Only then are the claims confirmed and ``202`` returned. A deadline miss
   answers ``503`` with ``Retry-After`` and the event ids to retry with.

Redis is a cache here too: when it does not answer, rate limiting and the
duplicate check are skipped (counted and logged), and events are still
produced. Downstream consumers deduplicate by ``event_id``, so at worst Kafka
holds a record twice; an acknowledged event is never lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from uuid_utils.compat import uuid7

from rapport.common import catalog
from rapport.common.auth import ApiKey
from rapport.common.cache import REDIS_ERRORS
from rapport.common.catalog import CATALOG_SCHEMA_HEADER, CatalogItem
from rapport.common.events import EVENT_TYPES, SCHEMA_HEADER, EventIn, encode_for_topic
from rapport.common.identifiers import record_key
from rapport.common.knowledge import (
    KNOWLEDGE_SCHEMA_HEADER,
    KnowledgeDocument,
    delete_record,
    upsert_record,
)
from rapport.common.metrics import trace_exemplar
from rapport.common.problems import FieldError, ProblemError
from rapport.ingest.adapters.dedup import Admission, AdmissionStore, ClaimState
from rapport.ingest.adapters.log import EventLog
from rapport.ingest.domain import (
    CatalogItemResult,
    CatalogResult,
    DeletionResult,
    DocumentResult,
    EventResult,
    IngestResult,
    ItemDeletionResult,
    KnowledgeResult,
    check_catalog_items,
    check_documents,
    check_events,
)
from rapport.ingest.metrics import IngestMetrics
from rapport.ingest.settings import IngestSettings

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Item:
    index: int
    event: EventIn
    event_id: UUID
    value: bytes  # the record as it goes on the topic, server fields included
    key: str  # its idempotency key in Redis
    status: Literal["accepted", "duplicate"] = "accepted"


class IngestService:
    def __init__(
        self,
        settings: IngestSettings,
        *,
        log: EventLog,
        admission: AdmissionStore,
        metrics: IngestMetrics,
    ) -> None:
        self.settings = settings
        self.log = log
        self.admission = admission
        self.metrics = metrics
        self._background: set[asyncio.Task[None]] = set()

    async def ingest(self, events: Sequence[EventIn], caller: ApiKey) -> IngestResult:
        settings = self.settings
        if len(events) > settings.max_events:
            self.metrics.requests_refused.labels("too_many_events").inc()
            raise ProblemError(
                413,
                detail=f"At most {settings.max_events} events per request; got {len(events)}.",
            )
        now = datetime.now(UTC)
        errors = check_events(events, now=now, max_future_skew_s=settings.max_future_skew_s)
        if errors:
            self.count_rejected(events)
            raise ProblemError(
                422,
                title="Invalid events",
                detail="Nothing from this request was accepted; see `errors`.",
                slug="validation",
                errors=errors,
            )
        items = []
        for index, event in enumerate(events):
            # Server fields: the tenant from the key, never from the body; a sortable id if none.
            event_id = event.event_id or uuid7()
            value = encode_for_topic(
                event, event_id=event_id, received_at=now, tenant=caller.tenant
            )
            key = AdmissionStore.event_key(caller.tenant, str(event_id))
            items.append(_Item(index, event, event_id, value, key))
        to_produce, in_flight_elsewhere, checked = await self._admit(caller, items)
        await self._produce(to_produce, items)
        if in_flight_elsewhere:
            raise self._unavailable(
                items, "Some event ids are being produced by another request; retry shortly."
            )
        for item in items:
            self.metrics.events.labels(item.event.type, item.status).inc()
        duplicates = sum(item.status == "duplicate" for item in items)
        return IngestResult(
            accepted=len(items) - duplicates,
            duplicates=duplicates,
            dedup_checked=checked,
            events=[
                EventResult(index=item.index, event_id=item.event_id, status=item.status)
                for item in items
            ],
        )

    def count_rejected(self, events: Sequence[Any]) -> None:
        """Count refused events by type; raw input only ever yields a known type or ``unknown``."""
        for event in events:
            event_type = (
                event.get("type") if isinstance(event, dict) else getattr(event, "type", None)
            )
            label = event_type if event_type in EVENT_TYPES else "unknown"
            self.metrics.events.labels(label, "rejected").inc()

    async def _admit(
        self, caller: ApiKey, items: list[_Item]
    ) -> tuple[list[_Item], list[_Item], bool]:
        """Rate-limit, then claim ids: what to produce, what another request is producing,
        and whether Redis answered. Raises 429 when the key's bucket is empty."""
        first_of: dict[str, _Item] = {}
        unique: list[_Item] = []
        for item in items:
            if item.key in first_of:
                item.status = "duplicate"  # the same id twice in one request
            else:
                first_of[item.key] = item
                unique.append(item)
        try:
            admission = await self._take_tokens(
                caller, len(items), [item.key for item in unique], "event rate"
            )
        except REDIS_ERRORS:
            self.metrics.dedup_unavailable.inc()
            log.warning("redis unavailable: no rate limit and no duplicate check for this request")
            return unique, [], False
        to_produce, elsewhere = [], []
        for item, state in zip(unique, admission.states, strict=True):
            if state is ClaimState.NEW:
                to_produce.append(item)
            elif state is ClaimState.DONE:
                item.status = "duplicate"
            else:
                elsewhere.append(item)
        return to_produce, elsewhere, True

    async def _produce(self, to_produce: list[_Item], items: list[_Item]) -> None:
        """Produce and wait for every acknowledgement, or raise 503 after the deadline."""
        if not to_produce:
            return
        started = time.perf_counter()
        delivery = await self.log.publish(
            self.settings.topic,
            [(item.event.user_id.encode(), item.value) for item in to_produce],
            header=SCHEMA_HEADER,
            deadline_s=self.settings.produce_timeout_ms / 1000,
        )
        self.metrics.produce_duration.observe(
            time.perf_counter() - started, exemplar=trace_exemplar()
        )
        acked = [to_produce[i] for i in delivery.acked]
        if delivery.complete:
            await self._settle(confirm=acked, release=[])
            return
        failed = [to_produce[i] for i in delivery.failed + delivery.unsent]
        await self._settle(confirm=acked, release=failed)
        for future, indexes in delivery.pending.items():
            self._watch(future, [to_produce[i] for i in indexes])
        self.metrics.requests_refused.labels("broker_unavailable").inc()
        raise self._unavailable(
            items, "The event log did not acknowledge in time; retry with the same event ids."
        )

    async def _settle(self, *, confirm: list[_Item], release: list[_Item]) -> None:
        try:
            await self.admission.confirm([item.key for item in confirm])
            await self.admission.release([item.key for item in release])
        except REDIS_ERRORS:
            # A claim left behind expires after dedup_pending_ttl_s; until then a retry gets 503.
            log.warning("could not settle idempotency keys", extra={"count": len(confirm)})

    def _watch(self, future: asyncio.Future[Any], items: list[_Item]) -> None:
        """Settle a produce that outlived its request, once the broker answers."""

        async def settle() -> None:
            try:
                await future
            except Exception:  # the produce failed: let a retry claim the ids again
                await self._settle(confirm=[], release=items)
            else:
                await self._settle(confirm=items, release=[])

        task = asyncio.get_running_loop().create_task(settle())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _unavailable(self, items: list[_Item], detail: str) -> ProblemError:
        return ProblemError(
            503,
            detail=detail,
            slug="unavailable",
            headers={"Retry-After": str(self.settings.retry_after_s)},
            extra={"event_ids": [str(item.event_id) for item in items]},
        )

    # ---- knowledge: documents onto rapport.knowledge.v1 --------------------------------

    async def publish_documents(
        self, documents: Sequence[KnowledgeDocument], caller: ApiKey
    ) -> KnowledgeResult:
        """Produce one version of each document; ``202`` only once the broker has them all.

        No idempotency store: a document is keyed by its ``doc_id``, so publishing the
        same version twice leaves the index as once (the indexer overwrites in place).
        """
        settings = self.settings
        self._check_batch(
            len(documents),
            limit=settings.max_documents,
            noun="documents",
            errors=lambda: check_documents(documents),
            count_rejected=self.count_rejected_documents,
        )
        await self._charge(caller, len(documents))
        now = datetime.now(UTC)
        records = [
            (
                record_key(caller.tenant, d.doc_id),
                upsert_record(d, tenant=caller.tenant, published_at=now),
            )
            for d in documents
        ]
        await self._produce_records(settings.knowledge_topic, records, KNOWLEDGE_SCHEMA_HEADER)
        self.metrics.documents.labels("upsert", "accepted").inc(len(documents))
        return KnowledgeResult(
            accepted=len(documents),
            documents=[
                DocumentResult(index=i, doc_id=d.doc_id, status="accepted")
                for i, d in enumerate(documents)
            ],
        )

    async def delete_document(self, doc_id: str, caller: ApiKey) -> DeletionResult:
        """Publish the document's deletion; the indexer removes every chunk of it."""
        await self._charge(caller, 1)
        record = delete_record(doc_id, tenant=caller.tenant, published_at=datetime.now(UTC))
        await self._produce_records(
            self.settings.knowledge_topic,
            [(record_key(caller.tenant, doc_id), record)],
            KNOWLEDGE_SCHEMA_HEADER,
        )
        self.metrics.documents.labels("delete", "accepted").inc()
        return DeletionResult(doc_id=doc_id, status="accepted")

    def count_rejected_documents(self, count: int) -> None:
        self.metrics.documents.labels("upsert", "rejected").inc(count)

    # ---- the catalogue: items onto rapport.catalog.v1 ----------------------------------

    async def publish_catalog_items(
        self, items: Sequence[CatalogItem], caller: ApiKey
    ) -> CatalogResult:
        """Produce one version of each item; ``202`` only once the broker has them all.

        No idempotency store, as for documents: an item is keyed by its ``item_id``, and
        recommend's overlay keeps the latest version of each.
        """
        settings = self.settings
        self._check_batch(
            len(items),
            limit=settings.max_catalog_items,
            noun="catalogue items",
            errors=lambda: check_catalog_items(items),
            count_rejected=self.count_rejected_catalog_items,
        )
        await self._charge(caller, len(items))
        now = datetime.now(UTC)
        records = [
            (
                record_key(caller.tenant, item.item_id),
                catalog.upsert_record(item, tenant=caller.tenant, published_at=now),
            )
            for item in items
        ]
        await self._produce_records(settings.catalog_topic, records, CATALOG_SCHEMA_HEADER)
        self.metrics.catalog_items.labels("upsert", "accepted").inc(len(items))
        return CatalogResult(
            accepted=len(items),
            items=[
                CatalogItemResult(index=i, item_id=item.item_id, status="accepted")
                for i, item in enumerate(items)
            ],
        )

    async def delete_catalog_item(self, item_id: str, caller: ApiKey) -> ItemDeletionResult:
        """Publish the item's retraction; recommend stops offering it."""
        await self._charge(caller, 1)
        record = catalog.delete_record(
            item_id, tenant=caller.tenant, published_at=datetime.now(UTC)
        )
        await self._produce_records(
            self.settings.catalog_topic,
            [(record_key(caller.tenant, item_id), record)],
            CATALOG_SCHEMA_HEADER,
        )
        self.metrics.catalog_items.labels("delete", "accepted").inc()
        return ItemDeletionResult(item_id=item_id, status="accepted")

    def count_rejected_catalog_items(self, count: int) -> None:
        self.metrics.catalog_items.labels("upsert", "rejected").inc(count)

    def _check_batch(
        self,
        count: int,
        *,
        limit: int,
        noun: str,
        errors: Callable[[], list[FieldError]],
        count_rejected: Callable[[int], None],
    ) -> None:
        """A keyed batch (documents, catalogue items) is refused whole: too large (413),
        or any item invalid (422, naming each)."""
        if count > limit:
            self.metrics.requests_refused.labels(f"too_many_{noun.replace(' ', '_')}").inc()
            raise ProblemError(413, detail=f"At most {limit} {noun} per request; got {count}.")
        if found := errors():
            count_rejected(count)
            raise ProblemError(
                422,
                title=f"Invalid {noun}",
                detail="Nothing from this request was accepted; see `errors`.",
                slug="validation",
                errors=found,
            )

    async def _charge(self, caller: ApiKey, cost: int) -> None:
        """The key's token bucket, as for events; without Redis, no limit (counted)."""
        try:
            await self._take_tokens(caller, cost, [], "rate")
        except REDIS_ERRORS:
            self.metrics.dedup_unavailable.inc()
            log.warning("redis unavailable: no rate limit for this request")

    async def _take_tokens(
        self, caller: ApiKey, cost: int, event_keys: list[str], limit: str
    ) -> Admission:
        """Charge ``cost`` tokens to the key's bucket and claim ``event_keys``, in one Redis
        round trip; 429 (``Retry-After``) when the bucket is empty. Redis errors propagate:
        the caller decides what goes on without it."""
        admission = await self.admission.admit(
            caller.id,
            rate=caller.rate_per_s or self.settings.rate_per_s,
            burst=caller.burst or self.settings.rate_burst,
            cost=cost,
            event_keys=event_keys,
        )
        if not admission.rate.allowed:
            self.metrics.requests_refused.labels("rate_limited").inc()
            raise ProblemError(
                429,
                detail=f"This API key is over its {limit}; retry after the indicated delay.",
                slug="rate-limited",
                headers={"Retry-After": admission.rate.retry_after_header},
            )
        return admission

    async def _produce_records(
        self, topic: str, records: list[tuple[bytes, bytes]], header: tuple[str, bytes]
    ) -> None:
        """Produce and wait for every acknowledgement, or answer 503 after the deadline."""
        started = time.perf_counter()
        delivery = await self.log.publish(
            topic, records, header=header, deadline_s=self.settings.produce_timeout_ms / 1000
        )
        self.metrics.produce_duration.observe(
            time.perf_counter() - started, exemplar=trace_exemplar()
        )
        if delivery.complete:
            return
        for future in delivery.pending:  # a late acknowledgement must not log as unretrieved
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.metrics.requests_refused.labels("broker_unavailable").inc()
        raise ProblemError(
            503,
            detail="The log did not acknowledge in time; retry the same request.",
            slug="unavailable",
            headers={"Retry-After": str(self.settings.retry_after_s)},
        )

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait for produces that outlived their requests (on shutdown)."""
        if self._background:
            await asyncio.wait(self._background, timeout=timeout_s)
