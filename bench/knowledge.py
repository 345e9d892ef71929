"""Knowledge, the whole mesh local: indexing throughput, freshness, and what it costs respond.

Starts Tansu, nx-27017, Redis, Milvus Lite and Triton (the exported models), then
real ``rapport-profile``, ``rapport-recommend``, ``rapport-knowledge``,
``rapport-ingest`` and two ``rapport-respond`` processes: one with knowledge on,
one without (``RAPPORT_KNOWLEDGE_URL`` empty), on the same mesh.

1. **Indexing throughput**: ``--documents`` documents of about 120 words (5 chunks
   each), published through ingest in batches of 20, 4 requests in flight; the
   time from the first ``POST`` until the indexer has counted them all.
2. **Freshness**: a new version of a policy (a new number in its text) is
   ``POST``ed, then respond is asked about it in a loop until a reply's
   ``knowledge`` carries the new text: from the ``POST`` to that reply. Unloaded,
   then under ``--background`` documents/s of updates to other documents (an
   open loop in its own process; 40-word pages, two chunks each).
3. **respond at 300 req/s**, knowledge on against off, alternating, two rounds
   each: p50 and p99, and the parts respond degraded.

Every latency is printed beside its load level and written to
``bench/results/knowledge.json``.

    .venv/bin/python -m bench.knowledge [--seconds 8] [--rounds 40] [--documents 600]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import time
from typing import Any

import aiohttp

from bench.load import on_off_rounds
from bench.mesh import KEY, bench_mesh, cpu_ms_per, cpu_snapshot, metric_total, post_json, scrape
from bench.options import bounded, parser
from bench.results_file import write_results
from bench.stats import Stopwatch, histogram_quantile_ms, percentiles
from rapport.devstack.scrape import sample_sum, samples
from rapport.devstack.stack import Stack

QUESTION = "how long until my refund reaches my account?"
BACKGROUND_WORDS = 30  # a background update: a short page (two chunks)
POLL_S = 0.002
POLL_IN_FLIGHT = 1  # more callers would load the two cores the indexer needs
FILLER = (
    "Opening hours may change on public holidays, so please check the page of your local "
    "store before you travel. Staff can help with returns, repairs, gift wrapping and "
    "orders placed online, and most stores have a collection desk near the entrance. "
)


def store_document(n: int, words: int = 110) -> dict[str, str]:
    """A store's page: ``words`` of filler after its opening hour (120 words: 4 chunks)."""
    return {
        "doc_id": f"store-{n}",
        "title": f"Store {n}",
        "text": f"Store {n} opens at {8 + n % 3} in the morning. "
        + " ".join((FILLER * 2).split()[:words]),
    }


def refund_policy(days: int) -> dict[str, str]:
    return {
        "doc_id": "refund-timing",
        "title": "Refund timing",
        "text": f"Refunds reach your account {days} days after we receive the returned item.",
    }


