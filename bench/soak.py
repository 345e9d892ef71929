"""The soak: mixed traffic at half of saturation for 10 minutes; flat RSS, no errors, nothing lost.

The mesh as ``make up`` runs it (``rapport.devstack.stack.start_mesh``: Tansu, nx-27017,
Redis, Milvus Lite, Triton with the built models, the five services, memory and
knowledge on by their defaults) under :func:`bench.mesh.bench_plan` (the bench key, quiet
logs, 1% of traces), with respond in LLM mode against the fake upstream
(``rapport.devstack.fake_llm``, a process of its own). Then:

1. **Seed**: message vectors from recommend (``vector: true``); the knowledge documents'
   first versions; every memory user and speaker filled to memory's cap (200 remembered
   messages: chat messages with a vector through ingest), so the vector store and the
   recall sets are in their steady state (each new message evicts the oldest) before
   anything is measured.
2. **Saturation**: a short closed-loop ramp of the mix (``--ramp-levels`` connections,
   ``--ramp-seconds`` each); the saturation is the best level's rate of the whole mix
   (``mix_rate``: each kind's 2xx/s over its share, the lowest: the bottleneck, the
   replies once respond sheds).
3. **Soak**: the mix open loop at ``--load-share`` (half) of it for ``--duration``
   seconds (latency from each operation's planned send time): single events through
   ingest (item views, searches, purchases, and chat messages that carry a vector),
   replies (``POST /v1/respond`` and ``POST /v1/chat/completions``), document versions
   through ingest's ``POST /v1/knowledge``, and recalls (profile's
   ``POST /v1/profiles/{id}/memory/recall``). Every ~5 s (``--interval``) the RSS of
   each process of the mesh (VmRSS with psutil, a server's children included: Triton's
   Python stubs) is sampled.
4. **Checks**, polled until they hold or ``--settle`` seconds pass:
   - RSS flat: for each process, (median of the last window - median of the first
     window after the warm-up) / the latter, under 10%; the warm-up is ``--warmup``
     (default 20% of the duration), a window is a minute, or a third of what follows
     the warm-up when that is shorter (so the two never overlap);
   - errors: non-2xx answers and transport errors, per kind, under 0.1% of all;
   - nothing lost: each event user's profile counts exactly the events ingest accepted
     (per type, and its version); each memory user's vector store rows are exactly the
     newest 200 of its accepted chat messages (none missing, none stale) and its profile
     says 200; each speaker's profile counts every reply respond recorded, and its
     messages in the vector store are the newest 200 (replies with a vector first); each
     document's index holds its last accepted version, every chunk of it and nothing
     else.

Output: the saturation ramp, one row per kind (the load beside every latency), a
timeline, the RSS table with a sparkline per process, PASS/FAIL per criterion;
``bench/results/soak.json`` and ``bench/results/soak_rss.png`` (RSS against time, one
panel per process, the warm-up and both windows marked).

    .venv/bin/python -m bench.soak                                # the 10-minute soak
    .venv/bin/python -m bench.soak --duration 90 --warmup 30      # a short check of it
    .venv/bin/python -m bench.soak --rate 20                      # no ramp: 20 ops/s
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing as mp
import queue
import shutil
import statistics
import time
import urllib.error
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from bench.mesh import (
    KEY,
    bench_plan,
    fake_llm_spec,
    get_json,
    metric_total,
    post_json,
    scrape,
    scratch,
)
from bench.options import bounded, parser
from bench.results_file import RESULTS, write_results
from bench.stats import Stopwatch, percentiles
from rapport.common.milvus import literal
from rapport.common.profiles import profile_id
from rapport.devstack import models, processes
from rapport.devstack.scrape import sample_sum
from rapport.devstack.stack import Stack, installed_services, services_for, start_mesh
from rapport.knowledge.domain import chunk_text
from rapport.profile.settings import ProfileSettings

REPO = Path(__file__).resolve().parents[1]
TENANT = "bench"  # the bench key's (bench.mesh.bench_plan)
DURATION_S = 600.0
WARMUP_SHARE = 0.2  # of the duration, when --warmup is not given
WINDOW_S = 60.0  # the first and last windows whose medians are compared
INTERVAL_S = 5.0
RAMP_LEVELS = (2, 4, 8, 16)
RAMP_SECONDS = 6.0
LOAD_SHARE = 0.5
SETTLE_S = 120.0  # how long the checks may take to hold after the load
REQUEST_TIMEOUT_S = 10.0
MAX_GROWTH = 0.10
MAX_ERROR_SHARE = 0.001

# What the mix sends, per 20 operations (interleaved evenly, see `interleave`).
MIX = {"event": 10, "respond": 4, "completion": 2, "recall": 3, "document": 1}
EVENT_TYPES = ("item_view", "search", "purchase", "chat_message")
EVENT_USERS = 256
MEMORY_USERS = 16
SPEAKERS = 32
DOCUMENTS = 40
# Profile's defaults, as the mesh runs it: remembered messages per user, and where.
MEMORY_CAP: int = ProfileSettings.model_fields["memory_max_messages"].default
MEMORY_COLLECTION: str = ProfileSettings.model_fields["memory_collection"].default
PREFILL_BATCH = 100

STATEMENTS = (
    "I'm vegetarian and I live in Lyon.",
    "My budget is under 50 euros.",
    "I have two kids and I love sci-fi.",
    "I'm allergic to peanuts, just so you know.",
)
QUESTIONS = (
    "what should I watch tonight?",
    "what is your refund policy?",
    "any dinner ideas for me?",
    "how long does shipping take?",
    "can you suggest something for the weekend?",
)
QUERIES = ("space opera", "family comedy", "heist thriller", "french drama")
CATEGORIES = ("Sci-Fi", "Comedy", "Thriller", "Drama")
TOPICS = ("refunds", "shipping", "gift cards", "membership", "rentals")
NAMES = {
    "kafka": "Tansu (kafka)",
    "mongo": "nx-27017 (mongo)",
    "redis": "Redis",
    "milvus": "Milvus Lite",
    "triton": "Triton + stubs",
    "fake-llm": "fake LLM",
}
# Why a process's memory may follow the data it holds rather than leak (printed beside it).
HOLDS_DATA = {
    "kafka": "Tansu's memory:// storage keeps every record produced (a broker keeps them on disk)",
    "milvus": "rows are capped here (200 a user), but deleted rows stay until compaction",
    "redis": "ingest keeps each accepted event id for 24 h",
    "mongo": "a fixed set of bounded profiles here: not more data (a cache filling, or a leak)",
}
# The local broker's memory is its log: growth is the records produced, not a leak (its
# figure is still printed). Production runs Kafka, whose log is on disk.
NOT_JUDGED = ("kafka",)
SPARKS = "▁▂▃▄▅▆▇█"


def event_users() -> list[str]:
    return [f"soak-ev-{i:03d}" for i in range(EVENT_USERS)]


def memory_users() -> list[str]:
    return [f"soak-mem-{i:02d}" for i in range(MEMORY_USERS)]


def speakers() -> list[str]:
    return [f"soak-sp-{i:02d}" for i in range(SPEAKERS)]


def doc_ids() -> list[str]:
    return [f"soak-doc-{i:02d}" for i in range(DOCUMENTS)]


def document(doc_id: str, version: int) -> dict[str, str]:
    """One version of a document: every sentence names the version, so any chunk of an
    older one is told apart from the current ones."""
    topic = TOPICS[int(doc_id[-2:]) % len(TOPICS)]
    text = " ".join(
        f"Revision {version} of the {topic} policy, part {k}: customers {verb} "
        f"within {7 * k} days and support answers every question about {topic} quickly."
        for k, verb in enumerate(("ask for help", "get an answer", "can follow up"), 1)
    )
    return {"doc_id": doc_id, "title": f"Soak {topic} ({doc_id})", "text": text}


# ---- pure parts (unit-tested) ----------------------------------------------------------


def interleave(weights: Mapping[str, int]) -> list[str]:
    """One cycle of the mix, each kind as often as its weight and spread evenly (smooth
    weighted round robin), so any stretch of operations has the mix's proportions."""
    total = sum(weights.values())
    current = dict.fromkeys(weights, 0)
    cycle = []
    for _ in range(total):
        for kind, weight in weights.items():
            current[kind] += weight
        chosen = max(current, key=lambda k: current[k])
        current[chosen] -= total
        cycle.append(chosen)
    return cycle


