"""Memory: what it costs the profile processor, how fresh it is, and what it costs respond.

Starts Tansu, nx-27017, Redis, Milvus Lite and Triton (the exported models), then real
``rapport-profile``, ``rapport-recommend`` and two ``rapport-respond`` processes (memory
on, and ``RAPPORT_RESPOND_MEMORY=false``) on the same mesh.

1. **Apply throughput**, memory on against off: ``--events`` chat messages (a third
   state a fact, every one carries a 384-d vector as respond records them) already on
   a topic; one extra ``rapport-profile`` process per run, each with its own consumer
   group, database and collection, drains them. Three configurations, alternating, two
   rounds each: memory off; facts only (no vector store); facts and remembered
   messages (Milvus Lite). Events/s from the first applied event, and each process's
   CPU per event.
2. **Freshness**: a new user says "I'm vegetarian and I live in <city>." through
   respond; from the moment respond answered, ``GET /v1/profiles`` is polled until
   the fact is there, then the recall API until the message comes back for its own
   vector. Unloaded, one probe at a time.
3. **respond**, memory on against off, alternating, two rounds each, at 1 connection
   and at ``--rate`` req/s (open loop), for a user with facts and remembered messages:
   p50 and p99, the parts respond degraded, and its stage means.

Every latency is printed beside its load level and written to
``bench/results/memory.json``.

    .venv/bin/python -m bench.memory [--events 6000] [--rounds 40] [--seconds 8]
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench import pyspy
from bench.load import on_off_rounds
from bench.mesh import (
    KEY,
    Started,
    applied_total,
    bench_mesh,
    cpu_ms_per,
    cpu_snapshot,
    fill_topic,
    get_json,
    post_json,
)
from bench.options import bounded, parser
from bench.results_file import write_results
from bench.stats import Stopwatch, percentiles
from rapport.common.events import SCHEMA_HEADER
from rapport.common.kafka import TopicSpec, default_topics
from rapport.common.settings import KafkaSettings
from rapport.common.vectors import MessageVector

BACKLOG_TOPIC = "bench.memory.backlog"
PARTITIONS = 6
USERS = 2000
DIMENSION = 384
STATING = (
    "I'm vegetarian.",
    "I live in Lisbon and my budget is 40 euros.",
    "I have two kids and a dog.",
    "I'm allergic to peanuts, just so you know.",
    "I already have the first book of the series.",
    "I hate horror films but I love sci-fi.",
)
CHATTING = (
    "what time do you open tomorrow?",
    "can you recommend something to watch tonight?",
    "my order hasn't arrived yet, where is it?",
    "thanks, that was helpful!",
    "how do I change the delivery address on my order?",
    "is there a discount for students?",
    "tell me more about the second one",
    "what is the weather going to be like this weekend?",
    "I want to cancel my subscription",
    "do you have this in a larger size?",
    "which of these is the most popular?",
    "ok, add it to my cart please",
)
CITIES = ("Lisbon", "Porto", "Madrid", "Seville", "Lyon", "Nantes", "Turin", "Bologna", "Ghent")
CONFIGS = {
    "memory off": {"RAPPORT_PROFILE_MEMORY": "false"},
    "facts only": {"RAPPORT_PROFILE_MEMORY": "true", "RAPPORT_PROFILE_MILVUS_URI": ""},
    "facts + messages": {"RAPPORT_PROFILE_MEMORY": "true"},
}
MEMORY_USER = "bench-memory-user"
ASK = "any ideas for a vegetarian dinner for my kids tonight?"


def unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors: np.ndarray = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    norms: np.ndarray = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = vectors / norms
    return unit


def chat_messages(count: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """``count`` chat messages as respond records them, keyed by user: a third state a fact."""
    rng = np.random.default_rng(16)
    pick = random.Random(16)
    vectors = unit_vectors(rng, 256)  # reused: the store's cost does not depend on values
    now = datetime.now(UTC).isoformat()
    for i in range(count):
        user = f"user-{i % USERS}"
        text = pick.choice(STATING) if i % 3 == 0 else pick.choice(CHATTING)
        yield (
            user,
            {
                "event_id": str(uuid.uuid4()),
                "type": "chat_message",
                "user_id": user,
                "tenant": "bench",
                "occurred_at": now,
                "received_at": now,
                "text": text,
                "attributes": {"intent": "oos", "sentiment": 0.1},
                "vector": MessageVector.of(vectors[i % len(vectors)], "encoder:1").model_dump(),
            },
        )


async def fill_backlog(kafka: KafkaSettings, count: int) -> None:
    """``count`` chat messages (:func:`chat_messages`) on the backlog topic."""
    await fill_topic(
        kafka,
        BACKLOG_TOPIC,
        chat_messages(count),
        max_batch_size=512 * 1024,
        headers=[SCHEMA_HEADER],
    )


def drain(
    started: Started,
    run: tuple[str, int],
    count: int,
    *,
    py_spy: Path | None = None,
) -> dict[str, Any]:
    """One extra profile process drains the backlog with ``run``'s configuration; with
    ``py_spy``, that process is recorded for the first 4 s of the drain."""
    label, round_number = run
    name = f"{label.replace(' ', '_').replace('+', 'and')}_{round_number}"
    env = {
        "RAPPORT_PROFILE_EVENTS_TOPIC": BACKLOG_TOPIC,
        "RAPPORT_PROFILE_GROUP_ID": f"bench.memory.{name}",
        "RAPPORT_MONGO_DATABASE": f"bench_memory_{name}",
        "RAPPORT_PROFILE_MEMORY_COLLECTION": f"bench_memory_{name}",
        "RAPPORT_PROFILE_MAX_BATCH": "500",
        **CONFIGS[label],
    }
    stack = started.stack
    server = started.start("profile", env)
    try:
        while (first := applied_total(server.url())) == 0:
            time.sleep(0.02)
        recorders = pyspy.record({"profile": server.handle.pid}, 4, py_spy / name) if py_spy else {}
        before = cpu_snapshot(stack)
        with Stopwatch() as took:
            while applied_total(server.url()) < count:
                time.sleep(0.05)
        timed = count - int(first)
        row: dict[str, Any] = {
            "scenario": f"apply throughput, {label}",
            "load": f"{count} chat messages backlog, round {round_number}",
            "events_per_s": round(timed / took.seconds, 1),
            "seconds": round(took.seconds, 2),
            "cpu_ms_per_event": cpu_ms_per(before, cpu_snapshot(stack), timed),
        }
        if py_spy:
            tops = pyspy.collect(recorders, py_spy / name)
            row["py_spy"] = tops
            print(f"{'':<36} py-spy: {tops['profile']}", flush=True)
    finally:
        stack.stop(server)
    print(
        f"{row['scenario']:<36} load={row['load']:<36} events/s={row['events_per_s']:>8}",
        flush=True,
    )
    return row


async def freshness(respond: str, profile: str, recommend: str, rounds: int) -> dict[str, Any]:
    """From respond's answer to the fact in the profile, then to the message recalled."""
    headers = {"Authorization": f"Bearer {KEY}"}
    to_fact: list[float] = []
    to_recall: list[float] = []
    missed = 0
    async with aiohttp.ClientSession(headers=headers) as http:
        for n in range(rounds):
            user = f"fresh-{uuid.uuid4().hex[:8]}"
            city = CITIES[n % len(CITIES)]
            message = f"I'm vegetarian and I live in {city}."
            vector = await _vector(http, recommend, message)
            body = {"user_id": user, "session_id": "s", "message": message}
            async with http.post(f"{respond}/v1/respond", json=body) as response:
                response.raise_for_status()
            answered = Stopwatch()
            fact = await _poll(partial(_has_fact, http, profile, user, city), answered)
            recalled = await _poll(partial(_recalls, http, profile, user, vector), answered)
            if fact is None or recalled is None:
                missed += 1
                continue
            to_fact.append(fact)
            to_recall.append(recalled)
            await asyncio.sleep(0.05)
    return {"to_fact": to_fact, "to_recall": to_recall, "missed": missed}