def indexing(stack: Stack, ingest: str, knowledge: str, documents: int) -> dict[str, Any]:
    cpu_before = cpu_snapshot(stack)
    indexed_before = metric_total(knowledge, "rapport_knowledge_records_total")
    chunks_before = metric_total(knowledge, "rapport_knowledge_chunks_total")

    async def publish() -> None:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
            gate = asyncio.Semaphore(4)

            async def batch(start: int) -> None:
                docs = [store_document(n) for n in range(start, min(documents, start + 20))]
                async with (
                    gate,
                    session.post(f"{ingest}/v1/knowledge", json={"documents": docs}) as answer,
                ):
                    if answer.status != 202:
                        raise RuntimeError(f"ingest answered {answer.status}")

            await asyncio.gather(*(batch(s) for s in range(0, documents, 20)))

    with Stopwatch() as indexed:
        asyncio.run(publish())
        published = indexed.seconds
        deadline = time.monotonic() + 300
        while (
            metric_total(knowledge, "rapport_knowledge_records_total") - indexed_before < documents
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the indexer did not catch up within 300 s")
            time.sleep(0.05)
    took = indexed.seconds
    chunks = metric_total(knowledge, "rapport_knowledge_chunks_total") - chunks_before
    cpu = cpu_ms_per(cpu_before, cpu_snapshot(stack), int(chunks))
    page = scrape(knowledge)
    mean_ms = {
        s.labels["operation"]: 0.0
        for s in samples(page)
        if s.name.endswith("duration_seconds_sum") and "operation" in s.labels
    }
    for operation in mean_ms:
        total = sample_sum(
            page, "rapport_knowledge_store_duration_seconds_sum", operation=operation
        )
        count = sample_sum(
            page, "rapport_knowledge_store_duration_seconds_count", operation=operation
        )
        mean_ms[operation] = round(1000 * total / max(1.0, count), 2)
    row = {
        "scenario": "indexing",
        "mean_ms_per_call": mean_ms,
        "cpu_ms_per_chunk": cpu,
        "documents": documents,
        "chunks": int(chunks),
        "published_s": round(published, 2),
        "indexed_s": round(took, 2),
        "documents_per_s": round(documents / took, 1),
        "chunks_per_s": round(chunks / took, 1),
    }
    print(
        f"{'indexing':<26} {documents} documents ({int(chunks)} chunks) in {took:.1f} s: "
        f"{row['documents_per_s']} documents/s, {row['chunks_per_s']} chunks/s "
        f"(all published after {published:.1f} s); mean ms per call: {mean_ms}; "
        f"CPU ms per chunk: {cpu}",
        flush=True,
    )
    return row


def freshness(ingest: str, respond: str, rounds: int, first_days: int) -> list[float]:
    """Seconds from POSTing a new refund period to the first reply that cites it (a round
    that sees none within 30 s counts as 30 s).

    One caller asks again as soon as each reply comes (``POLL_IN_FLIGHT``), so a figure
    includes up to one reply's time after the index has it: more callers measured that
    more finely but took the CPU the indexer needs (p50 50 -> 330 ms with four).
    """

    async def rounds_of_polling() -> list[float]:
        took = []
        headers = {"Authorization": f"Bearer {KEY}"}
        body = {"user_id": "fresh", "session_id": "fresh", "message": QUESTION}
        async with aiohttp.ClientSession(headers=headers) as session:
            for days in range(first_days, first_days + rounds):
                needle = f"{days} days"
                cited = asyncio.Event()
                seen_at: list[float] = []  # seconds from the POST
                since = Stopwatch()  # the POST is next

                async def ask(
                    needle: str = needle,
                    cited: asyncio.Event = cited,
                    seen_at: list[float] = seen_at,
                    since: Stopwatch = since,
                ) -> None:
                    async with session.post(f"{respond}/v1/respond", json=body) as answer:
                        reply = await answer.json()
                    if any(needle in hit["snippet"] for hit in reply.get("knowledge", [])):
                        seen_at.append(since.seconds)
                        cited.set()

                async with session.post(
                    f"{ingest}/v1/knowledge", json=refund_policy(days)
                ) as answer:
                    if answer.status != 202:
                        raise RuntimeError(f"ingest answered {answer.status}")
                pending: set[asyncio.Task[None]] = set()
                while not cited.is_set() and since.seconds < 30:
                    if len(pending) < POLL_IN_FLIGHT:
                        task = asyncio.create_task(ask())
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(cited.wait(), POLL_S)
                if pending:
                    await asyncio.wait(pending)
                if not seen_at:
                    print(f"respond did not cite {needle!r} within 30 s", flush=True)
                took.append(min(seen_at, default=30.0))
                await asyncio.sleep(0.05)
        return took

    return asyncio.run(rounds_of_polling())


async def _background(url: str, seconds: float, rate: float) -> dict[str, Any]:
    """Open loop: one document per request at ``rate``, cycling over 500 doc_ids."""
    statuses: dict[int, int] = {}
    total = int(seconds * rate)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:

        async def one(n: int, planned: float) -> None:
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            document = store_document(n % 500, words=BACKGROUND_WORDS)
            async with session.post(url, json=document) as answer:
                await answer.read()
            statuses[answer.status] = statuses.get(answer.status, 0) + 1

        origin = time.perf_counter() + 0.1
        with Stopwatch() as elapsed:
            await asyncio.gather(*(one(i, origin + i / rate) for i in range(total)))
    return {"statuses": statuses, "elapsed": elapsed.seconds, "sent": total}


def _run_background(job: tuple[str, float, float], out: Any) -> None:
    out.put(asyncio.run(_background(*job)))


def freshness_buckets(knowledge: str) -> dict[float, float]:
    """The indexer's freshness histogram: cumulative count per upper bound (seconds)."""
    return {
        float(sample.labels["le"]): sample.value
        for sample in samples(scrape(knowledge))
        if sample.name == "rapport_knowledge_freshness_seconds_bucket"
    }


def indexer_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """The indexer's freshness p50 and p99 (ms) over the records between two scrapes."""
    return {
        f"indexer_p{q}_ms": histogram_quantile_ms(after, q / 100, since=before, digits=1)
        for q in (50, 99)
    }


def drained(knowledge: str, timeout_s: float = 300) -> None:
    """Until the indexer's record count stops moving for a second (its backlog is done)."""
    deadline = time.monotonic() + timeout_s
    last = -1.0
    while time.monotonic() < deadline:
        seen = metric_total(knowledge, "rapport_knowledge_records_total")
        if seen == last:
            return
        last = seen
        time.sleep(1.0)
    raise RuntimeError("the indexer was still busy after 300 s")


def freshness_rows(ingest: str, respond: str, knowledge: str, args: Any) -> list[dict[str, Any]]:
    rows = []
    buckets = freshness_buckets(knowledge)
    unloaded = freshness(ingest, respond, args.rounds, 1000)
    after = freshness_buckets(knowledge)
    rows.append(
        {
            "scenario": "freshness",
            "load": "unloaded",
            **percentiles(unloaded, digits=1, scale=1000, maximum=True),
            **indexer_quantiles(buckets, after),
        }
    )
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    # Long enough to cover the rounds; the process stops by itself.
    seconds = max(20.0, args.rounds * 0.6)
    background = ctx.Process(
        target=_run_background, args=((f"{ingest}/v1/knowledge", seconds, args.background), queue)
    )
    indexed_before = metric_total(knowledge, "rapport_knowledge_records_total")
    buckets = freshness_buckets(knowledge)
    background.start()
    time.sleep(2.0)  # the load is running before the first round
    with Stopwatch() as measured:
        loaded = freshness(ingest, respond, args.rounds, 5000)
    sent = queue.get(timeout=seconds + 120)
    background.join(timeout=30)
    indexed = metric_total(knowledge, "rapport_knowledge_records_total") - indexed_before
    after = freshness_buckets(knowledge)
    rows.append(
        {
            "scenario": "freshness",
            "load": f"{args.background:g} documents/s of background updates",
            "background_sent": sent["sent"],
            "background_statuses": {str(k): v for k, v in sent["statuses"].items()},
            "background_records_indexed_per_s": round(indexed / sent["elapsed"], 1),
            "rounds_s": round(measured.seconds, 1),
            **percentiles(loaded, digits=1, scale=1000, maximum=True),
            # Every record indexed meanwhile, background ones included (bucket bounds: coarse).
            **indexer_quantiles(buckets, after),
        }
    )
    for row in rows:
        print(
            f"{'freshness':<26} load={row['load']:<38} p50={row['p50_ms']} ms  "
            f"p99={row['p99_ms']} ms  max={row['max_ms']} ms  ({args.rounds} rounds); "
            f"indexer alone (POST to searchable, from its histogram): "
            f"p50={row['indexer_p50_ms']} ms  p99={row['indexer_p99_ms']} ms",
            flush=True,
        )
    return rows


def main() -> None:
    options = parser(__doc__, seconds=8.0, seconds_help="per respond level")
    options.add_argument("--rounds", type=int, default=40, help="freshness rounds per load")
    options.add_argument("--documents", type=int, default=600, help="for indexing throughput")
    options.add_argument("--background", type=float, default=100.0, help="documents/s")
    options.add_argument("--rate", type=float, default=300.0, help="respond's open loop, req/s")
    args = options.parse_args()
    seconds = bounded(args.seconds, 2.0, 60.0)
    rounds = bounded(args.rounds, 5, 500)
    args.rounds = rounds
    rows: list[dict[str, Any]] = []
    services = ["profile", "recommend", "knowledge", "ingest", "respond"]
    with bench_mesh(services, with_models=True) as started:
        without = started.start("respond", {"RAPPORT_KNOWLEDGE_URL": ""})
        ingest, knowledge = started.url("ingest"), started.url("knowledge")
        respond_on, respond_off = started.url("respond"), without.url("respond")

        documents = bounded(args.documents, 20, 20_000)
        rows.append(indexing(started.stack, ingest, knowledge, documents))
        post_json(f"{ingest}/v1/knowledge", json.dumps(refund_policy(999)).encode())
        rows.extend(freshness_rows(ingest, respond_on, knowledge, args))

        drained(knowledge)  # the background updates are all indexed: no CPU left to them
        payload = json.dumps(
            {"user_id": "bench-user", "session_id": "bench", "message": QUESTION}
        ).encode()
        # One connection: every reply fans out and searches; what a reply's search costs.
        rows += on_off_rounds(
            "knowledge",
            {"on": respond_on, "off": respond_off},
            payload,
            recommend=started.url("recommend"),
            rate=args.rate,
            seconds=seconds,
        )
    write_results("knowledge", rows, seconds_per_level=seconds, freshness_rounds=rounds)


if __name__ == "__main__":
    main()
