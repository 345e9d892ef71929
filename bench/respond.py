"""respond on the product mesh as ``make up`` runs it: complete replies/s, stages, CPU.

Complete replies per second, their latency per stage, and the CPU each process spends
on a reply.

The mesh is started with a checkout's own ``rapport-dev --home <tmp> up`` (what
``make up`` runs: every installed service, Triton with the built models, memory and
knowledge on by the services' defaults, the dev key it generates), and everything the
bench needs comes from that run's ``stack.json``: the service URLs, the key, the pids.
The bench talks HTTP only and reads each process's CPU with psutil (the process and
its children, e.g. Triton's Python-backend stubs), like ``shared/probes/reply_probe.py``.
``rapport-dev down`` stops it again; only one mesh runs at a time.

1. **Seed**: 64 speakers, each with item views (4-6 items) and three to five chat turns
   through ``POST /v1/respond`` that state facts ("I'm vegetarian", "my budget is under
   50 euros", "I live in Berlin", ...) and ask ordinary questions; five company documents
   through ingest's ``POST /v1/knowledge``. Then it waits until profile shows facts and
   remembered messages for every speaker, a knowledge search finds a seeded document and
   a reply cites one; it fails loudly otherwise.
2. **Levels**: closed loop at 1, 2, 4, 8, 16 and 32 connections (``--levels``), a
   warm-up before each, messages rotating through questions that ask for knowledge,
   recommendations and memory. Per level: replies/s, complete replies/s (HTTP 200 and
   ``personalization.degraded`` empty), statuses, p50/p90/p99 of all replies and of the
   complete ones, the degraded parts, CPU ms per reply per process (idle burn, measured
   5 s before the levels, subtracted) and per complete reply, the load generator's own
   CPU, and each reply stage's latency from respond's histogram (and recommend's Triton
   call), mean and p50/p99 estimated from the buckets.
3. **Floors** (``bench/floor.py``), right after the mesh, same load generator: v1 (the
   old graph: gateway -> GET leaf -> POST leaf) and v2 (the new graph: Redis GET and
   leaf A at once, then leaf B), with payloads of the sizes the mesh just answered, at
   1 and 16 connections (``--floor-all``: at every level). The ratio complete replies/s
   of the mesh to the floor's replies/s at 1 and 16.

``--compare DIR`` (another checkout with its own ``.venv``, e.g. an older commit)
measures both meshes in alternating rounds (base, new, base, new; ``--rounds``) on the
same box, and reports new/base per level and round.

The load generator is one process of its own; two cores hold it, the mesh and the
stores. Output: one table per mesh and level (the load beside every latency), the
CPU per process, ``bench/results/respond.json`` and ``bench/results/respond_goodput.png``.

    .venv/bin/python -m bench.respond [--seconds 15] [--levels 1,2,4,8,16,32] [--quick]
        [--compare ../base --rounds 2] [--py-spy DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import pyspy
from bench.floor import start_floor, start_floor_v2
from bench.mesh import KEY, scrape, wait_until_ready
from bench.options import bounded, parser
from bench.results_file import RESULTS, write_results
from bench.stats import Stopwatch, histogram_quantile_ms, percentiles
from rapport.devstack import processes
from rapport.devstack.scrape import samples
from rapport.devstack.stack import Stack

REPO = Path(__file__).resolve().parents[1]
LEVELS = (1, 2, 4, 8, 16, 32)
QUICK_LEVELS = (1, 8)
PROFILED_LEVEL = 8  # py-spy records this level: respond admits at least 8 fan-outs
RATIO_LEVELS = (1, 16)  # the floor ratio the issue asks for
REQUEST_TIMEOUT_S = 10.0
UP_TIMEOUT_S = 900.0  # the first `up` of a checkout may train its models
DOWN_TIMEOUT_S = 120.0
STAGE_HISTOGRAM = ("rapport_respond_stage_duration_seconds", "stage")  # respond's stages
TRITON_HISTOGRAM = ("rapport_recommend_triton_duration_seconds", "model")  # recommend's
SHED_COUNTER = "rapport_respond_shed_total"
NEEDED_SERVICES = ("ingest", "profile", "recommend", "knowledge", "respond")
INFRA_NAMES = frozenset({"kafka", "mongo", "redis", "milvus", "triton"})

# ---- what the speakers did and what the company published --------------------------

SPEAKERS = 64
ITEMS = ("50", "172", "181", "174", "210", "82", "1", "121", "258", "100")
CATEGORIES = ("Sci-Fi", "Comedy", "Drama", "Thriller")
DIETS = ("I'm vegetarian.", "just so you know, I'm vegan", "I'm pescatarian - fish is fine.")
BUDGETS = ("My budget is under 50 euros", "my budget is 30 euros", "I can spend at most 80 euros")
PLACES = ("I live in Berlin.", "I live in Lyon.", "I live in Madrid.", "I moved to Hamburg")
OTHERS = ("I have two kids", "I love sci-fi", "I don't like horror", "I'm allergic to peanuts")
SEED_QUESTION = "what should I watch tonight?"
# The levels' messages: recommendations, knowledge and memory (dinner: the diet facts).
MESSAGES = (
    "what should I watch tonight?",
    "what is your refund policy?",
    "any dinner ideas for me?",
    "any good sci-fi films?",
    "how long do refunds take?",
    "can you suggest something for the weekend?",
)
REFUND_QUESTION = "what is your refund policy?"
DOCUMENTS = (
    {
        "doc_id": "refund-policy",
        "title": "Refund policy",
        "text": "You can return a purchase within 30 days for a full refund, as long as it "
        "is unused and in its original packaging. Refunds reach your card within 5 working "
        "days after we receive the returned item. Digital rentals can be refunded within 48 "
        "hours if you have not started watching them. Gift card purchases are refunded as "
        "store credit. Contact support with your order number to start a return.",
    },
    {
        "doc_id": "shipping",
        "title": "Shipping",
        "text": "Standard shipping takes 3 to 5 working days and is free above 40 euros. "
        "Express shipping arrives the next working day when you order before 2 pm. We ship "
        "to every country in the European Union; customs fees may apply elsewhere. You get "
        "a tracking link by email as soon as your parcel leaves our warehouse in Leipzig.",
    },
    {
        "doc_id": "gift-cards",
        "title": "Gift cards",
        "text": "Gift cards never expire and can be used online or in store, for films, "
        "books and subscriptions alike. A gift card can be split across several orders. "
        "Lost gift cards can be replaced when you still have the receipt or the email that "
        "delivered the card. Gift cards cannot be exchanged for cash.",
    },
    {
        "doc_id": "membership",
        "title": "Membership",
        "text": "Members get free express shipping, early access to sales and one free film "
        "rental every month. Membership costs 6 euros a month or 60 euros a year and can be "
        "cancelled at any time from your account page. Students get half price with a valid "
        "student card. Family plans cover up to five profiles in one household.",
    },
    {
        "doc_id": "dinner-and-a-movie",
        "title": "Dinner and a movie",
        "text": "Our partner restaurants deliver dinner with your film night: every menu has "
        "vegetarian and vegan dishes, and allergens are listed for each dish. Orders above 30 "
        "euros come with a free dessert. Delivery is available in Berlin, Hamburg, Lyon and "
        "Madrid from 5 pm to 11 pm.",
    },
)


def speaker_ids(count: int = SPEAKERS) -> list[str]:
    return [f"speaker-{i:02d}" for i in range(count)]


def chat_turns(index: int) -> list[str]:
    """Speaker ``index``'s three to five turns: facts about themselves and a question."""
    turns = [
        DIETS[index % len(DIETS)],
        SEED_QUESTION,
        BUDGETS[index % len(BUDGETS)],
        PLACES[index % len(PLACES)],
        OTHERS[index % len(OTHERS)],
    ]
    return turns[: 3 + index % 3]