async def _vector(http: aiohttp.ClientSession, recommend: str, message: str) -> dict[str, Any]:
    body = {"user_id": "bench-probe", "message": message, "k": 1, "vector": True}
    async with http.post(f"{recommend}/v1/recommendations", json=body) as response:
        answer = await response.json()
    return dict(answer["message"]["vector"])


async def _has_fact(http: aiohttp.ClientSession, profile: str, user: str, city: str) -> bool:
    async with http.get(f"{profile}/v1/profiles/{user}") as response:
        facts = (await response.json())["facts"]
    return any(f["type"] == "location" and f["value"] == city for f in facts)


async def _recalls(
    http: aiohttp.ClientSession, profile: str, user: str, vector: dict[str, Any]
) -> bool:
    body = {"vector": vector, "k": 1, "min_score": 0.9}
    async with http.post(f"{profile}/v1/profiles/{user}/memory/recall", json=body) as response:
        return bool((await response.json())["recalled"])


async def _poll(
    check: Callable[[], Awaitable[bool]], since: Stopwatch, timeout_s: float = 10.0
) -> float | None:
    """Seconds on ``since`` when ``check`` holds; None if not within ``timeout_s``."""
    while since.seconds < timeout_s:
        if await check():
            return since.seconds
        await asyncio.sleep(0.002)
    return None


