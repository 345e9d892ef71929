"""Faults around the knowledge indexer: the index must come out equal to the documents.

The documents are built so that their chunks are known in advance (an oracle):
each passage is one paragraph of twenty words, which the indexer's chunking
(paragraph and sentence ends, ``CHUNK_WORDS`` words at most) keeps whole, one
chunk each, and every passage names its document, version and number. After the
faults the whole chunk collection is read back and compared with the last
record of every document.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pymilvus import AsyncMilvusClient

from rapport.chaos.harness import (
    PARTITIONS,
    TENANT,
    GroupWatch,
    Harness,
    Lane,
    Row,
    eventually,
    metric,
)
from rapport.chaos.scale import Scale
from rapport.chaos.stream import committed_at_least
from rapport.common.identifiers import record_key
from rapport.common.kafka import TopicSpec, ensure_topics
from rapport.common.knowledge import (
    KNOWLEDGE_SCHEMA_HEADER,
    KnowledgeDocument,
    delete_record,
    upsert_record,
)
from rapport.common.knowledge_index import chunks_collection
from rapport.common.milvus import literal
from rapport.devstack.events import Record, produce
from rapport.devstack.faults import DelayProxy
from rapport.devstack.servers import RunningServer, ServerSpec
from rapport.devstack.stack import infra_spec
from rapport.devstack.waiting import wait_until

# Twenty words a passage: over half of CHUNK_WORDS, so a paragraph ends its chunk, and
# under it, so no passage is cut. The indexer is started with this chunk size.
CHUNK_WORDS = 30
PASSAGE_WORDS = 20
MAX_PASSAGES = 6
MILVUS_LATENCY_S = 0.03
WORDS = ("refund", "parcel", "invoice", "store", "voucher", "courier", "receipt", "member")


@dataclass
class Documents:
    """Every record produced, in order, and what the index must hold at the end."""

    records: list[Record] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    # doc_id -> (title, passages) of its last version; an empty tuple once deleted
    final: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)

    @property
    def expected_chunks(self) -> int:
        return sum(len(passages) for _, passages in self.final.values())


def passage(rng: random.Random, doc_id: str, version: int, number: int) -> str:
    head = [doc_id, f"v{version}", f"p{number}"]
    return " ".join(head + rng.choices(WORDS, k=PASSAGE_WORDS - len(head)))


def documents(rng: random.Random, count: int) -> Documents:
    """``count`` records: new documents, new versions of recent ones (most with another
    passage count, so versions both grow and shrink), deletes, and a few documents
    published again after their delete."""
    out = Documents()
    versions: dict[str, int] = {}
    counts: dict[str, int] = {}
    alive: list[str] = []
    deleted: list[str] = []
    now = datetime.now(UTC)
    for _ in range(count):
        roll = rng.random()
        if roll < 0.35 or len(alive) < 10:
            doc_id, kind = f"doc-{len(versions)}", "new"
        elif roll < 0.83:
            recent = alive[-40:] if rng.random() < 0.6 else alive
            doc_id, kind = rng.choice(recent), "version"
        elif roll < 0.97 or not deleted:
            doc_id, kind = alive[rng.randrange(len(alive))], "delete"
        else:
            doc_id, kind = deleted.pop(rng.randrange(len(deleted))), "republished"
        version = versions[doc_id] = versions.get(doc_id, 0) + 1
        out.kinds[kind] += 1
        key = record_key(TENANT, doc_id)
        if doc_id in alive:
            alive.remove(doc_id)
        if kind == "delete":
            deleted.append(doc_id)
            value = delete_record(doc_id, tenant=TENANT, published_at=now)
            out.final[doc_id] = ("", ())
        else:
            alive.append(doc_id)  # the most recently touched last
            choices = [n for n in range(1, MAX_PASSAGES + 1) if n != counts.get(doc_id)]
            counts[doc_id] = rng.choice(choices)
            title = f"{doc_id} version {version}"
            passages = tuple(passage(rng, doc_id, version, n) for n in range(counts[doc_id]))
            document = KnowledgeDocument(doc_id=doc_id, title=title, text="\n\n".join(passages))
            value = upsert_record(document, tenant=TENANT, published_at=now)
            out.final[doc_id] = (title, passages)
        out.records.append((key, value, [KNOWLEDGE_SCHEMA_HEADER]))
    return out


@dataclass
class Comparison:
    found: int = 0
    stale: int = 0  # a chunk the last version does not have (an older one's, a deleted one's)
    missing: int = 0
    duplicates: int = 0  # a second row of the same id, or of the same document and number


def compare(expected: Documents, rows: list[dict[str, Any]]) -> Comparison:
    result = Comparison(found=len(rows))
    ids: Counter[str] = Counter(str(row["id"]) for row in rows)
    places: Counter[tuple[str, int]] = Counter((row["doc_id"], int(row["chunk"])) for row in rows)
    result.duplicates = sum(n - 1 for n in ids.values()) + sum(n - 1 for n in places.values())
    found = {(row["doc_id"], int(row["chunk"]), row["title"], row["text"]) for row in rows}
    wanted = {
        (doc_id, number, title, text)
        for doc_id, (title, passages) in expected.final.items()
        for number, text in enumerate(passages)
    }
    result.stale = len(found - wanted)
    result.missing = len(wanted - found)
    return result


class ChunkReader:
    """The whole chunk collection of the tenant, read by chunk number: each query returns
    at most one row per document (duplicates aside), far under Milvus's result window."""

    def __init__(self, uri: str, collection: str) -> None:
        self.client = AsyncMilvusClient(uri=uri)
        self.collection = chunks_collection(collection)

    async def all(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        where = f"tenant == {literal(TENANT)}"
        for number in range(MAX_PASSAGES):
            rows += await self._query(f"{where} and chunk == {number}")
        return rows + await self._query(f"{where} and chunk >= {MAX_PASSAGES}")

    async def _query(self, where: str) -> list[dict[str, Any]]:
        found = await self.client.query(
            self.collection,
            filter=where,
            output_fields=["id", "doc_id", "chunk", "title", "text"],
            limit=16_384,
            consistency_level="Strong",
        )
        return list(found)

    async def close(self) -> None:
        await self.client.close()


async def kill_after_chunks(h: Harness, indexer: RunningServer) -> bool:
    """SIGKILL as soon as the indexer has written a batch's chunks, before that batch's
    document state and its commit: the crash hardest to recover from. False if no chunk
    write came (killed all the same)."""
    written = await chunk_writes(h, indexer)
    grew = partial(chunk_writes_past, h, indexer, written)
    waited = await wait_until(grew, 60, interval_s=0.005, retry_on=(Exception,))
    await h.kill(indexer)
    return waited is not None


async def chunk_writes(h: Harness, indexer: RunningServer) -> float:
    """How many times the indexer has written a batch's chunks (its store histogram)."""
    name = "rapport_knowledge_store_duration_seconds_count"
    return await metric(indexer.url(), h.http, name, operation="upsert_chunks")


async def chunk_writes_past(h: Harness, indexer: RunningServer, count: float) -> bool:
    return await chunk_writes(h, indexer) > count


async def documents_served(
    h: Harness, knowledge: RunningServer, expected: Documents
) -> tuple[int, int]:
    """(agree, disagree): ``GET /v1/knowledge/{doc_id}`` against the last version of each
    document (the document state the indexer keeps beside the chunks)."""
    gate = asyncio.Semaphore(8)

    async def agrees(doc_id: str, passages: tuple[str, ...]) -> bool:
        url = f"{knowledge.url()}/v1/knowledge/{doc_id}"
        async with gate, h.http.get(url, headers=h.auth) as response:
            if not passages:
                return response.status == 404
            body = await response.json() if response.status == 200 else {}
            return [c["text"] for c in body.get("chunks", [])] == list(passages)

    verdicts = await asyncio.gather(
        *(agrees(doc_id, passages) for doc_id, (_, passages) in expected.final.items())
    )
    return sum(verdicts), len(verdicts) - sum(verdicts)


# ---- 10. kill -9 the indexer ----------------------------------------------------------------


async def indexer_setup(h: Harness, lane: Lane) -> tuple[ServerSpec, str]:
    """The lane's compacted topic, a Milvus Lite of this row and the indexer's spec (on the
    shared Triton's encoder); and that Milvus's URI.

    The indexer reaches Milvus through a proxy that delays each answer by
    ``MILVUS_LATENCY_S``, as a remote cluster would: the moments between a batch's
    chunk write and its state write are then long enough for a kill to land in them.
    """
    await ensure_topics(
        h.kafka(),
        [
            TopicSpec(lane.topic, PARTITIONS, config=(("cleanup.policy", "compact"),)),
            TopicSpec(lane.dlq, 1),
        ],
    )
    triton = await h.ensure_triton()
    milvus = await h.start(infra_spec("milvus", h.log_dir))
    host, _, port = milvus.url().removeprefix("http://").rpartition(":")
    proxy = await DelayProxy(host, int(port)).start()
    h.scope.push_async_callback(proxy.stop)
    proxy.delay_s = MILVUS_LATENCY_S
    spec = h.service(
        "knowledge",
        lane,
        infra={**h.infra, **triton.urls, "milvus": proxy.url},
        env={
            "RAPPORT_KNOWLEDGE_TOPIC": lane.topic,
            "RAPPORT_KNOWLEDGE_DLQ_TOPIC": lane.dlq,
            "RAPPORT_KNOWLEDGE_GROUP_ID": lane.group(),
            "RAPPORT_KNOWLEDGE_COLLECTION": lane.database,
            "RAPPORT_KNOWLEDGE_CHUNK_WORDS": str(CHUNK_WORDS),
            # Tansu holds a dead member's partitions for about two sessions: keep them short.
            "RAPPORT_KNOWLEDGE_SESSION_TIMEOUT_MS": "2000",
            "RAPPORT_KNOWLEDGE_HEARTBEAT_INTERVAL_MS": "500",
        },
    )
    return spec, milvus.url()


async def kill_indexer(h: Harness, rows: list[Row], scale: Scale) -> None:
    row = Row(
        "10",
        f"kill -9 knowledge indexer x{scale.kills}, each right after a chunk write, during "
        f"{scale.knowledge_documents:,} documents (versions, deletes; Milvus "
        f"+{MILVUS_LATENCY_S * 1000:.0f} ms)",
        "index == last versions; 0 stale/missing/dup",
    )
    rows.append(row)
    lane = Lane("knowledge")
    spec, milvus_uri = await indexer_setup(h, lane)
    kafka = h.kafka()
    rng = random.Random(10)
    docs = documents(rng, scale.knowledge_documents)
    # As row 1, a slice is produced while no indexer runs: the first batch after a restart
    # redelivers the killed one's uncommitted records with the next slice's. Each indexer
    # is killed once it has committed a random part of its slice, so the kills are spread
    # over the stream and each lands with work in hand, inside a batch.
    slice_ = scale.knowledge_documents // (scale.kills + 1)
    at_start: list[int] = []
    at_kill: list[int] = []
    produced: list[int] = []
    resumed: list[float] = []  # from each start to the group's next commit
    after_chunks: list[bool] = []

    async def restart(watch: GroupWatch) -> RunningServer:
        started = time.monotonic()
        at_start.append(await watch.committed())
        server = await h.start(spec)
        await eventually(partial(committed_at_least, watch, at_start[-1] + 1), 120)
        resumed.append(time.monotonic() - started)
        return server

    async with GroupWatch(kafka, lane.topic, lane.group()) as watch:
        started = time.monotonic()
        for i in range(scale.kills):
            await produce(kafka, lane.topic, docs.records[i * slice_ : (i + 1) * slice_])
            produced.append((i + 1) * slice_)
            indexer = await restart(watch)
            target = at_start[-1] + int(rng.uniform(0.1, 0.7) * (produced[-1] - at_start[-1]))
            await eventually(partial(committed_at_least, watch, target), 120)
            after_chunks.append(await kill_after_chunks(h, indexer))
            at_kill.append(await watch.committed())
        await produce(kafka, lane.topic, docs.records[scale.kills * slice_ :])
        final_start = time.monotonic()
        indexer = await restart(watch)
        caught_up = await eventually(
            partial(committed_at_least, watch, len(docs.records)), scale.drain_timeout_s
        )
        catch_up_s = time.monotonic() - final_start
        seconds = time.monotonic() - started
    reader = ChunkReader(milvus_uri, lane.database)
    try:
        result = compare(docs, await reader.all())
    finally:
        await reader.close()
    agree, disagree = await documents_served(h, indexer, docs)

    row.figures = {
        "records": len(docs.records),
        "new / versions / deletes / republished": " / ".join(
            str(docs.kinds[k]) for k in ("new", "version", "delete", "republished")
        ),
        "kills": len(at_kill),
        "committed at each kill": ", ".join(f"{n:,}" for n in at_kill),
        "chunks expected": docs.expected_chunks,
        "found": result.found,
        "stale": result.stale,
        "missing": result.missing,
        "duplicates": result.duplicates,
        "GET disagrees": disagree,
        "resume s (mean)": round(sum(resumed) / len(resumed), 1),
        "catch-up s": round(catch_up_s, 1),
        "seconds": round(seconds, 1),
    }
    row.check(
        "every kill mid-stream, after progress",
        all(s < k < p for s, k, p in zip(at_start[:-1], at_kill, produced, strict=True)),
    )
    row.check("every kill right after a chunk write", all(after_chunks))
    row.check("drained", caught_up is not None)
    row.check("0 stale", result.stale == 0)
    row.check("0 missing", result.missing == 0)
    row.check("0 duplicates", result.duplicates == 0)
    row.check("chunk count == last versions", result.found == docs.expected_chunks)
    row.check("GET agrees for every document", disagree == 0 and agree == len(docs.final))