def view_events(speakers: Sequence[str]) -> list[dict[str, str]]:
    now = datetime.now(UTC).isoformat()
    return [
        {
            "type": "item_view",
            "user_id": user,
            "item_id": ITEMS[(i + j) % len(ITEMS)],
            "category": CATEGORIES[(i + j // 2) % len(CATEGORIES)],
            "occurred_at": now,
        }
        for i, user in enumerate(speakers)
        for j in range(4 + i % 3)
    ]


# ---- pure parts: a reply, a level, CPU, histograms (unit-tested) -------------------


def parse_reply(raw: bytes) -> tuple[list[str], int, int]:
    """A reply's degraded parts, passages cited and past messages recalled.

    respond names degraded parts in ``personalization.degraded``; the floor's gateways
    answer a top-level ``degraded``.
    """
    try:
        doc = json.loads(raw)
    except ValueError:
        return ["unparsable"], 0, 0
    if not isinstance(doc, dict):
        return ["unparsable"], 0, 0
    personalization = doc.get("personalization") or {}
    degraded = personalization.get("degraded", doc.get("degraded")) or []
    memory = doc.get("memory") or {}
    return (
        [str(p) for p in degraded],
        len(doc.get("knowledge") or []),
        len(memory.get("recalled") or []),
    )


def level_summary(raw: Mapping[str, Any], connections: int) -> dict[str, Any]:
    """One closed-loop level from the load generator's raw lists (one entry per reply)."""
    status: list[int] = list(raw["status"])
    latency: list[float] = list(raw["latency_ms"])
    degraded: list[list[str]] = [list(d) for d in raw["degraded"]]
    elapsed = float(raw["elapsed"])
    replies = len(status)
    complete = [s == 200 and not d for s, d in zip(status, degraded, strict=True)]
    done = sum(complete)
    per_s = max(elapsed, 1e-9)
    parts = Counter(part for s, d in zip(status, degraded, strict=True) if s == 200 for part in d)
    return {
        "connections": connections,
        "load": f"closed, {_conns(connections)}",
        "seconds": round(elapsed, 2),
        "replies": replies,
        "requests": replies,
        "complete": done,
        "replies_per_s": round(replies / per_s, 1),
        "requests_per_s": round(replies / per_s, 1),  # what bench.summary reads
        "ok_per_s": round(sum(s == 200 for s in status) / per_s, 1),
        "complete_per_s": round(done / per_s, 1),
        "complete_share": round(done / replies, 3) if replies else 0.0,
        "statuses": {str(k): v for k, v in sorted(Counter(status).items())},
        **percentiles(latency, (50, 90, 99)),
        **percentiles(
            [ms for ms, ok in zip(latency, complete, strict=True) if ok],
            (50, 90, 99),
            prefix="complete_",
        ),
        "degraded": dict(parts.most_common()),
        "with_knowledge": sum(1 for k in raw.get("knowledge", []) if k > 0),
        "with_recall": sum(1 for r in raw.get("recalled", []) if r > 0),
    }


CpuSnapshot = dict[str, dict[int, float]]  # process name -> pid (itself, children) -> CPU s


def cpu_spent(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds each named process (with its children) spent between two snapshots.

    A child that appeared meanwhile counts whole; one that ended meanwhile is lost.
    """
    return {
        name: sum(s - before.get(name, {}).get(pid, 0.0) for pid, s in pids.items())
        for name, pids in after.items()
    }


def cpu_per_reply(
    spent: Mapping[str, float],
    replies: int,
    complete: int,
    *,
    idle_per_s: Mapping[str, float],
    seconds: float,
) -> dict[str, Any]:
    """ms of CPU per reply per process, less what each burns idle over ``seconds``; their
    total; and that total over the complete replies only. A process whose idle burn
    varies can come out slightly negative: it is not clipped, so the total stays unbiased."""
    per = {
        name: round((used - idle_per_s.get(name, 0.0) * seconds) * 1000 / max(1, replies), 3)
        for name, used in spent.items()
    }
    total_ms = sum(
        (used - idle_per_s.get(name, 0.0) * seconds) * 1000 for name, used in spent.items()
    )
    return {
        "per_reply": per,
        "total": round(total_ms / max(1, replies), 2),
        "per_complete": round(total_ms / complete, 2) if complete else None,
    }


def idle_rates(before: CpuSnapshot, after: CpuSnapshot, seconds: float) -> dict[str, float]:
    """CPU seconds per second each process burns with no load."""
    return {name: round(s / seconds, 4) for name, s in cpu_spent(before, after).items()}


@dataclass
class Histogram:
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative
    sum: float = 0.0
    count: float = 0.0


def histograms(text: str, name: str, label: str) -> dict[str, Histogram]:
    """A Prometheus histogram of a /metrics page, one per value of ``label``."""
    found: dict[str, Histogram] = {}
    for sample in samples(text):
        if not sample.name.startswith(name) or label not in sample.labels:
            continue
        hist = found.setdefault(sample.labels[label], Histogram())
        suffix = sample.name.removeprefix(name)
        if suffix == "_bucket":
            bound = float(sample.labels["le"])
            hist.buckets[bound] = hist.buckets.get(bound, 0.0) + sample.value
        elif suffix == "_sum":
            hist.sum += sample.value
        elif suffix == "_count":
            hist.count += sample.value
    return found


def latency_between(
    before: Mapping[str, Histogram], after: Mapping[str, Histogram]
) -> dict[str, dict[str, float | None]]:
    """Per label: the observations between two scrapes, their mean and p50/p99 (ms)."""
    out: dict[str, dict[str, float | None]] = {}
    for key, hist in sorted(after.items()):
        old = before.get(key, Histogram())
        count = hist.count - old.count
        if count <= 0:
            continue
        out[key] = {
            "count": int(count),
            "mean_ms": round((hist.sum - old.sum) * 1000 / count, 2),
            "p50_ms": histogram_quantile_ms(hist.buckets, 0.5, since=old.buckets),
            "p99_ms": histogram_quantile_ms(hist.buckets, 0.99, since=old.buckets),
        }
    return out


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def geometric_mean(values: Sequence[float]) -> float | None:
    kept = [v for v in values if v > 0]
    if not kept:
        return None
    return round(math.exp(sum(math.log(v) for v in kept) / len(kept)), 3)


# ---- the load generator: one process of its own for the whole run ---------------------


@dataclass(frozen=True)
class LoadJob:
    url: str
    key: str
    users: tuple[str, ...]
    messages: tuple[str, ...]
    connections: int
    warmup_s: float
    seconds: float


async def _closed_loop(
    session: Any, job: LoadJob, bodies: list[list[bytes]], seconds: float
) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415 - the load generator's process only

    headers = {"Authorization": f"Bearer {job.key}", "Content-Type": "application/json"}
    out: dict[str, list[Any]] = {
        "status": [],
        "latency_ms": [],
        "degraded": [],
        "knowledge": [],
        "recalled": [],
    }
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            body = bodies[(k * 7 + i) % len(bodies)][(i + k) % len(bodies[0])]
            i += 1
            with Stopwatch() as took:
                try:
                    async with session.post(job.url, data=body, headers=headers) as response:
                        raw = await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    raw, status = b"", 0
            out["latency_ms"].append(took.ms)
            parts, cited, recalled = parse_reply(raw) if status == 200 else ([], 0, 0)
            out["status"].append(status)
            out["degraded"].append(parts)
            out["knowledge"].append(cited)
            out["recalled"].append(recalled)

    with Stopwatch() as elapsed:
        await asyncio.gather(*(worker(k) for k in range(job.connections)))
    return {**out, "elapsed": elapsed.seconds}


async def _level(job: LoadJob, commands: Any, results: Any) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    bodies = [
        [
            json.dumps({"user_id": u, "session_id": f"s-{u}", "message": m}).encode()
            for m in job.messages
        ]
        for u in job.users
    ]
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=job.connections)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if job.warmup_s > 0:
            await _closed_loop(session, job, bodies, job.warmup_s)
        results.put(("warm", None))
        go = await asyncio.get_running_loop().run_in_executor(None, commands.get)
        if go != "go":
            return {"aborted": True}
        cpu_started = time.process_time()
        raw = await _closed_loop(session, job, bodies, job.seconds)
        raw["own_cpu_s"] = time.process_time() - cpu_started
        return raw


def _generator(commands: Any, results: Any) -> None:
    import uvloop  # noqa: PLC0415

    while (job := commands.get()) is not None:
        try:
            results.put(("done", uvloop.run(_level(job, commands, results))))
        except Exception as exc:  # handed to the parent, which stops
            results.put(("error", repr(exc)))


class LoadGenerator:
    """A closed-loop load generator in its own process: ``warm`` runs the warm-up on the
    level's connections, ``measure`` the level itself on the same connections, so the
    caller can take its snapshots in between."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.commands: Any = ctx.Queue()
        self.results: Any = ctx.Queue()
        self.process = ctx.Process(target=_generator, args=(self.commands, self.results))
        self.process.start()
        self.pid = self.process.pid or 0
        self.job: LoadJob | None = None

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.commands.put(None)
        self.process.join(timeout=15)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=10)

    def _answer(self, expected: str, timeout_s: float) -> Any:
        kind, value = self.results.get(timeout=timeout_s)
        if kind == "error":
            raise RuntimeError(f"load generator failed: {value}")
        if kind != expected:
            raise RuntimeError(f"load generator answered {kind}, expected {expected}")
        return value

    def warm(self, job: LoadJob) -> None:
        self.job = job
        self.commands.put(job)
        self._answer("warm", job.warmup_s + REQUEST_TIMEOUT_S + 60)

    def measure(self) -> dict[str, Any]:
        if self.job is None:
            raise RuntimeError("measure() before warm()")
        self.commands.put("go")
        raw: dict[str, Any] = self._answer("done", self.job.seconds + REQUEST_TIMEOUT_S + 60)
        return raw

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)


# ---- the processes' CPU (psutil, children included) --------------------------------


def cpu_snapshot(pids: Mapping[str, int]) -> CpuSnapshot:
    """CPU seconds so far of each process and of each of its children, by pid."""
    out: CpuSnapshot = {}
    for name, pid in pids.items():
        spent: dict[int, float] = {}
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            out[name] = spent
            continue
        for proc in family:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            spent[proc.pid] = times.user + times.system
        out[name] = spent
    return out


def idle_cpu(pids: Mapping[str, int], seconds: float = 5.0) -> dict[str, float]:
    before = cpu_snapshot(pids)
    time.sleep(seconds)
    return idle_rates(before, cpu_snapshot(pids), seconds)


# ---- one mesh, started the way `make up` starts it -----------------------------------


@dataclass
class RunningMesh:
    label: str
    checkout: Path
    home: Path
    stack: dict[str, Any]

    def url(self, name: str) -> str:
        url: str = self.stack["services"][name]
        return url

    @property
    def api_key(self) -> str:
        key: str = self.stack["api_key"]
        return key

    @property
    def pids(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in self.stack.get("pids", {}).items() if pid}


def checkout_info(checkout: Path) -> dict[str, Any]:
    """The commit a checkout is at, and whether its tree has changes on top."""

    def git(*argv: str) -> str:
        done = subprocess.run(  # noqa: S603 - fixed argv
            ["git", "-C", str(checkout), *argv],  # noqa: S607 - git on PATH
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()

    return {
        "path": str(checkout),
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "changed": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def _dev_env() -> dict[str, str]:
    """``make up``'s environment, without a parent's interpreter settings."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _stop_leftovers(data: Mapping[str, Any]) -> list[str]:
    """Servers a ``down`` left running (identity-checked handles of this run only)."""
    left = []
    for name, handle_json in data.get("processes", {}).items():
        try:
            handle = processes.ProcessHandle.from_json(handle_json)
        except (KeyError, TypeError, ValueError):
            continue
        if processes.is_running(handle):
            processes.stop(handle)
            left.append(name)
    return left


@contextmanager
def product_mesh(label: str, checkout: Path, home: Path) -> Iterator[RunningMesh]:
    """``<checkout>/.venv/bin/rapport-dev --home <home> up`` (cwd: the checkout), then
    ``down``, whatever happens in between."""
    cli = checkout / ".venv" / "bin" / "rapport-dev"
    if not cli.is_file():
        raise SystemExit(f"{cli} is missing: run `make install` in {checkout}")
    log = home.with_name(f"{home.name}-up.log")
    env = _dev_env()
    print(f"\n== {label}: rapport-dev up ({checkout}) ...", flush=True)
    started = time.monotonic()
    data: dict[str, Any] = {}
    try:
        with log.open("w") as out:
            done = subprocess.run(  # noqa: S603 - the checkout's own console script
                [str(cli), "--home", str(home), "up"],
                cwd=checkout,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=UP_TIMEOUT_S,
                check=False,
            )
        stack_file = home / "stack.json"
        data = json.loads(stack_file.read_text()) if stack_file.is_file() else {}
        if done.returncode != 0 or not data.get("services"):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise SystemExit(f"{label}: rapport-dev up failed ({done.returncode}):\n{tail}")
        print(
            f"   up in {time.monotonic() - started:.0f} s: "
            + ", ".join(f"{n} {p}" for n, p in data.get("pids", {}).items()),
            flush=True,
        )
        yield RunningMesh(label, checkout, home, data)
    finally:
        subprocess.run(  # noqa: S603
            [str(cli), "--home", str(home), "down"],
            cwd=checkout,
            env=env,
            capture_output=True,
            timeout=DOWN_TIMEOUT_S,
            check=False,
        )
        if left := _stop_leftovers(data):
            print(f"   {label}: `down` left {left} running; stopped them", flush=True)


# ---- seeding -------------------------------------------------------------------------


class SeedError(RuntimeError):
    """Seeding did not land: the run stops (after ``down``) instead of measuring it."""


@dataclass
class Seeded:
    report: dict[str, Any]
    bodies: dict[str, Any]  # real answers of the mesh, for the floor's payloads


class Seeder:
    """The speakers and documents of one mesh, over HTTP with its own key."""

    def __init__(self, mesh: RunningMesh, http: Any, speakers: Sequence[str]) -> None:
        self.mesh = mesh
        self.http = http
        self.speakers = list(speakers)
        self.turns = {user: chat_turns(i) for i, user in enumerate(speakers)}
        self.counts: Counter[str] = Counter()
        self.in_flight = asyncio.Semaphore(4)  # under respond's admission floor: none shed

    async def call(self, method: str, url: str, body: Any = None, expect: int = 200) -> Any:
        headers = {"Authorization": f"Bearer {self.mesh.api_key}"}
        async with self.http.request(method, url, json=body, headers=headers) as response:
            text = await response.text()
            if response.status != expect:
                raise SeedError(f"{method} {url} answered {response.status}: {text[:300]}")
            return json.loads(text) if text else None

    async def say(self, user: str, message: str) -> Any:
        async with self.in_flight:
            self.counts["chat_turns"] += 1
            body = {"user_id": user, "session_id": f"s-{user}", "message": message}
            return await self.call("POST", f"{self.mesh.url('respond')}/v1/respond", body)

    async def profile(self, user: str) -> Any:
        return await self.call("GET", f"{self.mesh.url('profile')}/v1/profiles/{user}")

    async def publish(self) -> None:
        """The documents, the views, then every speaker's turns in order."""
        ingest = self.mesh.url("ingest")
        await self.call("POST", f"{ingest}/v1/knowledge", {"documents": list(DOCUMENTS)}, 202)
        events = view_events(self.speakers)
        self.counts["view_events"] = len(events)
        for start in range(0, len(events), 100):
            batch = {"events": events[start : start + 100]}
            await self.call("POST", f"{ingest}/v1/events", batch, 202)
        for k in range(max(len(t) for t in self.turns.values())):
            await asyncio.gather(*(self.say(u, t[k]) for u, t in self.turns.items() if k < len(t)))

    async def profiles_applied(self, deadline: float) -> list[Any]:
        """Every speaker's profile once it shows facts, remembered messages and views;
        a speaker still lacking them after a while states a fact again (a reply that
        lost recommend's vector leaves its message out of memory)."""
        nudged = time.monotonic()
        while True:
            views = await asyncio.gather(*(self.profile(u) for u in self.speakers))
            lacking = {
                u: {
                    "facts": len(v.get("facts") or []),
                    "remembered_messages": v.get("remembered_messages", 0),
                    "recent_items": len(v.get("recent_items") or []),
                }
                for u, v in zip(self.speakers, views, strict=True)
                if not (v.get("facts") and v.get("remembered_messages") and v.get("recent_items"))
            }
            if not lacking:
                return list(views)
            if time.monotonic() > deadline:
                raise SeedError(
                    f"seeding did not land: {len(lacking)} of {len(self.speakers)} speakers "
                    f"lack facts, remembered messages or views, e.g. "
                    f"{dict(list(lacking.items())[:5])}"
                )
            if time.monotonic() - nudged > 8:
                self.counts["nudges"] += len(lacking)
                await asyncio.gather(*(self.say(u, self.turns[u][0]) for u in lacking))
                nudged = time.monotonic()
            await asyncio.sleep(1.0)

    async def knowledge_found(self, deadline: float) -> tuple[Any, Any]:
        """recommend's answer (with the vector) to the refund question and the knowledge
        search with that vector, once it finds a seeded document."""
        seeded = {d["doc_id"] for d in DOCUMENTS}
        asked = {"user_id": self.speakers[0], "k": 3, "message": REFUND_QUESTION, "vector": True}
        while True:
            recs = await self.call(
                "POST", f"{self.mesh.url('recommend')}/v1/recommendations", asked
            )
            vector = (recs.get("message") or {}).get("vector")
            if vector is not None:
                found = await self.call(
                    "POST",
                    f"{self.mesh.url('knowledge')}/v1/knowledge/search",
                    {"vector": vector, "k": 3},
                )
                if any(hit["doc_id"] in seeded for hit in found.get("hits", [])):
                    return recs, found
            if time.monotonic() > deadline:
                raise SeedError("no knowledge search found a seeded document in time")
            await asyncio.sleep(1.0)

    async def reply_cites(self) -> int:
        """Passages a reply to the refund question cites (tries for about 15 s)."""
        for _ in range(30):
            reply = await self.say(self.speakers[0], REFUND_QUESTION)
            if cited := len(reply.get("knowledge") or []):
                return cited
            await asyncio.sleep(0.5)
        raise SeedError("knowledge is indexed but no reply to the refund question cited it")


async def _seed(mesh: RunningMesh, speakers: Sequence[str], timeout_s: float) -> Seeded:
    import aiohttp  # noqa: PLC0415

    started = time.monotonic()
    deadline = started + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        seeder = Seeder(mesh, http, speakers)
        await seeder.publish()
        views = await seeder.profiles_applied(deadline)
        recs, found = await seeder.knowledge_found(deadline)
        cited = await seeder.reply_cites()
        profile_doc = await seeder.profile(speakers[0])
    bodies = {"profile": profile_doc, "recommendations": recs, "knowledge": found}
    facts = [len(v.get("facts") or []) for v in views]
    remembered = [int(v.get("remembered_messages", 0)) for v in views]
    report = {
        "speakers": len(speakers),
        "documents": len(DOCUMENTS),
        "view_events": seeder.counts["view_events"],
        "chat_turns": seeder.counts["chat_turns"],
        "nudges": seeder.counts["nudges"],
        "facts_per_speaker": {"min": min(facts), "max": max(facts)},
        "remembered_messages_per_speaker": {"min": min(remembered), "max": max(remembered)},
        "knowledge_hits": [h["doc_id"] for h in found.get("hits", [])],
        "reply_cited_passages": cited,
        "payload_bytes": {k: len(json.dumps(v)) for k, v in bodies.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    return Seeded(report, bodies)


# ---- measuring -----------------------------------------------------------------------


@dataclass
class Target:
    """What one run of levels loads: a mesh or a floor."""

    scenario: str  # "respond" or "floor v1" / "floor v2"
    label: str  # the mesh's label (base, new, product) or the floor's shape
    round: int
    url: str  # POST /v1/respond
    key: str
    pids: dict[str, int]
    respond: str | None = None  # its /metrics (stage histograms), for a mesh
    recommend: str | None = None


def _scrapes(target: Target) -> dict[str, str]:
    pages = {}
    for name, url in (("respond", target.respond), ("recommend", target.recommend)):
        if url:
            try:
                pages[name] = scrape(url)
            except OSError:
                pages[name] = ""
    return pages


def measure_level(
    target: Target,
    gen: LoadGenerator,
    *,
    connections: int,
    args: argparse.Namespace,
    idle: Mapping[str, float],
    speakers: Sequence[str],
) -> dict[str, Any]:
    if target.recommend:
        try:
            wait_until_ready(target.recommend)  # no breaker left open by the level before
        except TimeoutError:
            print(f"   recommend not ready before {connections} conns; measuring anyway")
    job = LoadJob(
        url=target.url,
        key=target.key,
        users=tuple(speakers),
        messages=MESSAGES,
        connections=connections,
        warmup_s=args.warmup,
        seconds=args.seconds,
    )
    gen.warm(job)
    pages_before = _scrapes(target)
    recorders: dict[str, subprocess.Popen[bytes]] = {}
    spy_dir: Path | None = None
    if args.py_spy and target.scenario == "respond" and connections == PROFILED_LEVEL:
        spy_dir = args.py_spy / f"{target.label}-round{target.round}"
        servers = {n: p for n, p in target.pids.items() if n not in ("kafka", "redis")}
        recorders = pyspy.record(servers, args.seconds, spy_dir)
    gen_before, cpu_before = gen.cpu_seconds(), cpu_snapshot(target.pids)
    with Stopwatch() as level:
        raw = gen.measure()
    wall = level.seconds
    cpu_after, gen_after = cpu_snapshot(target.pids), gen.cpu_seconds()
    pages_after = _scrapes(target)

    row = {
        "scenario": f"{target.scenario} {target.label}"
        if target.scenario == "respond"
        else target.scenario,
        "mesh": target.label,
        "round": target.round,
        **level_summary(raw, connections),
    }
    cpu = cpu_per_reply(
        cpu_spent(cpu_before, cpu_after),
        row["replies"],
        row["complete"],
        idle_per_s=idle,
        seconds=wall,
    )
    row["cpu_ms_per_reply"] = cpu["per_reply"]
    row["cpu_ms_per_reply_total"] = cpu["total"]
    row["cpu_ms_per_complete_reply"] = cpu["per_complete"]
    row["load_generator_cpu_ms_per_reply"] = round(
        (gen_after - gen_before) * 1000 / max(1, row["replies"]), 3
    )
    if "respond" in pages_after:
        stage, label = STAGE_HISTOGRAM
        row["stage_latency_ms"] = latency_between(
            histograms(pages_before.get("respond", ""), stage, label),
            histograms(pages_after["respond"], stage, label),
        )
        shed = [s.value for s in samples(pages_after["respond"]) if s.name == SHED_COUNTER]
        shed_before = [
            s.value for s in samples(pages_before.get("respond", "")) if s.name == SHED_COUNTER
        ]
        row["shed"] = int(sum(shed) - sum(shed_before))
    if "recommend" in pages_after:
        name, label = TRITON_HISTOGRAM
        row["triton_latency_ms"] = latency_between(
            histograms(pages_before.get("recommend", ""), name, label),
            histograms(pages_after["recommend"], name, label),
        )
    if recorders and spy_dir is not None:
        row["py_spy"] = pyspy.collect(recorders, spy_dir)
        for process, top in row["py_spy"].items():
            print(f"   py-spy {target.label} {process}: {top}", flush=True)
    print_level(row)
    return row


def run_levels(
    target: Target,
    gen: LoadGenerator,
    *,
    levels: Sequence[int],
    args: argparse.Namespace,
    idle: Mapping[str, float],
    speakers: Sequence[str],
) -> list[dict[str, Any]]:
    rows = []
    for i, connections in enumerate(levels):
        if i:
            time.sleep(args.pause)
        rows.append(
            measure_level(
                target, gen, connections=connections, args=args, idle=idle, speakers=speakers
            )
        )
    return rows


@dataclass
class MeshRun:
    label: str
    round: int
    idle: dict[str, float]
    seeding: dict[str, Any]
    rows: list[dict[str, Any]]
    bodies: dict[str, Any]


def measure_mesh(
    mesh: RunningMesh,
    round_number: int,
    gen: LoadGenerator,
    levels: Sequence[int],
    args: argparse.Namespace,
) -> MeshRun:
    missing = [s for s in NEEDED_SERVICES if s not in mesh.stack.get("services", {})]
    if missing:
        raise SeedError(f"{mesh.label}: `rapport-dev up` started no {', '.join(missing)}")
    speakers = speaker_ids()
    seeded = asyncio.run(_seed(mesh, speakers, args.seed_timeout))
    print(f"   seeded: {seeded.report}", flush=True)
    time.sleep(2.0)  # the last events applied
    idle = idle_cpu(mesh.pids)
    print(f"   idle CPU s per s: {idle}", flush=True)
    target = Target(
        scenario="respond",
        label=mesh.label,
        round=round_number,
        url=f"{mesh.url('respond')}/v1/respond",
        key=mesh.api_key,
        pids=mesh.pids,
        respond=mesh.url("respond"),
        recommend=mesh.stack["services"].get("recommend"),
    )
    rows = run_levels(target, gen, levels=levels, args=args, idle=idle, speakers=speakers)
    return MeshRun(mesh.label, round_number, idle, seeded.report, rows, seeded.bodies)


def measure_floors(
    bodies: Mapping[str, Any],
    round_number: int,
    gen: LoadGenerator,
    *,
    levels: Sequence[int],
    args: argparse.Namespace,
    work: Path,
) -> list[dict[str, Any]]:
    """Floor v1, then v2, each started alone on its own stack and stopped after."""
    rows: list[dict[str, Any]] = []
    speakers = speaker_ids()
    for shape in ("v1", "v2"):
        where = work / f"floor-{shape}-round{round_number}"
        where.mkdir(parents=True, exist_ok=True)
        with Stack(where) as stack:
            if shape == "v1":
                url = start_floor(
                    stack,
                    where,
                    profile=bodies["profile"],
                    recommendations=bodies["recommendations"],
                )
            else:
                url = start_floor_v2(
                    stack,
                    where,
                    profile=bodies["profile"],
                    recommendations=bodies["recommendations"],
                    knowledge=bodies["knowledge"],
                )
            pids = {s.spec.name: s.handle.pid for s in stack.running}
            target = Target(f"floor {shape}", shape, round_number, f"{url}/v1/respond", KEY, pids)
            print(f"\n== floor {shape}, round {round_number}: {', '.join(pids)}", flush=True)
            rows += run_levels(target, gen, levels=levels, args=args, idle={}, speakers=speakers)
    return rows


# ---- reporting -----------------------------------------------------------------------


def _conns(connections: int) -> str:
    return f"{connections} conn{'s' if connections != 1 else ''}"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_level(row: Mapping[str, Any]) -> None:
    c = row["connections"]
    print(
        f"{row['scenario']:<16} r{row['round']} {row['load']:<18} "
        f"replies/s={row['replies_per_s']:>7}  complete/s={row['complete_per_s']:>7}  "
        f"p50={_ms(row['p50_ms']):>6} ms p99={_ms(row['p99_ms']):>6} ms at {c} conns  "
        f"CPU ms/reply={_ms(row['cpu_ms_per_reply_total']):>5} "
        f"/complete={_ms(row['cpu_ms_per_complete_reply']):>5}",
        flush=True,
    )
    extra = {k: row[k] for k in ("statuses", "degraded", "shed") if row.get(k)}
    if extra:
        print(f"{'':<20}{extra}", flush=True)


def print_tables(runs: Sequence[MeshRun], floors: Sequence[dict[str, Any]]) -> None:
    header = (
        f"{'mesh':<12} {'round':>5} {'conns':>5} {'replies/s':>10} {'complete/s':>10} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'cmpl p50':>8} {'cmpl p99':>8} "
        f"{'CPU ms/reply':>12} {'CPU ms/cmpl':>11}"
    )
    print("\nReplies per level (closed loop; every latency beside its connections)")
    print(header)
    for row in [r for run in runs for r in run.rows] + list(floors):
        print(
            f"{row['scenario'].removeprefix('respond '):<12} {row['round']:>5} "
            f"{row['connections']:>5} {row['replies_per_s']:>10} {row['complete_per_s']:>10} "
            f"{_ms(row['p50_ms']):>8} {_ms(row['p99_ms']):>8} "
            f"{_ms(row['complete_p50_ms']):>8} {_ms(row['complete_p99_ms']):>8} "
            f"{_ms(row['cpu_ms_per_reply_total']):>12} {_ms(row['cpu_ms_per_complete_reply']):>11}"
        )
    for run in runs:
        conns = [r["connections"] for r in run.rows]
        print(f"\nCPU ms per reply, idle burn subtracted: {run.label}, round {run.round}")
        print(f"{'process':<16} {'idle s/s':>8} " + " ".join(f"{_conns(c):>9}" for c in conns))
        for name in sorted(run.idle, key=lambda n: (n not in INFRA_NAMES, n)):
            cells = " ".join(f"{r['cpu_ms_per_reply'].get(name, 0.0):>9.2f}" for r in run.rows)
            print(f"{name:<16} {run.idle[name]:>8.3f} {cells}")
        for title, key in (
            ("the mesh", "cpu_ms_per_reply_total"),
            ("per complete", "cpu_ms_per_complete_reply"),
            ("load generator", "load_generator_cpu_ms_per_reply"),
        ):
            print(f"{title:<16} {'':>8} " + " ".join(f"{_ms(r[key]):>9}" for r in run.rows))
        stages = sorted({s for r in run.rows for s in r.get("stage_latency_ms", {})})
        models = sorted({m for r in run.rows for m in r.get("triton_latency_ms", {})})
        print(
            f"stage latency ms, mean / p50 / p99 (respond's histogram): "
            f"{run.label}, round {run.round}"
        )
        for kind, names, key in (
            ("stage", stages, "stage_latency_ms"),
            ("triton", models, "triton_latency_ms"),
        ):
            for name in names:
                spans: list[str] = []
                for r in run.rows:
                    s = r.get(key, {}).get(name)
                    spans.append(
                        f"{_ms(s['mean_ms'])}/{_ms(s['p50_ms'])}/{_ms(s['p99_ms'])}" if s else "-"
                    )
                print(f"{kind + ' ' + name:<24} " + " ".join(f"{c:>17}" for c in spans))


def floor_ratios(runs: Sequence[MeshRun], floors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Complete replies/s of each mesh ÷ the floor's replies/s, same round, same level."""
    out = []
    floor_at = {(r["mesh"], r["round"], r["connections"]): r["replies_per_s"] for r in floors}
    for run in runs:
        for row in run.rows:
            c = row["connections"]
            for shape in ("v1", "v2"):
                floor = floor_at.get((shape, run.round, c))
                if floor is None:
                    continue
                out.append(
                    {
                        "mesh": run.label,
                        "round": run.round,
                        "connections": c,
                        "floor": shape,
                        "complete_per_s": row["complete_per_s"],
                        "floor_per_s": floor,
                        "ratio": ratio(row["complete_per_s"], floor),
                    }
                )
    return out


def compare_ratios(runs: Sequence[MeshRun]) -> dict[str, Any]:
    """new ÷ base complete replies/s (and CPU ms per complete reply) per round and level,
    and their geometric mean over the rounds."""
    by = {(run.label, run.round): {r["connections"]: r for r in run.rows} for run in runs}
    rounds = sorted({run.round for run in runs})
    per: list[dict[str, Any]] = []
    for rnd in rounds:
        base, new = by.get(("base", rnd), {}), by.get(("new", rnd), {})
        for c in sorted(set(base) & set(new)):
            per.append(
                {
                    "round": rnd,
                    "connections": c,
                    "complete_per_s": ratio(new[c]["complete_per_s"], base[c]["complete_per_s"]),
                    "replies_per_s": ratio(new[c]["replies_per_s"], base[c]["replies_per_s"]),
                    "cpu_ms_per_complete_reply": ratio(
                        new[c]["cpu_ms_per_complete_reply"], base[c]["cpu_ms_per_complete_reply"]
                    ),
                }
            )
    summary = {
        str(c): {
            key: geometric_mean([p[key] for p in per if p["connections"] == c and p[key]])
            for key in ("complete_per_s", "replies_per_s", "cpu_ms_per_complete_reply")
        }
        for c in sorted({p["connections"] for p in per})
    }
    return {"per_round": per, "geometric_mean": summary}


def goodput_series(runs: Sequence[MeshRun], floors: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the plot shows: complete replies/s by connections per mesh and round, and the
    floors' replies/s (mean over the rounds) by shape and connections."""
    series = {
        f"{run.label}, round {run.round}": {
            str(r["connections"]): r["complete_per_s"] for r in run.rows
        }
        for run in runs
    }
    floor: dict[str, dict[str, float]] = {}
    for shape in ("v1", "v2"):
        mine = [r for r in floors if r["mesh"] == shape]
        for c in sorted({r["connections"] for r in mine}):
            values = [r["replies_per_s"] for r in mine if r["connections"] == c]
            floor.setdefault(shape, {})[str(c)] = round(sum(values) / len(values), 1)
    return {"complete_per_s": series, "floor_replies_per_s": floor}


def plot_goodput(data: Mapping[str, Any], out: Path) -> bool:
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional, and kept out of the load generator

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, points in data["complete_per_s"].items():
        xs = sorted(points, key=int)
        ax.plot([int(x) for x in xs], [points[x] for x in xs], marker="o", label=label)
    styles = {"v1": ":", "v2": "--"}
    for shape, points in data["floor_replies_per_s"].items():
        for conns, value in points.items():
            ax.axhline(
                value,
                linestyle=styles.get(shape, "-."),
                color="grey" if conns == "1" else "black",
                linewidth=1,
                label=f"floor {shape}, {_conns(int(conns))}",
            )
    ax.set_xscale("log", base=2)
    ticks = sorted({int(c) for points in data["complete_per_s"].values() for c in points})
    if ticks:
        ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_yscale("log")
    ax.set_xlabel("connections (closed loop)")
    ax.set_ylabel("complete replies/s (HTTP 200, nothing degraded)")
    ax.set_title("respond, the product mesh: complete replies/s (floors: replies/s)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", linewidth=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


# ---- main ----------------------------------------------------------------------------


def parse_levels(text: str) -> list[int]:
    levels = sorted({int(part) for part in text.split(",") if part.strip()})
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError("levels are connection counts, e.g. 1,2,4,8,16,32")
    return levels


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    options = parser(__doc__, seconds=15.0, seconds_help="per level (2-120)")
    options.add_argument("--warmup", type=float, default=2.0, help="warm-up before each level")
    options.add_argument("--pause", type=float, default=2.0, help="pause between levels")
    options.add_argument(
        "--levels",
        type=parse_levels,
        default=list(LEVELS),
        help="closed-loop connections, comma-separated (default 1,2,4,8,16,32)",
    )
    options.add_argument("--quick", action="store_true", help="levels 1 and 8 only")
    options.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="DIR",
        help="another checkout (with its .venv) measured as `base` in alternating rounds",
    )
    options.add_argument(
        "--rounds", type=int, default=None, help="rounds (default 2 with --compare, else 1)"
    )
    options.add_argument(
        "--floor-all", action="store_true", help="the floors at every level, not only 1 and 16"
    )
    options.add_argument("--no-floor", action="store_true", help="skip the floors")
    options.add_argument(
        "--seed-timeout", type=float, default=120.0, help="seconds for seeding to land"
    )
    pyspy.option(
        options,
        f"record every Python server with py-spy during the {PROFILED_LEVEL}-connection level",
    )
    args = options.parse_args(argv)
    args.seconds = bounded(args.seconds, 2.0, 120.0)
    if args.quick:
        args.levels = list(QUICK_LEVELS)
    if args.rounds is None:
        args.rounds = 2 if args.compare else 1
    if args.compare is not None:
        args.compare = args.compare.resolve()
        if args.compare == REPO:
            options.error("--compare needs another checkout, not this one")
    return args


def floor_levels(levels: Sequence[int], every: bool) -> list[int]:
    if every:
        return list(levels)
    chosen = [c for c in levels if c in RATIO_LEVELS]
    return chosen or [min(levels)]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        measure(args)
    except SeedError as exc:
        raise SystemExit(f"bench.respond: {exc}") from exc


def measure(args: argparse.Namespace) -> None:
    checkouts = {"base": args.compare, "new": REPO} if args.compare else {"product": REPO}
    runs: list[MeshRun] = []
    floors: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rapport-respond-") as tmp, LoadGenerator() as gen:
        work = Path(tmp)
        for round_number in range(1, args.rounds + 1):
            bodies: dict[str, Any] | None = None
            for label, checkout in checkouts.items():
                home = work / f"{label}-round{round_number}"
                with product_mesh(label, checkout, home) as mesh:
                    run = measure_mesh(mesh, round_number, gen, args.levels, args)
                runs.append(run)
                if label != "base":
                    bodies = run.bodies
                time.sleep(args.pause)
            if bodies is not None and not args.no_floor:
                levels = floor_levels(args.levels, args.floor_all)
                floors += measure_floors(
                    bodies, round_number, gen, levels=levels, args=args, work=work
                )

    print_tables(runs, floors)
    ratios = floor_ratios(runs, floors)
    if ratios:
        print("\nComplete replies/s of the mesh ÷ the floor's replies/s (same round, same level)")
        for r in ratios:
            print(
                f"  {r['mesh']:<8} round {r['round']} {r['connections']:>3} conns  floor "
                f"{r['floor']}: {r['complete_per_s']} / {r['floor_per_s']} = {r['ratio']}"
            )
    compared = compare_ratios(runs) if args.compare else None
    if compared:
        print("\nnew ÷ base (alternating rounds), geometric mean over the rounds")
        for c, values in compared["geometric_mean"].items():
            print(f"  {c:>3} conns: {values}")
    goodput = goodput_series(runs, floors)
    plot = RESULTS / "respond_goodput.png"
    RESULTS.mkdir(exist_ok=True)
    plotted = plot_goodput(goodput, plot)
    print(f"wrote {plot}" if plotted else "matplotlib is not installed: no plot (data in JSON)")
    write_results(
        "respond",
        [r for run in runs for r in run.rows] + floors,
        driver="each checkout's `.venv/bin/rapport-dev --home <tmp> up` (as `make up`), "
        "HTTP only, psutil CPU of each pid in stack.json with its children",
        checkouts={label: checkout_info(path) for label, path in checkouts.items()},
        rounds=args.rounds,
        levels=args.levels,
        seconds_per_level=args.seconds,
        warmup_s=args.warmup,
        messages=list(MESSAGES),
        idle_cpu_s_per_s={f"{run.label}, round {run.round}": run.idle for run in runs},
        seeding={f"{run.label}, round {run.round}": run.seeding for run in runs},
        floor_vs_mesh=ratios,
        compare=compared,
        goodput=goodput,
        plot=str(plot.relative_to(REPO)) if plotted else None,
        note="a complete reply: HTTP 200 and personalization.degraded empty. CPU: user + "
        "system of each process and its children less its idle burn (5 s before the "
        "levels) over the level's wall time; the load generator is its own process, "
        "reported apart. Everything shares the box's cores.",
    )


if __name__ == "__main__":
    main()