def seed_memory_user(respond: str, profile: str) -> None:
    """A user with facts and remembered messages, as the load levels' speaker."""
    for text in (*STATING, *CHATTING[:4]):
        body = {"user_id": MEMORY_USER, "session_id": "seed", "message": text}
        post_json(f"{respond}/v1/respond", json.dumps(body).encode())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        remembered = get_json(f"{profile}/v1/profiles/{MEMORY_USER}")["remembered_messages"]
        if remembered >= len(STATING):
            return
        time.sleep(0.1)
    raise RuntimeError("the memory user's messages were not remembered in 30 s")


def main() -> None:
    options = parser(__doc__, seconds=8.0, seconds_help="per respond level")
    options.add_argument("--events", type=int, default=6000, help="backlog per apply run")
    options.add_argument("--rounds", type=int, default=40, help="freshness probes")
    options.add_argument("--rate", type=float, default=300.0, help="respond's open loop, req/s")
    pyspy.option(options, "record each draining profile process with py-spy for 4 s")
    options.add_argument("--apply-only", action="store_true", help="only the apply throughput runs")
    args = options.parse_args()
    count = bounded(args.events, 500, 100_000)
    rounds = bounded(args.rounds, 5, 500)
    seconds = bounded(args.seconds, 2.0, 60.0)
    rows: list[dict[str, Any]] = []
    services = ["profile", "recommend", "respond"]
    topics = [*default_topics(), TopicSpec(BACKLOG_TOPIC, PARTITIONS)]
    with bench_mesh(services, with_models=True, topics=topics) as started:
        without = started.start("respond", {"RAPPORT_RESPOND_MEMORY": "false"})
        profile, recommend = started.url("profile"), started.url("recommend")
        respond_on, respond_off = started.url("respond"), without.url("respond")

        kafka = KafkaSettings(kafka_bootstrap_servers=started.mesh.infra["kafka"])
        asyncio.run(fill_backlog(kafka, count))
        for run in (1, 2):
            for label in CONFIGS:
                rows.append(drain(started, (label, run), count, py_spy=args.py_spy))

        if args.apply_only:
            write_results("memory_apply", rows, backlog=count)
            return
        fresh = asyncio.run(freshness(respond_on, profile, recommend, rounds))
        for stage, key in (("fact visible", "to_fact"), ("recallable", "to_recall")):
            row = {
                "scenario": f"freshness: respond answered -> {stage}",
                "load": "unloaded, one probe at a time",
                "probes": len(fresh[key]),
                "missed_within_10s": fresh["missed"],
                **percentiles(fresh[key], digits=1, scale=1000, maximum=True),
            }
            figures = {k: v for k, v in row.items() if k.endswith("_ms")}
            print(f"{row['scenario']:<48} load={row['load']:<32} {figures}")
            rows.append(row)

        seed_memory_user(respond_on, profile)
        payload = json.dumps(
            {"user_id": MEMORY_USER, "session_id": "bench", "message": ASK}
        ).encode()
        rows += on_off_rounds(
            "memory",
            {"on": respond_on, "off": respond_off},
            payload,
            recommend=recommend,
            rate=args.rate,
            seconds=seconds,
        )
    write_results("memory", rows, seconds_per_level=seconds, freshness_rounds=rounds, backlog=count)


if __name__ == "__main__":
    main()