def warmup_for(duration_s: float, warmup_s: float | None) -> float:
    """The warm-up: as given, else ``WARMUP_SHARE`` of the duration."""
    return duration_s * WARMUP_SHARE if warmup_s is None else warmup_s


def window_for(duration_s: float, warmup_s: float) -> float:
    """A minute, or a third of what follows the warm-up when that is shorter, so the first
    and the last window after the warm-up never overlap."""
    return min(WINDOW_S, max(0.0, duration_s - warmup_s) / 3)


@dataclass(frozen=True)
class Growth:
    first_mib: float  # median of the first window after the warm-up
    last_mib: float  # median of the last window
    growth: float  # (last - first) / first
    samples: tuple[int, int]  # in each window


def rss_growth(
    series: Sequence[tuple[float, float]], *, warmup_s: float, end_s: float, window_s: float
) -> Growth | None:
    """From ``(seconds since the load began, MiB)`` samples: the growth between the median
    of ``[warmup, warmup + window)`` and that of ``[end - window, end]``; None when either
    window holds no sample."""
    first = [mib for t, mib in series if warmup_s <= t < warmup_s + window_s]
    last = [mib for t, mib in series if end_s - window_s <= t <= end_s]
    if not first or not last:
        return None
    a, b = statistics.median(first), statistics.median(last)
    return Growth(
        round(a, 1), round(b, 1), round((b - a) / a, 4) if a else math.inf, (len(first), len(last))
    )


