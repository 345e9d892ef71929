"""Pure decisions of the indexer: chunking a document, and what a batch changes. No I/O.

A document's key is a digest of its tenant and ``doc_id`` (ids are free text, keys
must quote safely in a store's expressions) and its chunks' ids are ``key/n``: a
new version overwrites chunks 0..n-1 in place and deletes the ids past its own
count, so no stale chunk survives and a duplicate write is a no-op. What is
indexed per document (the record offset applied, the chunk count, the encoder)
is kept beside the chunks; a record at or below the stored offset is skipped,
so a replay from offset 0 writes nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from pydantic import BaseModel, Field

from rapport.common.knowledge import KnowledgeDelete, KnowledgeUpsert

# The store's limit on a chunk's text, in bytes of UTF-8: a document may be one word
# of 32,768 characters, which no word count bounds.
MAX_CHUNK_BYTES = 16_384
_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def chunk_text(
    text: str, *, max_words: int = 30, overlap_words: int = 5, max_bytes: int = MAX_CHUNK_BYTES
) -> list[str]:
    """Passages of at most ``max_words``, cut at paragraph and sentence ends where possible.

    Sentences are packed into a passage until the next would not fit; a sentence
    longer than a passage is cut into windows that repeat ``overlap_words`` of the
    last one, so a fact across the cut is still whole in one of them. A passage over
    ``max_bytes`` (very long words) is cut into pieces that fit.
    """
    return [
        piece
        for chunk in _word_chunks(text, max_words, overlap_words)
        for piece in _fit(chunk, max_bytes)
    ]


def _word_chunks(text: str, max_words: int, overlap_words: int) -> list[str]:
    step = max(1, max_words - overlap_words)
    chunks: list[str] = []
    current: list[str] = []
    for paragraph in _PARAGRAPHS.split(text):
        for sentence in _SENTENCE_END.split(paragraph.strip()):
            words = sentence.split()
            if not words:
                continue
            if len(words) > max_words:
                if current:
                    chunks.append(" ".join(current))
                    current = []
                starts = range(0, max(1, len(words) - overlap_words), step)
                chunks.extend(" ".join(words[i : i + max_words]) for i in starts)
                continue
            if len(current) + len(words) > max_words:
                chunks.append(" ".join(current))
                current = []
            current.extend(words)
        if current and len(current) >= max_words // 2:
            chunks.append(" ".join(current))  # a long paragraph ends its passage
            current = []
    if current:
        chunks.append(" ".join(current))
    return chunks


def _fit(chunk: str, max_bytes: int) -> list[str]:
    """``chunk`` in pieces of at most ``max_bytes`` of UTF-8, cut between characters."""
    encoded = chunk.encode()
    pieces = []
    start = 0
    while len(encoded) - start > max_bytes:
        end = start + max_bytes
        while encoded[end] & 0xC0 == 0x80:  # a continuation byte: inside a character
            end -= 1
        pieces.append(encoded[start:end].decode())
        start = end
    pieces.append(encoded[start:].decode())
    return [piece for piece in (p.strip() for p in pieces) if piece]


def embedding_text(title: str, chunk: str) -> str:
    """What the encoder reads for a chunk: the title gives a passage its subject."""
    return f"{title}. {chunk}" if title else chunk


def document_key(tenant: str, doc_id: str) -> str:
    # NUL never occurs in an Identifier, so no two (tenant, doc_id) pairs join the same.
    return hashlib.sha256(f"{tenant}\0{doc_id}".encode()).hexdigest()[:32]


def chunk_id(key: str, index: int) -> str:
    return f"{key}/{index}"


@dataclass(frozen=True)
class Indexed:
    """What the store holds for a document: the record that made it, and its chunk count."""

    partition: int
    offset: int
    chunks: int  # 0 once deleted
    encoder: str  # the encoder its vectors came from


@dataclass(frozen=True)
class Change:
    """One document's latest record in a batch, where it came from, and what it replaces."""

    record: KnowledgeUpsert | KnowledgeDelete
    partition: int
    offset: int
    previous: Indexed | None  # what the store holds for the document

    @property
    def key(self) -> str:
        return document_key(self.record.tenant, self.record.doc_id)

    @property
    def published_at(self) -> datetime:
        return self.record.published_at

    @property
    def previous_chunks(self) -> int:
        return self.previous.chunks if self.previous else 0

    def stale_ids(self, new_chunks: int) -> list[str]:
        """The chunks of the previous version past the new one's count."""
        return [chunk_id(self.key, n) for n in range(new_chunks, self.previous_chunks)]

    def reservation(self, new_chunks: int, encoder: str) -> Indexed | None:
        """The state to store before writing more chunks than the stored state counts.

        A crash between those chunks and the new state would otherwise leave ids past
        the stored count, which the redelivered batch's own record (a later, shorter
        version or a delete) would not know to remove. The reservation raises the
        count and keeps the record applied before, so the redelivery is still applied.
        """
        if new_chunks <= self.previous_chunks:
            return None
        if self.previous is None:  # nothing applied yet: an offset every record is past
            return Indexed(self.partition, -1, new_chunks, encoder)
        return replace(self.previous, chunks=new_chunks)


@dataclass(frozen=True)
class Plan:
    changes: list[Change]
    already_indexed: int  # at or below what the store holds (a replay or a redelivery)


def latest_per_document(
    records: Iterable[tuple[KnowledgeUpsert | KnowledgeDelete, int, int]],
) -> tuple[dict[str, tuple[KnowledgeUpsert | KnowledgeDelete, int, int]], int]:
    """The last record of each document (records arrive in offset order per partition)."""
    latest: dict[str, tuple[KnowledgeUpsert | KnowledgeDelete, int, int]] = {}
    seen = 0
    for record, partition, offset in records:
        seen += 1
        latest[document_key(record.tenant, record.doc_id)] = (record, partition, offset)
    return latest, seen - len(latest)


def plan(
    latest: dict[str, tuple[KnowledgeUpsert | KnowledgeDelete, int, int]],
    indexed: dict[str, Indexed],
    encoder: str,
) -> Plan:
    """Which records to apply: those past what the store holds for their document.

    Offsets order a document's records only within one partition; a record from
    another partition (the topic was re-partitioned) is applied, and so is one
    whose document was embedded by another encoder (a replay after an upgrade).
    """
    changes = []
    skipped = 0
    for key, (record, partition, offset) in latest.items():
        current = indexed.get(key)
        if (
            current is not None
            and current.partition == partition
            and offset <= current.offset
            and current.encoder == encoder
        ):
            skipped += 1
            continue
        changes.append(Change(record, partition, offset, current))
    return Plan(changes, skipped)


def split_for_embedding(texts: Sequence[str], batch: int) -> list[Sequence[str]]:
    return [texts[i : i + batch] for i in range(0, len(texts), batch)]


# ---- the API's own models ------------------------------------------------------------


class IndexedChunk(BaseModel):
    chunk: int
    text: str


class IndexedDocument(BaseModel):
    """What the index holds for one document (``GET /v1/knowledge/{doc_id}``)."""

    doc_id: str
    title: str | None = None
    url: str | None = None
    chunks: list[IndexedChunk] = Field(default_factory=list)
    partition: int = Field(description="The record indexed last: its partition...")
    offset: int = Field(description="...and its offset on the knowledge topic.")
    encoder: str
