"""Retrieval quality of the knowledge search on public data, and the template-mode threshold.

An FAQ knowledge base is built from CLINC150 train: one document per in-scope
intent (``doc_id`` the intent, the title the intent with spaces, the text its
first ``--per-doc`` train utterances as sentences), chunked with the product's
own ``chunk_text`` and read as ``embedding_text(title, chunk)``, as the indexer
does. A document's score for a query is the best of its chunks. The 3,000
in-scope CLINC150 val messages are the queries; the right document is their
intent. Systems, on the same queries in the same run:

- **encoder**: the product's sentence encoder (the int8 all-MiniLM-L6-v2 graph
  that Triton serves; a repository test holds offline and Triton vectors to a
  cosine >= 0.999), run offline with onnxruntime, one text at a time, and an
  exact numpy search by inner product. The knowledge store's Milvus index is
  FLAT with inner product on unit vectors, i.e. exact cosine, so this ranks
  the chunks as the product's search does.
- **BM25**: ``rank_bm25.BM25Okapi`` over the same chunk texts (lower case,
  ``\\w+`` tokens).
- **hybrid**: reciprocal rank fusion of the two document rankings (k = 60).

Metrics: recall@1, recall@3 and MRR over the full ranking of the 150
documents (a tie counts against the right document), and the mean time per
query on this machine, offline (no network, no Triton, no Milvus).

The threshold at which template mode answers from the best passage (encoder
only) is chosen on train messages that no document holds: the next
``--held-out`` utterances of each intent (positives) and train's ``oos``
messages (negatives). A query is *answered* when its best score reaches t,
*correctly* when the best document is its intent. With precision = correct /
answered and recall = correct / in-scope queries, t is the lowest threshold
whose precision reaches ``--precision`` (0.9: a reply quotes a company
document only when it is the right one nine times in ten; F1's best is printed
beside it). The chunk size is chosen the same way, on those train messages, by
the encoder's recall@1 over ``CHUNK_WORDS``. Both are then reported on val,
which never took part in choosing them.
Writes ``bench/results/knowledge_quality.json``.

    .venv/bin/python -m bench.knowledge_quality [--per-doc 10] [--held-out 20] [--precision 0.9]
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rank_bm25 import BM25Okapi

from bench.options import parser
from bench.results_file import write_results
from bench.stats import Stopwatch
from rapport.knowledge.domain import chunk_text, embedding_text
from rapport.models import encoder, pipeline

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_CSV = REPO_ROOT / "data" / "clinc150" / "train.csv"
VAL_CSV = REPO_ROOT / "data" / "clinc150" / "val.csv"
OUT_OF_SCOPE = "oos"
RRF_K = 60
GRID = [round(0.20 + 0.01 * i, 2) for i in range(71)]  # 0.20 .. 0.90
CHUNK_WORDS = (120, 60, 30)  # the indexer's chunk size (RAPPORT_KNOWLEDGE_CHUNK_WORDS)
FIXED = (0.3, 0.4, 0.5, 0.6, 0.7)  # 0.3: respond's knowledge_min_score
WARMUP = 20
_TOKEN = re.compile(r"\w+")

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]


@dataclass(frozen=True)
class Example:
    text: str
    intent: str


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Chunks:
    """Every document's chunks as the product embeds them, grouped by document in order."""

    texts: list[str]
    starts: Ints  # index of each document's first chunk (for np.maximum.reduceat)


@dataclass(frozen=True)
class Answering:
    """Template mode at one threshold: who gets an answer, and how many are right."""

    threshold: float
    precision: float
    recall: float
    f1: float
    oos_answered: float | None  # share of out-of-scope queries answered, when there are any


def read_examples(path: Path) -> list[Example]:
    with path.open(newline="") as handle:
        return [Example(row["text"], row["intent"]) for row in csv.DictReader(handle)]


def as_sentence(text: str) -> str:
    text = text.strip()
    return text if text[-1:] in (".", "!", "?") else f"{text}."