def sparkline(values: Sequence[float], width: int = 48) -> str:
    """``values`` as one line of block characters from the lowest to the highest, averaged
    into at most ``width`` buckets; a flat series is a flat line of the lowest block."""
    if not values:
        return ""
    buckets = min(width, len(values))
    means = []
    for b in range(buckets):
        part = values[b * len(values) // buckets : (b + 1) * len(values) // buckets]
        means.append(sum(part) / len(part))
    low, high = min(means), max(means)
    if high - low <= 1e-9 * max(1.0, abs(high)):
        return SPARKS[0] * buckets
    top = len(SPARKS) - 1
    return "".join(SPARKS[round((m - low) / (high - low) * top)] for m in means)


def newest(messages: Sequence[tuple[str, str]], cap: int = MEMORY_CAP) -> set[str]:
    """The ids memory keeps of ``(event_id, occurred_at ISO)`` messages: the newest ``cap``
    by time, then id (profile's ``learn``), as ``m-<event_id>``."""
    ordered = sorted((datetime.fromisoformat(at), f"m-{eid}") for eid, at in messages)
    return {memory_id for _, memory_id in ordered[-cap:]}


def error_counts(calls: Sequence[Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """Per kind: the calls, the errors (not 2xx, or no answer: status 0), their share, and
    each status counted; ``calls`` rows are ``(t, kind, ms, status)``."""
    out: dict[str, dict[str, Any]] = {}
    for _, kind, _, status in calls:
        row = out.setdefault(kind, {"calls": 0, "errors": 0, "statuses": Counter()})
        row["calls"] += 1
        row["errors"] += not 200 <= status < 300
        row["statuses"][str(status)] += 1
    for row in out.values():
        row["share"] = round(row["errors"] / row["calls"], 6) if row["calls"] else 0.0
        row["statuses"] = dict(sorted(row["statuses"].items()))
    return out


def timeline(calls: Sequence[Sequence[Any]], bucket_s: float) -> list[dict[str, Any]]:
    """Per ``bucket_s`` of the load: operations/s, errors, p50/p99 of every kind together
    and of the replies alone."""
    buckets: dict[int, list[Sequence[Any]]] = {}
    for call in calls:
        buckets.setdefault(int(call[0] // bucket_s), []).append(call)
    rows = []
    for b in sorted(buckets):
        part = buckets[b]
        replies = [c[2] for c in part if c[1] in ("respond", "completion")]
        rows.append(
            {
                "from_s": round(b * bucket_s, 1),
                "ops_per_s": round(len(part) / bucket_s, 1),
                "errors": sum(1 for c in part if not 200 <= c[3] < 300),
                **percentiles([c[2] for c in part]),
                **percentiles(replies, prefix="replies_"),
            }
        )
    return rows


def merge_counts(target: dict[str, list[int]], extra: Mapping[str, Sequence[int]]) -> None:
    """Add ``extra``'s per-key count vectors into ``target``."""
    for key, counts in extra.items():
        mine = target.setdefault(key, [0] * len(counts))
        for i, n in enumerate(counts):
            mine[i] += n


def mix_rate(calls: Sequence[Sequence[Any]], seconds: float, weights: Mapping[str, int]) -> float:
    """Operations/s of the whole mix a level served: each kind's 2xx/s over its share of
    the mix, the lowest of them. Answers shed or failed do not count, so a level where
    replies are shed (cheap answers, the rest of the mix still flowing) is held to what
    its bottleneck served, not to its total."""
    total = sum(weights.values())
    ok = Counter(c[1] for c in calls if 200 <= c[3] < 300)
    return round(min(ok[k] / seconds / (w / total) for k, w in weights.items()), 1)


# ---- the load generator: a process of its own per phase --------------------------------


@dataclass(frozen=True)
class Targets:
    ingest: str
    profile: str
    respond: str
    vectors: tuple[dict[str, Any], ...]  # message vectors from recommend (MessageVector JSON)
    completion_model: str


@dataclass(frozen=True)
class Phase:
    kind: str  # "closed" (level: connections) or "open" (level: operations/s)
    level: float
    seconds: float


@dataclass
class Traffic:
    """One phase of the mix and everything it must have left behind."""

    targets: Targets
    http: Any  # aiohttp.ClientSession
    origin: float = field(default_factory=time.perf_counter)
    cycle: list[str] = field(default_factory=lambda: interleave(MIX))
    counters: Counter[str] = field(default_factory=Counter)
    calls: list[tuple[float, str, float, int]] = field(default_factory=list)
    events: dict[str, list[int]] = field(default_factory=dict)  # "user|type" -> [ok, unsure]
    memory: list[tuple[str, str, str, str]] = field(default_factory=list)  # user, id, at, outcome
    replies: dict[str, list[int]] = field(default_factory=dict)  # user -> [rec, vec, unsure]
    degraded: Counter[str] = field(default_factory=Counter)
    documents: list[tuple[str, int, str]] = field(default_factory=list)  # doc, version, outcome
    recalls: Counter[str] = field(default_factory=Counter)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    async def post(self, url: str, body: Any) -> tuple[int, bytes]:
        import aiohttp  # noqa: PLC0415 - the load generator's process only

        try:
            async with self.http.post(url, data=json.dumps(body), headers=self.headers) as r:
                return r.status, await r.read()
        except (aiohttp.ClientError, TimeoutError):
            return 0, b""

    def next_op(self) -> tuple[str, int]:
        i = self.counters["all"]
        self.counters["all"] += 1
        kind = self.cycle[i % len(self.cycle)]
        n = self.counters[kind]
        self.counters[kind] += 1
        return kind, n

    async def run(self, kind: str, n: int, started: float) -> None:
        status = await getattr(self, f"_{kind}")(n)
        now = time.perf_counter()
        self.calls.append(
            (round(started - self.origin, 3), kind, round((now - started) * 1000, 2), status)
        )

    async def _event(self, n: int) -> int:
        event_type = EVENT_TYPES[n % len(EVENT_TYPES)]
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        if event_type == "chat_message":
            user = memory_users()[(n // len(EVENT_TYPES)) % MEMORY_USERS]
            event_id = str(uuid.uuid4())
            body: dict[str, Any] = {
                "type": "chat_message",
                "event_id": event_id,
                "user_id": user,
                "session_id": f"s-{user}",
                "text": STATEMENTS[n % len(STATEMENTS)],
                "vector": self.targets.vectors[n % len(self.targets.vectors)],
                "occurred_at": at,
            }
        else:
            user = event_users()[(n // len(EVENT_TYPES)) % EVENT_USERS]
            body = {"type": event_type, "user_id": user, "occurred_at": at}
            if event_type == "search":
                body["query"] = QUERIES[n % len(QUERIES)]
            else:
                body |= {"item_id": str(1 + n % 1600), "category": CATEGORIES[n % 4]}
                if event_type == "purchase":
                    body["value"] = 9.99
        status, _ = await self.post(f"{self.targets.ingest}/v1/events", body)
        outcome = _outcome(status)
        if event_type == "chat_message":
            self.memory.append((user, event_id, at, outcome))
        elif outcome != "refused":
            counts = self.events.setdefault(f"{user}|{event_type}", [0, 0])
            counts[outcome != "accepted"] += 1
        return status

    async def _respond(self, n: int) -> int:
        user = speakers()[n % SPEAKERS]
        body = {"user_id": user, "session_id": f"s-{user}", "message": QUESTIONS[n % 5]}
        status, raw = await self.post(f"{self.targets.respond}/v1/respond", body)
        self._replied(user, status, raw, nested=False)
        return status

    async def _completion(self, n: int) -> int:
        user = speakers()[(n * 7 + 3) % SPEAKERS]
        body = {
            "model": self.targets.completion_model,
            "messages": [{"role": "user", "content": QUESTIONS[n % 5]}],
            "user": user,
            "metadata": {"session_id": f"s-{user}"},
        }
        status, raw = await self.post(f"{self.targets.respond}/v1/chat/completions", body)
        self._replied(user, status, raw, nested=True)
        return status

    def _replied(self, user: str, status: int, raw: bytes, *, nested: bool) -> None:
        counts = self.replies.setdefault(user, [0, 0, 0])
        if status != 200:
            counts[2] += 1  # respond may have recorded it before failing: not certain
            return
        doc = json.loads(raw)
        if nested:
            doc = doc.get("rapport") or {}
        personalization = doc.get("personalization") or {}
        degraded = [str(p) for p in personalization.get("degraded") or []]
        self.degraded.update(degraded)
        self.recalls["replies_recalling"] += bool((doc.get("memory") or {}).get("recalled"))
        self.recalls["replies_citing"] += bool(doc.get("knowledge"))
        if "event" not in degraded:
            counts[0] += 1
            counts[1] += personalization.get("intent") is not None  # it carried the vector

    async def _recall(self, n: int) -> int:
        pool = speakers() + memory_users()
        user = pool[n % len(pool)]
        body = {"vector": self.targets.vectors[n % len(self.targets.vectors)], "k": 3}
        url = f"{self.targets.profile}/v1/profiles/{user}/memory/recall"
        status, raw = await self.post(url, body)
        if status == 200:
            found = json.loads(raw)
            hits = found if isinstance(found, list) else found.get("recalled") or []
            self.recalls["with_hits" if hits else "empty"] += 1
        return status

    async def _document(self, n: int) -> int:
        doc_id = doc_ids()[n % DOCUMENTS]
        version = time.time_ns() // 1_000_000  # later sends, higher versions, across phases
        status, _ = await self.post(
            f"{self.targets.ingest}/v1/knowledge", document(doc_id, version)
        )
        self.documents.append((doc_id, version, _outcome(status)))
        return status

    def result(self, elapsed: float) -> dict[str, Any]:
        return {
            "elapsed": elapsed,
            "calls": self.calls,
            "events": self.events,
            "memory": self.memory,
            "replies": self.replies,
            "degraded": dict(self.degraded),
            "documents": self.documents,
            "recalls": dict(self.recalls),
        }


def _outcome(status: int) -> str:
    """accepted (2xx); refused (4xx: nothing was produced); unsure (no answer or 5xx: the
    broker may still have taken it)."""
    if 200 <= status < 300:
        return "accepted"
    return "refused" if 400 <= status < 500 else "unsure"


async def _closed(traffic: Traffic, connections: int, seconds: float) -> None:
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            kind, n = traffic.next_op()
            await traffic.run(kind, n, time.perf_counter())

    await asyncio.gather(*(worker() for _ in range(connections)))


async def _open(traffic: Traffic, rate: float, seconds: float) -> None:
    """Operations at their planned times, answered or not; each one's latency counts from
    its planned time, so a stall is not hidden by the sends it delayed."""
    in_flight: set[asyncio.Task[None]] = set()
    start = traffic.origin
    for i in range(int(rate * seconds)):
        planned = start + i / rate
        delay = planned - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        kind, n = traffic.next_op()
        task = asyncio.create_task(traffic.run(kind, n, planned))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.gather(*in_flight)


async def _phase(targets: Targets, phase: Phase) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        traffic = Traffic(targets, http)
        with Stopwatch() as took:
            if phase.kind == "closed":
                await _closed(traffic, int(phase.level), phase.seconds)
            else:
                await _open(traffic, phase.level, phase.seconds)
        return traffic.result(took.seconds)


def _generator(job: tuple[Targets, Phase], out: Any) -> None:
    import uvloop  # noqa: PLC0415

    try:
        out.put(("done", uvloop.run(_phase(*job))))
    except Exception as exc:  # handed to the parent, which stops
        out.put(("error", repr(exc)))


class LoadPhase:
    """One phase in a spawned process; the caller samples what it likes while it runs."""

    def __init__(self, targets: Targets, phase: Phase) -> None:
        ctx = mp.get_context("spawn")
        self.out: Any = ctx.Queue()
        self.phase = phase
        self.process = ctx.Process(target=_generator, args=((targets, phase), self.out))
        self.process.start()

    def result(self, timeout_s: float) -> dict[str, Any] | None:
        """The phase's result, or None if it has not come within ``timeout_s``."""
        try:
            kind, value = self.out.get(timeout=timeout_s)
        except queue.Empty:
            return None
        self.process.join(timeout=30)
        if kind == "error":
            raise RuntimeError(f"load generator failed: {value}")
        result: dict[str, Any] = value
        return result

    def wait(self) -> dict[str, Any]:
        result = self.result(self.phase.seconds + REQUEST_TIMEOUT_S + 120)
        if result is None:
            self.process.terminate()
            raise RuntimeError("load generator did not answer")
        return result


# ---- RSS of every process of the mesh -----------------------------------------------


def rss_mib(stack: Stack) -> dict[str, float]:
    """Each server's resident memory now (MiB), its children included."""
    out = {}
    for server in stack.running:
        total = 0
        try:
            root = psutil.Process(server.handle.pid)
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in family:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        out[server.spec.name] = round(total / 2**20, 1)
    return out


# ---- the mesh, seeded --------------------------------------------------------------


@dataclass
class Soaked:
    """What the phases sent, merged, and what the mesh must therefore hold."""

    events: dict[str, list[int]] = field(default_factory=dict)
    memory: list[tuple[str, str, str, str]] = field(default_factory=list)
    replies: dict[str, list[int]] = field(default_factory=dict)
    documents: list[tuple[str, int, str]] = field(default_factory=list)
    prefill: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # user -> (id, at)

    def add(self, result: Mapping[str, Any]) -> None:
        merge_counts(self.events, result["events"])
        merge_counts(self.replies, result["replies"])
        self.memory += [(u, e, at, o) for u, e, at, o in result["memory"]]
        self.documents += [(d, int(v), o) for d, v, o in result["documents"]]


def chat_event(user: str, text: str, vector: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "type": "chat_message",
        "event_id": str(uuid.uuid4()),
        "user_id": user,
        "session_id": f"s-{user}",
        "text": text,
        "vector": vector,
        "occurred_at": at.isoformat(timespec="milliseconds"),
    }


def message_vectors(recommend: str, timeout_s: float = 120.0) -> tuple[dict[str, Any], ...]:
    """recommend's vector of each statement (retried while its models warm up)."""
    deadline = time.monotonic() + timeout_s
    found = []
    for text in STATEMENTS:
        while True:
            body = {"user_id": "soak-probe", "k": 3, "message": text, "vector": True}
            answer = post_json(f"{recommend}/v1/recommendations", json.dumps(body).encode())
            vector = (answer.get("message") or {}).get("vector")
            if vector is not None:
                found.append(vector)
                break
            if time.monotonic() > deadline:
                raise RuntimeError("recommend gave no message vector in time")
            time.sleep(0.5)
    return tuple(found)


def seed(
    urls: Mapping[str, str], vectors: Sequence[dict[str, Any]], soaked: Soaked
) -> dict[str, Any]:
    """The documents' first versions, and every memory user and speaker filled to memory's
    cap with chat messages one second apart, all older than anything the phases send."""
    with Stopwatch() as took:
        version = time.time_ns() // 1_000_000
        batch = {"documents": [document(d, version) for d in doc_ids()]}
        post_json(f"{urls['ingest']}/v1/knowledge", json.dumps(batch).encode())
        soaked.documents += [(d, version, "accepted") for d in doc_ids()]
        start = datetime.now(UTC) - timedelta(seconds=MEMORY_CAP + 5)
        events = []
        for user in memory_users() + speakers():
            mine = []
            for k in range(MEMORY_CAP):
                event = chat_event(
                    user, STATEMENTS[k % 4], vectors[k % len(vectors)], start + timedelta(seconds=k)
                )
                events.append(event)
                mine.append((event["event_id"], event["occurred_at"]))
            soaked.prefill[user] = mine
        for i in range(0, len(events), PREFILL_BATCH):
            body = json.dumps({"events": events[i : i + PREFILL_BATCH]}).encode()
            post_json(f"{urls['ingest']}/v1/events", body)
        filled = wait_for(
            lambda: all(
                get_json(f"{urls['profile']}/v1/profiles/{u}").get("remembered_messages")
                == MEMORY_CAP
                for u in memory_users() + speakers()
            ),
            timeout_s=600,
        )
        indexed = wait_for(lambda: all(_indexed(urls["knowledge"], d) for d in doc_ids()), 300)
    if not (filled and indexed):
        raise RuntimeError(f"seeding did not land: memory filled {filled}, documents {indexed}")
    return {
        "documents": DOCUMENTS,
        "prefilled_users": len(soaked.prefill),
        "prefilled_messages": len(events),
        "seconds": round(took.seconds, 1),
    }


def _indexed(knowledge: str, doc_id: str) -> bool:
    try:
        get_json(f"{knowledge}/v1/knowledge/{doc_id}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise
    return True


def wait_for(condition: Any, timeout_s: float, every_s: float = 1.0) -> bool:
    """Until ``condition()`` holds (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)


# ---- nothing lost ---------------------------------------------------------------------


def check_events(profile: str, soaked: Soaked) -> dict[str, Any]:
    """Each event user's counters and version against what ingest accepted: lost are
    accepted events the profile does not count; an unsure send may or may not count."""
    expected: dict[str, dict[str, list[int]]] = {}
    for key, (ok, unsure) in soaked.events.items():
        user, event_type = key.split("|")
        expected.setdefault(user, {})[event_type] = [ok, unsure]
    lost = extra = wrong_versions = 0
    for user, types in expected.items():
        view = get_json(f"{profile}/v1/profiles/{user}")
        counters = view.get("counters") or {}
        for event_type, (ok, unsure) in types.items():
            have = int(counters.get(event_type, 0))
            lost += max(0, ok - have)
            extra += max(0, have - ok - unsure)
        total_ok = sum(c[0] for c in types.values())
        total_unsure = sum(c[1] for c in types.values())
        version = int(view.get("version", 0))  # one per applied event
        wrong_versions += not total_ok <= version <= total_ok + total_unsure
    accepted = sum(c[0] for c in soaked.events.values())
    return {
        "users": len(expected),
        "accepted": accepted,
        "lost": lost,
        "unexpected": extra,
        "profiles_with_wrong_version": wrong_versions,
    }


def check_memory(urls: Mapping[str, str], soaked: Soaked) -> dict[str, Any]:
    """Each memory user's rows in the vector store against the newest 200 of the chat
    messages ingest accepted (prefill included), and its profile's count and counter."""
    from pymilvus import MilvusClient  # noqa: PLC0415 - only once the load is over

    sent: dict[str, list[tuple[str, str]]] = {u: list(soaked.prefill[u]) for u in memory_users()}
    unsure: dict[str, set[str]] = {u: set() for u in memory_users()}
    for user, event_id, at, outcome in soaked.memory:
        if outcome == "accepted":
            sent[user].append((event_id, at))
        elif outcome == "unsure":
            unsure[user].add(f"m-{event_id}")
    client = MilvusClient(uri=urls["milvus"])
    missing = stale = wrong_count = wrong_counter = 0
    try:
        for user in memory_users():
            rows = _memory_ids(client, user)
            expected = newest(sent[user])
            maybe = rows & unsure[user]  # an unsure send that did land counts as sent
            if maybe:
                at_of = {f"m-{eid}": at for user_, eid, at, _ in soaked.memory if user_ == user}
                expected = newest(sent[user] + [(m[2:], at_of[m]) for m in maybe])
            missing += len(expected - rows)
            stale += len(rows - expected)
            view = get_json(f"{urls['profile']}/v1/profiles/{user}")
            wrong_count += view.get("remembered_messages") != len(expected)
            counted = int((view.get("counters") or {}).get("chat_message", 0))
            wrong_counter += not len(sent[user]) <= counted <= len(sent[user]) + len(unsure[user])
    finally:
        client.close()
    chats = sum(1 for m in soaked.memory if m[3] == "accepted")
    return {
        "users": MEMORY_USERS,
        "chat_messages_accepted": chats,
        "missing": missing,
        "stale": stale,
        "profiles_with_wrong_count": wrong_count,
        "profiles_with_wrong_counter": wrong_counter,
    }


def _memory_ids(client: Any, user: str) -> set[str]:
    rows = client.query(
        MEMORY_COLLECTION,
        filter=f"pid == {literal(profile_id(TENANT, user))}",
        output_fields=["id"],
        consistency_level="Strong",
    )
    return {str(row["id"]) for row in rows}


def check_speakers(urls: Mapping[str, str], soaked: Soaked) -> dict[str, Any]:
    """Each speaker's chat messages counted (prefill plus every reply respond recorded), and
    its rows in the vector store: 200, of which the replies that carried a vector are the
    newest (at most 200)."""
    from pymilvus import MilvusClient  # noqa: PLC0415

    client = MilvusClient(uri=urls["milvus"])
    lost = extra = wrong_rows = 0
    recorded_total = vectored_total = 0
    try:
        for user in speakers():
            recorded, vectored, unsure = soaked.replies.get(user, [0, 0, 0])
            recorded_total += recorded
            vectored_total += vectored
            view = get_json(f"{urls['profile']}/v1/profiles/{user}")
            counted = int((view.get("counters") or {}).get("chat_message", 0))
            floor = MEMORY_CAP + recorded
            lost += max(0, floor - counted)
            extra += max(0, counted - floor - unsure)
            rows = _memory_ids(client, user)
            prefill = {f"m-{eid}" for eid, _ in soaked.prefill[user]}
            replies_kept = len(rows - prefill)
            low, high = min(MEMORY_CAP, vectored), min(MEMORY_CAP, vectored + unsure)
            wrong_rows += not (len(rows) == MEMORY_CAP and low <= replies_kept <= high)
    finally:
        client.close()
    return {
        "speakers": SPEAKERS,
        "replies_recorded": recorded_total,
        "replies_with_vector": vectored_total,
        "lost": lost,
        "unexpected": extra,
        "speakers_with_wrong_rows": wrong_rows,
    }


def check_documents(knowledge: str, soaked: Soaked) -> dict[str, Any]:
    """Each document's index against its last accepted version: the version's chunks, all
    of them, and nothing else."""
    last: dict[str, int] = {}
    for doc_id, version, outcome in soaked.documents:
        if outcome == "accepted":
            last[doc_id] = max(version, last.get(doc_id, 0))
    not_last = wrong_chunks = 0
    for doc_id, version in last.items():
        try:
            held = get_json(f"{knowledge}/v1/knowledge/{doc_id}")
        except urllib.error.HTTPError:
            not_last += 1
            continue
        texts = [c["text"] for c in held.get("chunks") or []]
        marker = f"Revision {version} "
        if not texts or not all(marker in t for t in texts):
            not_last += 1
        elif len(texts) != len(chunk_text(document(doc_id, version)["text"])):
            wrong_chunks += 1
    accepted = sum(1 for d in soaked.documents if d[2] == "accepted")
    return {
        "documents": len(last),
        "versions_accepted": accepted,
        "not_last_version": not_last,
        "wrong_chunks": wrong_chunks,
    }


def lost_checks(urls: Mapping[str, str], soaked: Soaked, settle_s: float) -> dict[str, Any]:
    """Every check, polled until all hold or ``settle_s`` passes: what is in flight when
    the load stops (a batch, a changelog) lands meanwhile."""
    took = Stopwatch()
    while True:
        found: dict[str, Any] = {
            "events": check_events(urls["profile"], soaked),
            "memory": check_memory(urls, soaked),
            "speakers": check_speakers(urls, soaked),
            "documents": check_documents(urls["knowledge"], soaked),
        }
        if _nothing_lost(found) or took.seconds > settle_s:
            found["settled_s"] = round(took.seconds, 1)
            return found
        time.sleep(2.0)


def _nothing_lost(found: Mapping[str, Mapping[str, Any]]) -> bool:
    bad = (
        "lost",
        "unexpected",
        "missing",
        "stale",
        "profiles_with_wrong_count",
        "profiles_with_wrong_counter",
        "profiles_with_wrong_version",
        "speakers_with_wrong_rows",
        "not_last_version",
        "wrong_chunks",
    )
    return all(not row.get(k) for row in found.values() for k in bad)


# ---- the run ------------------------------------------------------------------------


def ramp(
    targets: Targets, levels: Sequence[int], seconds: float, soaked: Soaked
) -> list[dict[str, Any]]:
    rows = []
    for connections in levels:
        result = LoadPhase(targets, Phase("closed", connections, seconds)).wait()
        soaked.add(result)
        calls = result["calls"]
        ok = sum(1 for c in calls if 200 <= c[3] < 300)
        row = {
            "load": f"closed, {connections} conns",
            "connections": connections,
            "ops": len(calls),
            "ok_per_s": round(ok / result["elapsed"], 1),
            "mix_per_s": mix_rate(calls, result["elapsed"], MIX),
            "errors": len(calls) - ok,
            "error_statuses": {
                kind: row["statuses"] for kind, row in error_counts(calls).items() if row["errors"]
            },
            **percentiles([c[2] for c in calls]),
            **percentiles(
                [c[2] for c in calls if c[1] in ("respond", "completion")], prefix="replies_"
            ),
        }
        print(
            f"  ramp {row['load']:<18} mix ops/s={row['mix_per_s']:>7} (2xx {row['ok_per_s']:>7})  "
            f"errors={row['errors']:>5}  "
            f"p50={row['p50_ms']!s:>8} ms  p99={row['p99_ms']!s:>8} ms  "
            f"replies p99={row['replies_p99_ms']!s:>8} ms  {row['error_statuses'] or ''}",
            flush=True,
        )
        rows.append(row)
    return rows


def soak(
    targets: Targets, stack: Stack, rate: float, opts: Options, soaked: Soaked
) -> tuple[dict[str, Any], dict[str, list[tuple[float, float]]]]:
    """The open loop at ``rate`` for the duration, sampling every process's RSS."""
    duration_s, interval_s = opts.duration_s, opts.interval_s
    series: dict[str, list[tuple[float, float]]] = {}
    phase = LoadPhase(targets, Phase("open", rate, duration_s))
    began = time.monotonic()
    next_sample = began
    result = None
    while result is None:
        now = time.monotonic()
        if now >= next_sample:
            for name, mib in rss_mib(stack).items():
                series.setdefault(name, []).append((round(now - began, 1), mib))
            next_sample += interval_s
            if int(now - began) % 60 < interval_s:
                print(f"  soak t={now - began:5.0f} s", flush=True)
        result = phase.result(max(0.05, next_sample - time.monotonic()))
        if result is None and time.monotonic() - began > duration_s + REQUEST_TIMEOUT_S + 120:
            phase.process.terminate()
            raise RuntimeError("load generator did not answer")
    soaked.add(result)
    return result, series


def kind_rows(calls: Sequence[Sequence[Any]], rate: float, seconds: float) -> list[dict[str, Any]]:
    cycle = interleave(MIX)
    errors = error_counts(calls)
    rows = []
    for kind in MIX:
        mine = [c[2] for c in calls if c[1] == kind]
        share = cycle.count(kind) / len(cycle)
        rows.append(
            {
                "kind": kind,
                "load": f"open {rate * share:.1f} ops/s ({share:.0%} of {rate:.1f})",
                "calls": len(mine),
                "per_s": round(len(mine) / seconds, 2),
                **{k: errors.get(kind, {}).get(k) for k in ("errors", "share", "statuses")},
                **percentiles(mine, (50, 90, 99), maximum=True),
            }
        )
    return rows


def verdicts(
    growth: Mapping[str, Growth | None],
    errors: Mapping[str, Mapping[str, Any]],
    lost: Mapping[str, Any],
    *,
    after_warmup: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """PASS or FAIL per criterion. Errors count over the whole load, warm-up included;
    ``after_warmup`` (the same counts from the warm-up's end) is shown beside them."""
    later = sum(e["errors"] for e in after_warmup.values())
    later_calls = sum(e["calls"] for e in after_warmup.values())
    calls = sum(e["calls"] for e in errors.values())
    failed = sum(e["errors"] for e in errors.values())
    judged = {name: g for name, g in growth.items() if name not in NOT_JUDGED}
    worst = max(
        ((name, g.growth) for name, g in judged.items() if g is not None),
        key=lambda x: x[1],
        default=("none", math.inf),
    )
    flat = all(g is not None and g.growth < MAX_GROWTH for g in judged.values())
    share = failed / calls if calls else 1.0
    return {
        "rss_flat": {
            "pass": flat,
            "goal": f"every process grows < {MAX_GROWTH:.0%} after the warm-up",
            "worst": f"{worst[0]} {worst[1]:+.1%}",
            "not judged": {name: HOLDS_DATA[name] for name in NOT_JUDGED},
        },
        "errors": {
            "pass": share < MAX_ERROR_SHARE,
            "goal": f"< {MAX_ERROR_SHARE:.1%} of calls not 2xx",
            "figure": f"{failed} of {calls} ({share:.3%})",
            "after_warmup": f"{later} of {later_calls}",
        },
        "nothing_lost": {
            "pass": _nothing_lost({k: v for k, v in lost.items() if isinstance(v, dict)}),
            "goal": "every accepted event applied, document indexed, message remembered",
            "settled_s": lost.get("settled_s"),
        },
    }


def plot_rss(series: Mapping[str, Sequence[tuple[float, float]]], opts: Options, out: Path) -> bool:
    """RSS against time, a panel per process: the warm-up shaded grey, the first window
    after it green, the last one red."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional, kept out of the load generator

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    names = list(series)
    cols = 3
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.4 * rows), squeeze=False, sharex=True)
    end, warm, window = opts.duration_s, opts.warmup_s, opts.window_s
    for ax, name in zip(axes.flat, names, strict=False):
        mibs = [m for _, m in series[name]]
        ax.plot([t for t, _ in series[name]], mibs, linewidth=1)
        # At least +-15% of the level in view: a flat line looks flat, 10% looks like 10%.
        level = statistics.median(mibs)
        ax.set_ylim(min(*mibs, level * 0.85), max(*mibs, level * 1.15))
        ax.axvspan(0, warm, color="grey", alpha=0.15)
        ax.axvspan(warm, warm + window, color="tab:green", alpha=0.12)
        ax.axvspan(end - window, end, color="tab:red", alpha=0.12)
        ax.set_title(NAMES.get(name, name), fontsize=9)
        ax.set_ylabel("RSS MiB", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, linewidth=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("seconds of load", fontsize=8)
    fig.suptitle("soak: RSS per process (grey: warm-up; green, red: the windows compared)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def print_kinds(kinds: Sequence[Mapping[str, Any]], lines: Sequence[Mapping[str, Any]]) -> None:
    print("\nPer kind (latency from the planned send time)")
    head = ("calls", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms")
    print(f"  {'kind':<11} {'load':<30} " + " ".join(f"{h:>8}" for h in head))
    for r in kinds:
        figures = (r["calls"], r["errors"] or 0, r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"])
        print(f"  {r['kind']:<11} {r['load']:<30} " + " ".join(f"{f!s:>8}" for f in figures))
    print("\nTimeline (all kinds; replies apart; latency from the planned send time)")
    for r in lines:
        print(
            f"  from {r['from_s']:>6} s  {r['ops_per_s']:>6} ops/s  errors {r['errors']:>4}  "
            f"p50 {r['p50_ms']!s:>8}  p99 {r['p99_ms']!s:>8} ms  "
            f"replies p50 {r['replies_p50_ms']!s:>8}  p99 {r['replies_p99_ms']!s:>8} ms"
        )


def print_rss(
    series: Mapping[str, Sequence[tuple[float, float]]], growth: Mapping[str, Growth | None]
) -> None:
    print("\nRSS per process, MiB: medians of the first and last windows after the warm-up")
    print(f"  {'process':<18} {'first':>8} {'last':>8} {'growth':>8}  RSS over the whole load")
    for name, points in series.items():
        g = growth.get(name)
        mibs = [m for _, m in points]
        figures = (
            f"{g.first_mib:>8} {g.last_mib:>8} {g.growth:>+8.1%}"
            if g
            else f"{'-':>8} {'-':>8} {'-':>8}"
        )
        print(
            f"  {NAMES.get(name, name):<18} {figures}  {sparkline(mibs)}  "
            f"({min(mibs):.0f}..{max(mibs):.0f})"
        )
        if g is not None and g.growth >= MAX_GROWTH and name in HOLDS_DATA:
            print(f"  {'':<20}holds data: {HOLDS_DATA[name]}")


def print_verdict(lost: Mapping[str, Any], verdict: Mapping[str, Mapping[str, Any]]) -> None:
    print("\nNothing lost")
    for part, found in lost.items():
        print(f"  {part:<10} {found}")
    print("\nVerdict")
    for name, row in verdict.items():
        figures = {k: v for k, v in row.items() if k not in ("pass", "goal")}
        print(f"  {'PASS' if row['pass'] else 'FAIL'}  {name:<13} {row['goal']}  {figures}")


@dataclass(frozen=True)
class Options:
    duration_s: float
    warmup_s: float
    window_s: float
    interval_s: float
    load_share: float
    rate: float | None  # ops/s given: no ramp
    ramp_levels: tuple[int, ...]
    ramp_s: float
    settle_s: float
    logs: Path | None  # the servers' logs are copied there before the mesh goes


def parse_args(argv: Sequence[str] | None = None) -> Options:
    options = parser(__doc__)
    options.add_argument("--duration", type=float, default=DURATION_S, help="seconds of soak")
    options.add_argument("--warmup", type=float, default=None, help="default: 20%% of duration")
    options.add_argument("--interval", type=float, default=INTERVAL_S, help="RSS sampling, s")
    options.add_argument("--load-share", type=float, default=LOAD_SHARE, help="of saturation")
    options.add_argument("--rate", type=float, default=None, help="ops/s: skip the ramp")
    options.add_argument(
        "--ramp-levels", default=",".join(map(str, RAMP_LEVELS)), help="closed-loop connections"
    )
    options.add_argument("--ramp-seconds", type=float, default=RAMP_SECONDS, help="per level")
    options.add_argument("--settle", type=float, default=SETTLE_S, help="for the checks, s")
    options.add_argument("--logs", type=Path, default=None, help="keep the servers' logs here")
    args = options.parse_args(argv)
    duration = bounded(args.duration, 30.0, 3600.0)
    warmup = bounded(warmup_for(duration, args.warmup), 0.0, duration * 0.8)
    return Options(
        duration_s=duration,
        warmup_s=warmup,
        window_s=window_for(duration, warmup),
        interval_s=bounded(args.interval, 1.0, 30.0),
        load_share=bounded(args.load_share, 0.05, 1.0),
        rate=None if args.rate is None else bounded(args.rate, 1.0, 5000.0),
        ramp_levels=tuple(int(x) for x in args.ramp_levels.split(",") if x.strip()),
        ramp_s=bounded(args.ramp_seconds, 2.0, 30.0),
        settle_s=bounded(args.settle, 10.0, 900.0),
        logs=args.logs,
    )


@dataclass
class Run:
    """Everything one soak measured."""

    seeding: dict[str, Any]
    ramp: list[dict[str, Any]]
    saturation: float | None
    rate: float
    result: dict[str, Any]
    series: dict[str, list[tuple[float, float]]]
    lost: dict[str, Any]
    metrics: dict[str, dict[str, float]]


def counted(urls: Mapping[str, str]) -> dict[str, float]:
    """Events ingest accepted and respond produced (what the broker holds more of), events
    profile applied, knowledge records settled, respond's events not produced."""
    respond = scrape(urls["respond"])
    return {
        "ingest_accepted": sample_sum(
            scrape(urls["ingest"]), "rapport_ingest_events_total", outcome="accepted"
        ),
        "respond_events_acknowledged": sample_sum(
            respond, "rapport_respond_events_total", outcome="acknowledged"
        ),
        "respond_events_failed": sample_sum(
            respond, "rapport_respond_events_total", outcome="failed"
        ),
        "profile_events": metric_total(urls["profile"], "rapport_profile_events_total"),
        "knowledge_records": metric_total(urls["knowledge"], "rapport_knowledge_records_total"),
    }


def run(opts: Options) -> Run:
    soaked = Soaked()
    with scratch("rapport-soak-") as (work, stack):
        print("starting the mesh (as make up runs it; respond in LLM mode on the fake upstream)")
        llm = stack.start(fake_llm_spec(processes.free_port())).url()
        repository = models.private_copy(work, REPO / models.DEFAULT_REPOSITORY)
        plan = bench_plan(
            services_for(installed_services(), repository),
            model_repository=repository,
            env={
                "respond": {"RAPPORT_LLM_BASE_URL": f"{llm}/v1", "RAPPORT_LLM_API_KEY": "sk-soak"}
            },
        )
        mesh = start_mesh(plan, stack, work)
        urls = {**mesh.services, "milvus": mesh.infra["milvus"]}
        vectors = message_vectors(urls["recommend"])
        model = get_json(f"{urls['respond']}/v1/models")["data"][0]["id"]
        targets = Targets(urls["ingest"], urls["profile"], urls["respond"], vectors, model)
        print("seeding...", flush=True)
        seeding = seed(urls, vectors, soaked)
        print(f"  {seeding}", flush=True)
        ramp_rows: list[dict[str, Any]] = []
        saturation = None
        rate = opts.rate
        if rate is None:
            print(f"saturation: closed-loop ramp of the mix, {opts.ramp_s:g} s a level", flush=True)
            ramp_rows = ramp(targets, opts.ramp_levels, opts.ramp_s, soaked)
            saturation = max(r["mix_per_s"] for r in ramp_rows)
            rate = round(saturation * opts.load_share, 1)
        print(
            f"soak: open loop at {rate} ops/s ({opts.load_share:.0%} of {saturation} ops/s) for "
            f"{opts.duration_s:g} s; warm-up {opts.warmup_s:g} s, windows {opts.window_s:g} s",
            flush=True,
        )
        before = counted(urls)
        result, series = soak(targets, stack, rate, opts, soaked)
        lost = lost_checks(urls, soaked, opts.settle_s)
        metrics = {"before": before, "after": counted(urls)}
        if opts.logs is not None:
            opts.logs.mkdir(parents=True, exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy2(log, opts.logs / log.name)
    return Run(seeding, ramp_rows, saturation, rate, result, series, lost, metrics)


def report(opts: Options, measured: Run) -> None:
    calls = measured.result["calls"]
    growth = {
        name: rss_growth(
            points, warmup_s=opts.warmup_s, end_s=opts.duration_s, window_s=opts.window_s
        )
        for name, points in measured.series.items()
    }
    errors = error_counts(calls)
    kinds = kind_rows(calls, measured.rate, float(measured.result["elapsed"]))
    lines = timeline(calls, max(10.0, opts.duration_s / 10))
    later = error_counts([c for c in calls if c[0] >= opts.warmup_s])
    verdict = verdicts(growth, errors, measured.lost, after_warmup=later)
    print_kinds(kinds, lines)
    print_rss(measured.series, growth)
    before, after = measured.metrics["before"], measured.metrics["after"]
    print(
        "  during the soak and its checks: "
        + ", ".join(f"{k} +{after[k] - before.get(k, 0.0):,.0f}" for k in after)
    )
    print_verdict(measured.lost, verdict)
    plot = RESULTS / "soak_rss.png"
    RESULTS.mkdir(exist_ok=True)
    plotted = plot_rss(measured.series, opts, plot)
    print(f"wrote {plot}" if plotted else "matplotlib is not installed: no plot (data in JSON)")
    write_results(
        "soak",
        [
            {
                "process": name,
                "label": NAMES.get(name, name),
                "growth": asdict(g) if g else None,
                "pass": g is not None and g.growth < MAX_GROWTH,
                "rss_mib": points,
            }
            for name, points in measured.series.items()
            for g in [growth[name]]
        ],
        options={**asdict(opts), "logs": str(opts.logs) if opts.logs else None},
        mix=MIX,
        saturation_ops_per_s=measured.saturation,
        rate_ops_per_s=measured.rate,
        ramp=measured.ramp,
        seeding=measured.seeding,
        kinds=kinds,
        timeline=lines,
        errors=errors,
        degraded=measured.result["degraded"],
        recalls=measured.result["recalls"],
        lost=measured.lost,
        metrics=measured.metrics,
        verdict=verdict,
        plot=str(plot.relative_to(REPO)) if plotted else None,
        note="RSS: VmRSS of each process with its children (psutil), every interval_s. Latency "
        "from each operation's planned send time (open loop). Errors: not 2xx, or no answer.",
    )


def main(argv: Sequence[str] | None = None) -> None:
    opts = parse_args(argv)
    report(opts, run(opts))


if __name__ == "__main__":
    main()
