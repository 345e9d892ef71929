"""``rapport-profile redact-again`` (or ``python -m rapport.profile.redact_again``): today's
redaction over what older rules let through into storage. A one-off job, run once after an
upgrade that widens ``domain/pii.py``; it reads the profile service's own settings.

Chat text is redacted before anything is stored, by the rules of the day. This job pages
through everything that holds chat text and redacts it again:

- every remembered message in the vector store: when its text changes, the row is
  upserted with the same id, time, encoder and vector. The vector stays as it is: like
  every vector there it was computed by the client from the message as it was said, so it
  embeds the original wording (it is no text, and a recall by meaning keeps working);
- every message still waiting in MongoDB for the vector store (``waiting_writes``,
  ``adapters/waiting.py``), its text in place;
- every profile's facts in MongoDB: a fact whose value the rules now redact is dropped
  (a value is a place, a diet, a thing; redacted, it says nothing), compare-and-set on
  the profile's version as every writer does;

then republishes every user it changed (their view, and the recall set read back from
the vector store), so Redis no longer serves the old text. Idempotent: a second run
changes nothing. The counts are printed as one JSON object; ``--dry-run`` counts
without writing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from redis.asyncio import Redis

from rapport.common.cache import REDIS_ERRORS, create_redis
from rapport.common.milvus import connect
from rapport.common.mongo import Document, create_mongo_client
from rapport.common.published import recall_key, view_key
from rapport.common.settings import load_settings
from rapport.common.telemetry import configure_logging
from rapport.profile.adapters.memory import MemoryStore
from rapport.profile.adapters.published import Publisher
from rapport.profile.adapters.store import COMPARE_AND_SET_ATTEMPTS, ProfileStore, from_document
from rapport.profile.adapters.waiting import WaitingWrites
from rapport.profile.domain.pii import redact
from rapport.profile.domain.state import Profile
from rapport.profile.metrics import ProfileMetrics
from rapport.profile.settings import ProfileSettings

log = logging.getLogger(__name__)


@dataclass
class Counts:
    messages_scanned: int = 0
    messages_changed: int = 0
    waiting_scanned: int = 0
    waiting_changed: int = 0
    profiles_scanned: int = 0
    profiles_changed: int = 0
    facts_dropped: int = 0
    users_republished: int = 0
    users_not_republished: int = 0  # Redis away, or the profile kept changing

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Job:
    """What the job reads and writes; ``memory`` None when there is no vector store."""

    store: ProfileStore
    publisher: Publisher
    memory: MemoryStore | None
    waiting: WaitingWrites
    page: int = 500
    dry_run: bool = False


async def redact_again(job: Job) -> Counts:
    counts = Counts()
    touched: set[str] = set()
    if job.memory is not None and await job.memory.exists():
        async for rows in job.memory.pages(job.page):
            counts.messages_scanned += len(rows)
            again = [replace(r, text=redact(r.text)) for r in rows]
            changed = [new for new, old in zip(again, rows, strict=True) if new.text != old.text]
            counts.messages_changed += len(changed)
            touched.update(r.pid for r in changed)
            if changed and not job.dry_run:
                await job.memory.write(changed)  # same id, time, encoder and vector
    await _waiting(job, counts, touched)
    await _facts(job, counts, touched)
    if not job.dry_run:
        for pid in sorted(touched):
            if await _republish(job, pid):
                counts.users_republished += 1
            else:
                counts.users_not_republished += 1
    return counts


async def _waiting(job: Job, counts: Counts, touched: set[str]) -> None:
    """Messages queued for the vector store while it was away: the text in place, and the
    queue time kept, so the drain that writes them still removes them."""
    async for doc in _keyset(job.waiting.collection, {"op": "upsert"}, job.page):
        counts.waiting_scanned += 1
        text = redact(str(doc["text"]))
        if text == doc["text"]:
            continue
        counts.waiting_changed += 1
        touched.add(str(doc["pid"]))
        if not job.dry_run:
            await job.waiting.collection.update_one(
                {"_id": doc["_id"], "queued_at": doc["queued_at"]}, {"$set": {"text": text}}
            )


async def _facts(job: Job, counts: Counts, touched: set[str]) -> None:
    with_facts = {"facts": {"$elemMatch": {"k": {"$exists": True}}}}  # stored as pairs
    async for doc in _keyset(job.store.profiles, with_facts, job.page):
        counts.profiles_scanned += 1
        pid = str(doc["_id"])
        profile = from_document(doc)
        for _ in range(COMPARE_AND_SET_ATTEMPTS):
            dropped = _drop_redacted_facts(profile)
            if not dropped:
                break
            if job.dry_run:
                counts.facts_dropped += dropped
                counts.profiles_changed += 1
                break
            loaded = profile.version
            profile.version += 1
            if not await job.store.save({pid: (loaded, profile)}, existing=[pid]):
                counts.facts_dropped += dropped
                counts.profiles_changed += 1
                touched.add(pid)
                break
            reloaded = (await job.store.load([pid])).get(pid)  # the processor wrote it
            if reloaded is None:
                break  # erased meanwhile: nothing left to redact
            profile = reloaded
        else:
            log.warning("profile kept changing: facts not redacted again")


def _drop_redacted_facts(profile: Profile) -> int:
    gone = [key for key, fact in profile.facts.items() if redact(fact.value) != fact.value]
    for key in gone:
        del profile.facts[key]
    return len(gone)


async def _republish(job: Job, pid: str) -> bool:
    """The user's view and whole recall set, as MongoDB and the vector store hold them now.
    A newer version published meanwhile was published from a newer profile, so its view
    is right but its recall set may still hold old entries: then again, at that version."""
    for _ in range(COMPARE_AND_SET_ATTEMPTS):
        profile = (await job.store.load([pid])).get(pid)
        if profile is None:
            return True  # erased, or never saved: nothing published to replace
        kept = {r.memory_id for r in profile.remembered}
        rows = await job.memory.rows_of(pid) if job.memory is not None and kept else []
        rows += await job.waiting.rows_of(pid) if kept else []  # not in the store yet
        unique = {row.memory_id: row for row in rows if row.memory_id in kept}
        entries = [row.recall_entry() for row in unique.values()]
        args = job.publisher.replace_args(profile, datetime.now(UTC), entries)
        try:
            applied = await job.publisher.script(keys=[view_key(pid), recall_key(pid)], args=args)
        except REDIS_ERRORS:
            return False  # what Redis holds expires by its TTL
        if applied:
            return True
    return False


async def _keyset(
    collection: AsyncCollection[Document], query: dict[str, Any], size: int
) -> AsyncIterator[Document]:
    """Every matching document, in ``_id`` order, ``size`` at a time (no cursor stays
    open while the job writes)."""
    after: Any = None
    while True:
        where = query if after is None else {**query, "_id": {"$gt": after}}
        page = [doc async for doc in collection.find(where).sort("_id", 1).limit(size)]
        for doc in page:
            yield doc
        if len(page) < size:
            return
        after = page[-1]["_id"]


async def run(settings: ProfileSettings, *, page: int, dry_run: bool) -> Counts:
    async with contextlib.AsyncExitStack() as stack:
        mongo = create_mongo_client(settings, app_name=f"{settings.service_name}-redact")
        stack.push_async_callback(mongo.close)
        redis: Redis = create_redis(settings, client_name=f"{settings.service_name}-redact")
        stack.push_async_callback(redis.aclose)
        memory = None
        if settings.milvus_uri:
            client = connect(settings.milvus_uri, settings)
            stack.push_async_callback(client.close)
            memory = MemoryStore(
                client,
                collection=settings.memory_collection,
                dimension=settings.memory_dimension,
                metrics=ProfileMetrics(settings.service_name),
            )
        db = mongo[settings.mongo_database]
        job = Job(
            store=ProfileStore(db),
            publisher=Publisher(redis, settings.rules, settings.cache_ttl_s),
            memory=memory,
            waiting=WaitingWrites(db),
            page=page,
            dry_run=dry_run,
        )
        return await redact_again(job)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rapport-profile redact-again",
        description="Redact stored chat text again with today's rules (a one-off job; "
        "settings from the RAPPORT_PROFILE_* environment, as the service reads them).",
    )
    parser.add_argument("--page", type=int, default=500, help="rows or documents per read")
    parser.add_argument("--dry-run", action="store_true", help="count, change nothing")
    args = parser.parse_args(argv)
    if not 1 <= args.page <= 10_000:
        parser.error("--page must be between 1 and 10000")
    settings = load_settings(ProfileSettings)
    configure_logging(settings.service_name, settings.log_level)
    counts = asyncio.run(run(settings, page=args.page, dry_run=args.dry_run))
    print(json.dumps({"dry_run": args.dry_run, **counts.as_dict()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