def by_intent(examples: Sequence[Example]) -> dict[str, list[str]]:
    """In-scope utterances per intent, in file order; intents sorted by name."""
    grouped: dict[str, list[str]] = {}
    for example in examples:
        if example.intent != OUT_OF_SCOPE:
            grouped.setdefault(example.intent, []).append(example.text)
    return dict(sorted(grouped.items()))


def build_faq(examples: Sequence[Example], per_doc: int) -> list[Document]:
    """One document per in-scope intent: its first ``per_doc`` utterances, one sentence each."""
    return [
        Document(
            intent, intent.replace("_", " "), " ".join(as_sentence(t) for t in texts[:per_doc])
        )
        for intent, texts in by_intent(examples).items()
    ]


def held_out(examples: Sequence[Example], per_doc: int, count: int) -> list[Example]:
    """Train queries no document holds: utterances ``per_doc .. per_doc+count`` of each
    intent, then every out-of-scope one."""
    chosen = [
        Example(text, intent)
        for intent, texts in by_intent(examples).items()
        for text in texts[per_doc : per_doc + count]
    ]
    return chosen + [e for e in examples if e.intent == OUT_OF_SCOPE]


def chunk_documents(documents: Sequence[Document], words: int = 120) -> Chunks:
    texts: list[str] = []
    starts: list[int] = []
    for document in documents:
        starts.append(len(texts))
        pieces = chunk_text(document.text, max_words=words, overlap_words=words // 6)
        texts.extend(embedding_text(document.title, piece) for piece in pieces)
    return Chunks(texts, np.asarray(starts, np.int64))


def document_scores(chunk_scores: NDArray[Any], starts: Ints) -> Floats:
    """Each document's score per query (rows): the best of its chunks (columns, grouped)."""
    return np.maximum.reduceat(np.asarray(chunk_scores, np.float64), starts, axis=-1)


def ranks(scores: Floats, truth: Ints) -> Ints:
    """1-based rank of each query's right document; tied documents rank ahead of it."""
    right = scores[np.arange(len(truth)), truth][:, None]
    return np.asarray((scores >= right).sum(axis=1), np.int64)


def recall_at(rank: Ints, k: int) -> float:
    return float(np.mean(rank <= k))


def mean_reciprocal_rank(rank: Ints) -> float:
    return float(np.mean(1.0 / rank))


def fuse(*scores: Floats, k: int = RRF_K) -> Floats:
    """Reciprocal rank fusion of several score matrices (queries x documents)."""
    fused = np.zeros_like(scores[0])
    for matrix in scores:
        order = np.argsort(-matrix, axis=1, kind="stable")
        position = np.empty_like(order)
        np.put_along_axis(position, order, np.arange(matrix.shape[1])[None, :], axis=1)
        fused += 1.0 / (k + position + 1)
    return fused


def answering(best: Floats, correct: Bools, in_scope: Bools, threshold: float) -> Answering:
    """Template mode at ``threshold``: ``best`` is each query's top score, ``correct``
    whether its top document is its intent (always false out of scope)."""
    answered = best >= threshold
    right = int(np.sum(answered & correct & in_scope))
    precision = right / int(answered.sum()) if answered.any() else 0.0
    recall = right / int(in_scope.sum()) if in_scope.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out = ~in_scope
    oos = float(answered[out].mean()) if out.any() else None
    return Answering(threshold, precision, recall, f1, oos)


def best_f1(
    best: Floats, correct: Bools, in_scope: Bools, grid: Sequence[float] = GRID
) -> Answering:
    """The threshold of ``grid`` with the highest F1 (the lowest such on a tie)."""
    chosen = answering(best, correct, in_scope, grid[0])
    for threshold in grid[1:]:
        candidate = answering(best, correct, in_scope, threshold)
        if candidate.f1 > chosen.f1:
            chosen = candidate
    return chosen


def choose_threshold(
    best: Floats,
    correct: Bools,
    in_scope: Bools,
    precision: float,
    grid: Sequence[float] = GRID,
) -> Answering:
    """The lowest threshold of ``grid`` whose precision reaches ``precision`` (it answers
    the most messages at that precision); the most precise one when none does."""
    figures = [answering(best, correct, in_scope, t) for t in grid]
    reaching = [f for f in figures if f.precision >= precision]
    if reaching:
        return reaching[0]
    return max(figures, key=lambda f: f.precision)


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def quality(system: str, scores: Floats, truth: Ints, ms: float) -> dict[str, Any]:
    rank = ranks(scores, truth)
    return {
        "system": system,
        "queries": len(truth),
        "recall_at_1": round(recall_at(rank, 1), 4),
        "recall_at_3": round(recall_at(rank, 3), 4),
        "mrr": round(mean_reciprocal_rank(rank), 4),
        "ms_per_query_offline": round(ms, 3),
    }


def describe(label: str, figures: Answering) -> str:
    oos = "n/a" if figures.oos_answered is None else f"{figures.oos_answered:.3f}"
    return (
        f"{label} t={figures.threshold:.2f}: precision {figures.precision:.3f}, "
        f"recall {figures.recall:.3f}, oos answered {oos}"
    )


def as_dict(figures: Answering) -> dict[str, Any]:
    return {
        "threshold": figures.threshold,
        "precision": round(figures.precision, 4),
        "recall": round(figures.recall, 4),
        "f1": round(figures.f1, 4),
        "oos_answered": None if figures.oos_answered is None else round(figures.oos_answered, 4),
    }


def search_one_at_a_time(
    model: Any, chunk_vectors: NDArray[Any], bm25: Any, chunks: Chunks, queries: Sequence[Example]
) -> tuple[Floats, Floats, dict[str, float]]:
    """Document scores of every query by the encoder and by BM25, one query at a time as
    the product searches, and the mean ms per query of each (and of fusing the two)."""
    for example in queries[:WARMUP]:  # the first runs warm the session up
        model.encode([example.text])
    encoder_scores = np.zeros((len(queries), len(chunks.starts)))
    bm25_scores = np.zeros((len(queries), len(chunks.starts)))
    took = {"encoder": 0.0, "bm25": 0.0, "fusion": 0.0}
    for row, example in enumerate(queries):
        with Stopwatch() as encoding:
            vector = model.encode([example.text])[0]
            encoder_scores[row] = document_scores(chunk_vectors @ vector, chunks.starts)
        with Stopwatch() as keywords:
            tokens = tokenize(example.text)
            bm25_scores[row] = document_scores(bm25.get_scores(tokens), chunks.starts)
        with Stopwatch() as fusing:
            fuse(encoder_scores[row : row + 1], bm25_scores[row : row + 1])
        took["encoder"] += encoding.seconds
        took["bm25"] += keywords.seconds
        took["fusion"] += fusing.seconds
    ms = {name: 1000 * total / len(queries) for name, total in took.items()}
    return encoder_scores, bm25_scores, ms


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    print()
    print("| system | recall@1 | recall@3 | MRR | ms/query (offline) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['system']} | {r['recall_at_1']:.3f} | {r['recall_at_3']:.3f} | "
            f"{r['mrr']:.3f} | {r['ms_per_query_offline']:.2f} |"
        )
    print()


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--per-doc", type=int, default=10, help="train utterances per document")
    options.add_argument(
        "--held-out", type=int, default=20, help="further train utterances per intent, for t"
    )
    options.add_argument(
        "--precision", type=float, default=0.9, help="template mode's precision target, for t"
    )
    args = options.parse_args()
    if args.per_doc < 1 or args.held_out < 1:
        options.error("--per-doc and --held-out must be at least 1")

    train = read_examples(TRAIN_CSV)
    val = read_examples(VAL_CSV)
    documents = build_faq(train, args.per_doc)
    doc_index = {d.doc_id: i for i, d in enumerate(documents)}
    queries = [e for e in val if e.intent != OUT_OF_SCOPE]
    truth = np.asarray([doc_index[e.intent] for e in queries], np.int64)
    tuning = held_out(train, args.per_doc, args.held_out)
    model = encoder.load(pipeline.default_encoder(progress=False))
    model.one_at_a_time = True

    def vectors(texts: Sequence[str]) -> NDArray[Any]:
        return np.asarray(encoder.encode_many(model, list(texts)))

    # The chunk size, chosen on the train messages no document holds.
    tuning_vectors = vectors([e.text for e in tuning])
    tuning_truth = np.asarray([doc_index.get(e.intent, -1) for e in tuning])
    tuning_in_scope = tuning_truth >= 0
    sweep = []
    for words in CHUNK_WORDS:
        candidate = chunk_documents(documents, words)
        scores = document_scores(tuning_vectors @ vectors(candidate.texts).T, candidate.starts)
        rank = ranks(scores[tuning_in_scope], tuning_truth[tuning_in_scope])
        sweep.append({"chunk_words": words, "train_recall_at_1": round(recall_at(rank, 1), 4)})
    chunk_words = max(sweep, key=lambda r: r["train_recall_at_1"])["chunk_words"]
    for row in sweep:
        print(f"chunk {row['chunk_words']} words: train recall@1 {row['train_recall_at_1']:.3f}")
    chunks = chunk_documents(documents, int(chunk_words))
    print(
        f"{len(documents)} documents, {len(chunks.texts)} chunks of up to {chunk_words} words; "
        f"{len(queries)} val queries; threshold tuned on {len(tuning)} train queries "
        f"({sum(e.intent == OUT_OF_SCOPE for e in tuning)} out of scope)"
    )

    with Stopwatch() as encoding:
        chunk_vectors = vectors(chunks.texts)
    print(f"encoded the chunks in {encoding.seconds:.1f} s")
    bm25 = BM25Okapi([tokenize(t) for t in chunks.texts])

    encoder_scores, bm25_scores, ms = search_one_at_a_time(
        model, chunk_vectors, bm25, chunks, queries
    )
    rows = [
        quality("encoder (int8 MiniLM, exact cosine)", encoder_scores, truth, ms["encoder"]),
        quality("BM25 (rank_bm25 Okapi)", bm25_scores, truth, ms["bm25"]),
        quality(
            f"hybrid (RRF k={RRF_K})",
            fuse(encoder_scores, bm25_scores),
            truth,
            ms["encoder"] + ms["bm25"] + ms["fusion"],
        ),
    ]
    print_table(rows)

    def template_mode(
        examples_vectors: NDArray[Any], examples: Sequence[Example]
    ) -> tuple[Floats, Bools, Bools]:
        scores = document_scores(examples_vectors @ chunk_vectors.T, chunks.starts)
        in_scope = np.asarray([e.intent != OUT_OF_SCOPE for e in examples])
        right = np.asarray([doc_index.get(e.intent, -1) for e in examples])
        return scores.max(axis=1), scores.argmax(axis=1) == right, in_scope

    on_train = template_mode(tuning_vectors, tuning)
    chosen = choose_threshold(*on_train, args.precision)
    print(describe(f"chosen on train (precision >= {args.precision})", chosen))
    print(describe("best F1 on train, for comparison", best_f1(*on_train)))
    on_val = template_mode(vectors([e.text for e in val]), val)
    at_chosen = answering(*on_val, chosen.threshold)
    print(describe("on val", at_chosen))
    fixed = [answering(*on_val, t) for t in FIXED]
    for figures in fixed:
        print(describe("on val, fixed", figures))

    write_results(
        "knowledge_quality",
        rows,
        threshold={
            "grid": [GRID[0], GRID[-1], 0.01],
            "rule": f"lowest t with train precision >= {args.precision}",
            "chosen_on_train": as_dict(chosen),
            "val_at_chosen": as_dict(at_chosen),
            "val_at_fixed": [as_dict(f) for f in fixed],
        },
        setup={
            "data": "CLINC150 (data/clinc150)",
            "documents": len(documents),
            "chunks": len(chunks.texts),
            "per_doc": args.per_doc,
            "chunk_words": chunk_words,
            "chunk_sweep_on_train": sweep,
            "held_out_per_intent": args.held_out,
            "tuning_queries": len(tuning),
            "tuning_oos": sum(e.intent == OUT_OF_SCOPE for e in tuning),
            "val_queries_in_scope": len(queries),
            "val_queries_oos": len(val) - len(queries),
            "encoder": str(model.id),
            "timing": "offline on this machine, one query at a time, mean over the val queries",
        },
    )


if __name__ == "__main__":
    main()
