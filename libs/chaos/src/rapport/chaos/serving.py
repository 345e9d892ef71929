"""Faults under live HTTP traffic: what the callers of ingest, profile, recommend and
respond see while a dependency is paused, killed, slowed, blackholed or reset.

Every request is recorded as a :class:`Call` with its send and answer times, so
each figure is counted from what a client actually got, inside or outside the
fault's window.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from rapport.chaos.harness import (
    Call,
    Harness,
    Lane,
    Row,
    call,
    event,
    eventually,
    settle,
    tally,
    traffic,
)
from rapport.chaos.scale import Scale
from rapport.devstack import processes, servers
from rapport.devstack.events import produce, read_topic, record
from rapport.devstack.faults import DelayProxy
from rapport.devstack.stack import infra_spec

Step = Callable[[], Awaitable[float | None]]
FAN = "fan"
FAN_ITEMS = ["50", "172", "181"]  # Star Wars and its two sequels, in the MovieLens catalogue
ASK = "what should i watch tonight"
DEADLINE_MS = 80  # respond's default budget (RAPPORT_RESPOND_DEADLINE_MS), set explicitly below
SLACK_MS = 10


def client_event(user: str) -> dict[str, Any]:
    """An event as a client sends it to ingest (ingest sets tenant and received_at)."""
    view = event(user, "item_view", item_id=f"m-{random.randrange(500)}", category="Drama")
    return {k: v for k, v in view.items() if k not in ("tenant", "received_at")}


def within(calls: list[Call], start: float, end: float) -> list[Call]:
    """The calls sent after ``start`` and answered before ``end``: wholly inside a window."""
    return [c for c in calls if c.sent >= start and c.done <= end]


# ---- 2. the broker paused --------------------------------------------------------------------


async def pause_broker(h: Harness, rows: list[Row], scale: Scale) -> None:
    row = Row(
        "2",
        f"SIGSTOP the broker {scale.pause_s:.0f} s during ingest load",
        "503+Retry-After while paused; 0 acked lost; back <= 5 s",
    )
    rows.append(row)
    lane = Lane("pause")
    broker = await h.start(servers.kafka_spec(processes.free_port()))  # private: it is paused
    bootstrap = broker.url("kafka")
    await h.open_lane(lane, bootstrap)
    infra = {**h.infra, "kafka": bootstrap}
    await h.start(h.service("profile", lane, infra=infra))
    ingest = await h.start(h.service("ingest", lane, infra=infra))
    url = f"{ingest.url()}/v1/events"
    calls: list[Call] = []
    acked: set[str] = set()
    rng = random.Random(2)

    def client() -> Step:
        pending: list[dict[str, Any]] = []

        async def step() -> float | None:
            nonlocal pending
            pending = pending or [client_event(f"user-{rng.randrange(200)}") for _ in range(10)]
            answer = await call(
                h.http, "post", "POST", url, headers=h.auth, json={"events": pending}
            )
            calls.append(answer)
            if answer.status == 503:  # as the README says: the same ids again after Retry-After
                return float(answer.headers.get("Retry-After", "1"))
            if answer.status == 202:
                acked.update(e["event_id"] for e in answer.body["events"])
            pending = []
            return None

        return step

    async with traffic([client() for _ in range(4)], 0.05):
        await asyncio.sleep(3.0)
        processes.pause(broker.handle)
        paused = time.monotonic()
        try:
            await asyncio.sleep(scale.pause_s)
        finally:
            processes.resume(broker.handle)
        resumed = time.monotonic()
        await asyncio.sleep(6.0)

    records = [json.loads(r.value) for r in await read_topic(h.kafka(bootstrap), lane.topic, 6)]
    drained, versions = await settle(h, lane, scale.drain_timeout_s, bootstrap=bootstrap)
    judge_pause(
        row,
        calls=calls,
        acked=acked,
        window=(paused, resumed),
        records=records,
        drained=drained,
        versions=versions,
    )


def judge_pause(
    row: Row,
    *,
    calls: list[Call],
    acked: set[str],
    window: tuple[float, float],
    records: list[dict[str, Any]],
    drained: bool,
    versions: dict[str, int],
) -> None:
    paused, resumed = window
    refused = [c for c in calls if c.status == 503]
    inside = within(calls, paused, resumed)
    no_retry_after = [c for c in refused if not c.headers.get("Retry-After", "").isdigit()]
    others = [c for c in calls if c.status not in (202, 503)]
    recovery = min(
        (c.done - resumed for c in calls if c.sent >= resumed and c.status == 202), default=None
    )
    on_topic = Counter(r["event_id"] for r in records)
    owners = {r["event_id"]: r["user_id"] for r in records}
    lost, twice = tally(Counter(owners.values()), versions)
    row.figures = {
        "requests": len(calls),
        "503 while paused": sum(1 for c in inside if c.status == 503),
        "202 while paused": sum(1 for c in inside if c.status == 202),
        "503 without Retry-After": len(no_retry_after),
        "slowest 503 ms": round(max((c.ms for c in refused), default=0)),
        "other answers": len(others),
        "acked events": len(acked),
        "acked not on topic": len(acked - on_topic.keys()),
        "on topic twice": sum(n - 1 for n in on_topic.values() if n > 1),
        "lost in profiles": lost,
        "applied twice": twice,
        "recovery s": None if recovery is None else round(recovery, 2),
    }
    row.check("503s while paused", any(c.status == 503 for c in inside))
    row.check("no 202 while paused", not any(c.status == 202 for c in inside))
    row.check("every 503 has Retry-After", bool(refused) and not no_retry_after)
    row.check("503 within the 2 s produce deadline + 1 s", all(c.ms <= 3000 for c in refused))
    row.check("no other answer", not others)
    row.check("0 acked events lost", acked <= on_topic.keys())
    row.check("profiles exact", drained and lost == 0 and twice == 0)
    row.check("recovered within 5 s", recovery is not None and recovery <= 5.0)


# ---- 3. Redis killed -------------------------------------------------------------------------


async def kill_redis(h: Harness, rows: list[Row], scale: Scale) -> None:
    row = Row(
        "3",
        "kill -9 Redis during ingest + profile reads",
        "0 errors to callers; 0 events lost",
    )
    rows.append(row)
    lane = Lane("redis")
    await h.open_lane(lane)
    redis_spec = servers.redis_spec(processes.free_port(), h.log_dir)  # private: it is killed
    redis = await h.start(redis_spec)
    infra = {**h.infra, "redis": redis.url()}
    profile = await h.start(h.service("profile", lane, infra=infra))
    ingest = await h.start(h.service("ingest", lane, infra=infra))
    users = [f"user-{i}" for i in range(20)]
    acked: Counter[str] = Counter()
    calls: list[Call] = []
    rng = random.Random(3)

    async def post() -> float | None:
        batch = [client_event(rng.choice(users)) for _ in range(5)]
        answer = await call(
            h.http,
            "post",
            "POST",
            f"{ingest.url()}/v1/events",
            headers=h.auth,
            json={"events": batch},
        )
        calls.append(answer)
        if answer.status == 202:
            acked.update(e["user_id"] for e in batch)
        return None

    async def read() -> float | None:
        url = f"{profile.url()}/v1/profiles/{rng.choice(users)}"
        calls.append(await call(h.http, "read", "GET", url, headers=h.auth))
        return None

    async def trending() -> float | None:
        url = f"{profile.url()}/v1/trending"
        calls.append(await call(h.http, "trending", "GET", url, headers=h.auth))
        return None

    await post()  # the first users known and cached before the fault
    async with traffic([post, post, read, read, trending], 0.02):
        await asyncio.sleep(2.0)
        await h.kill(redis)
        killed = time.monotonic()
        await asyncio.sleep(scale.outage_s)
        restarting = time.monotonic()
        await h.start(redis_spec)  # same port, empty: a cache that lost everything
        await asyncio.sleep(3.0)

    drained, versions = await settle(h, lane, scale.drain_timeout_s)
    expected = {"post": 202, "read": 200, "trending": 200}
    errors = [c for c in calls if c.status != expected[c.kind]]
    outage = within(calls, killed, restarting)
    unchecked = sum(
        1 for c in outage if c.kind == "post" and c.status == 202 and not c.body["dedup_checked"]
    )
    lost, twice = tally(acked, versions)
    kinds = Counter(c.kind for c in outage)
    row.figures = {
        "requests": len(calls),
        "during outage": ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
        "errors": len(errors),
        "5xx": sum(1 for c in errors if c.status >= 500),
        "accepted without dedup": unchecked,
        "acked events lost": lost,
        "applied twice": twice,
    }
    if errors:
        row.figures["first error"] = f"{errors[0].kind} {errors[0].status} {errors[0].body}"[:120]
    row.check("traffic during the outage", all(kinds[k] > 0 for k in expected))
    row.check("0 errors", not errors)
    row.check("0 lost, 0 twice", drained and lost == 0 and twice == 0)


# ---- the models mesh (rows 5 and 6) ----------------------------------------------------------


async def seed_fan(h: Harness, lane: Lane, profile_url: str) -> None:
    """The fan's three views, and other users' views so trending has items to serve."""
    views = [event(FAN, "item_view", item_id=item, category="Sci-Fi") for item in FAN_ITEMS]
    for i, item in enumerate(["1", "100", "127", "258", "98", "56"]):
        views.append(event(f"neighbour-{i % 3}", "item_view", item_id=item, category="Drama"))
    await produce(h.kafka(), lane.topic, [record(v) for v in views])

    async def applied() -> bool:
        url = f"{profile_url}/v1/profiles/{FAN}"
        async with h.http.get(url, headers=h.auth) as response:
            if response.status != 200:
                return False
            return len((await response.json())["recent_items"]) == len(FAN_ITEMS)

    if await eventually(applied, 30) is None:
        raise RuntimeError("the profile service never applied the seed events")


def recommend_env(h: Harness, profile_url: str) -> dict[str, str]:
    return {
        "RAPPORT_PROFILE_URL": profile_url,
        "RAPPORT_RECOMMEND_CATALOG_PATH": str(h.catalog),
    }


# ---- 5. Triton killed ------------------------------------------------------------------------


async def kill_triton(h: Harness, rows: list[Row], scale: Scale) -> None:
    row = Row(
        "5",
        "kill -9 Triton during recommend + respond traffic",
        "0 5xx; every fallback flagged; model back",
    )
    rows.append(row)
    lane = Lane("triton")
    await h.open_lane(lane)
    triton = await h.ensure_triton()
    profile = await h.start(h.service("profile", lane))
    recommend = await h.start(h.service("recommend", lane, env=recommend_env(h, profile.url())))
    respond = await h.start(
        h.service(
            "respond",
            lane,
            env={"RAPPORT_PROFILE_URL": profile.url(), "RAPPORT_RECOMMEND_URL": recommend.url()},
        )
    )
    await seed_fan(h, lane, profile.url())
    calls: list[Call] = []

    async def ask_recommend() -> Call:
        body = {"user_id": FAN, "k": 5, "message": ASK}
        url = f"{recommend.url()}/v1/recommendations"
        return await call(h.http, "recommend", "POST", url, headers=h.auth, json=body)

    async def model_serves() -> bool:
        answer = await ask_recommend()
        return answer.status == 200 and answer.body["fallback"] is False

    if await eventually(model_serves, 60) is None:
        raise RuntimeError("recommend never served from Triton before the fault")

    async def recommend_step() -> float | None:
        calls.append(await ask_recommend())
        return None

    async def respond_step() -> float | None:
        body = {"user_id": FAN, "session_id": "s-fan", "message": ASK}
        url = f"{respond.url()}/v1/respond"
        calls.append(await call(h.http, "respond", "POST", url, headers=h.auth, json=body))
        return None

    async with traffic([recommend_step, recommend_step, respond_step, respond_step], 0.02):
        await asyncio.sleep(2.0)
        await h.kill(triton)
        killed = time.monotonic()
        await asyncio.sleep(scale.outage_s)
        restarting = time.monotonic()
        await h.ensure_triton()  # same ports, same models
        started_s = time.monotonic() - restarting
        back_s = await eventually(model_serves, 60)
        await asyncio.sleep(1.0)
    judge_triton(row, calls, (killed, restarting), started_s, back_s)


def judge_triton(
    row: Row,
    calls: list[Call],
    window: tuple[float, float],
    started_s: float,
    back_s: float | None,
) -> None:
    errors = [c for c in calls if c.status != 200]
    outage = within(calls, *window)
    unflagged = [c for c in outage if c.status == 200 and not flagged(c)]
    answered = [c for c in calls if c.kind == "recommend" and c.status == 200]
    reasonless = [c for c in answered if c.body["fallback"] and not c.body["fallback_reason"]]
    kinds = Counter(c.kind for c in outage)
    reasons = Counter(c.body["fallback_reason"] for c in answered if c in outage)
    row.figures = {
        "requests": len(calls),
        "5xx": sum(1 for c in errors if c.status >= 500),
        "other errors": sum(1 for c in errors if c.status < 500),
        "during outage": ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
        "fallback reasons": ", ".join(f"{k} {n}" for k, n in reasons.most_common()),
        "unflagged": len(unflagged) + len(reasonless),
        "Triton restart s": round(started_s, 1),
        "model back s after": None if back_s is None else round(back_s, 1),
    }
    row.check("0 errors (5xx or other)", not errors)
    row.check("traffic during the outage", kinds["recommend"] > 0 and kinds["respond"] > 0)
    row.check("every fallback flagged", not unflagged and not reasonless)
    row.check("model serves again", back_s is not None)


def flagged(answer: Call) -> bool:
    """A reply served without Triton says so: recommend's fallback with a reason, respond's
    degraded ranking (or no recommendations at all)."""
    if answer.kind == "recommend":
        return bool(answer.body["fallback"] and answer.body["fallback_reason"])
    return bool({"ranking", "recommendations"} & set(answer.body["personalization"]["degraded"]))


# ---- 6. respond's deadline with each dependency slow, blackholed or reset -----------------------

FAULTS: dict[str, Callable[[DelayProxy], None]] = {
    "latency 200 ms": lambda proxy: setattr(proxy, "delay_s", 0.2),
    "blackhole": DelayProxy.blackhole,
    "reset": DelayProxy.reset,
}
# The part respond must name when a dependency fails; Kafka is off the reply's path.
# "profile" is both ways respond reaches a profile: the view published in Redis and, when
# Redis fails, profile's API; "knowledge" is knowledge's index in Milvus, read by respond.
PARTS: dict[str, set[str]] = {
    "profile": {"profile"},
    "recommend": {"recommendations"},
    "triton": {"ranking", "recommendations"},
    "knowledge": {"knowledge"},
    "kafka": set(),
}
# The proxies each dependency's fault is injected into.
PROXIES: dict[str, tuple[str, ...]] = {
    "profile": ("profile", "redis"),
    "recommend": ("recommend",),
    "triton": ("triton",),
    "knowledge": ("milvus",),
    "kafka": ("kafka",),
}


async def deadline_under_faults(h: Harness, rows: list[Row], scale: Scale) -> None:
    lane = Lane("deadline")
    await h.open_lane(lane)
    triton = await h.ensure_triton()
    proxies: dict[str, DelayProxy] = {}

    async def proxy(name: str, address: str) -> DelayProxy:
        host, _, port = address.removeprefix("http://").rpartition(":")
        proxies[name] = await DelayProxy(host, int(port)).start()
        h.scope.push_async_callback(proxies[name].stop)
        return proxies[name]

    # respond's Kafka is a private broker that advertises the proxy, so every byte passes it.
    broker_port = processes.free_port()
    kafka_proxy = await proxy("kafka", f"127.0.0.1:{broker_port}")
    broker = await h.start(servers.kafka_spec(broker_port, advertised_port=kafka_proxy.port))
    await h.open_lane(lane, broker.url("kafka"))
    profile = await h.start(h.service("profile", lane))
    triton_proxy = await proxy("triton", triton.url("triton_grpc"))
    recommend = await h.start(
        h.service(
            "recommend",
            lane,
            env={
                **recommend_env(h, profile.url()),
                "RAPPORT_TRITON_GRPC_URL": triton_proxy.address,
                "RAPPORT_RECOMMEND_BREAKER_RESET_S": "1",  # heal quickly between faults
            },
        )
    )
    profile_proxy = await proxy("profile", profile.url())
    recommend_proxy = await proxy("recommend", recommend.url())
    redis_at = urlsplit(h.infra["redis"])
    redis_proxy = await proxy("redis", redis_at.netloc)
    # knowledge builds its index in a Milvus of this row; respond searches it through a proxy.
    milvus = await h.start(infra_spec("milvus", h.log_dir))
    knowledge = await h.start(
        h.service("knowledge", lane, infra={**h.infra, "milvus": milvus.url("milvus")})
    )
    milvus_proxy = await proxy("milvus", milvus.url("milvus"))
    respond = await h.start(
        h.service(
            "respond",
            lane,
            infra={
                **h.infra,
                "kafka": broker.url("kafka"),
                "redis": f"redis://{redis_proxy.address}{redis_at.path}",
                "milvus": milvus_proxy.url,
            },
            env={
                "RAPPORT_PROFILE_URL": profile_proxy.url,
                "RAPPORT_RECOMMEND_URL": recommend_proxy.url,
                "RAPPORT_KNOWLEDGE_URL": knowledge.url(),
                "RAPPORT_RESPOND_DEADLINE_MS": str(DEADLINE_MS),
            },
        )
    )
    await seed_fan(h, lane, profile.url())
    url = f"{respond.url()}/v1/respond"
    body = {"user_id": FAN, "session_id": "s-fan", "message": ASK}

    async def reply() -> Call:
        return await call(h.http, "respond", "POST", url, headers=h.auth, json=body, timeout_s=5)

    async def healthy() -> bool:
        answer = await reply()
        return answer.status == 200 and not answer.body["personalization"]["degraded"]

    letters = iter("abcdefghijklmnopqrstuvwxyz")
    for dependency, part in PARTS.items():
        for fault, inject in FAULTS.items():
            naming = f", degraded names {'/'.join(sorted(part))}" if part else " (off the path)"
            row = Row(
                f"6{next(letters)}",
                f"respond: {dependency} {fault}",
                f"200 within {DEADLINE_MS}+{SLACK_MS} ms{naming}",
            )
            rows.append(row)
            started = time.monotonic()
            for each in proxies.values():
                each.up()
            ready = await eventually(healthy, 30)
            for name in PROXIES[dependency]:
                inject(proxies[name])
            replies = []
            for _ in range(scale.deadline_requests):
                replies.append(await reply())
                await asyncio.sleep(0.02)
            for name in PROXIES[dependency]:
                proxies[name].up()
            row.seconds = time.monotonic() - started
            deadline_check(row, replies, part, healthy_before=ready is not None)
    for each in proxies.values():
        each.up()


def deadline_check(row: Row, replies: list[Call], part: set[str], *, healthy_before: bool) -> None:
    answered = [c for c in replies if c.status == 200]
    degraded = [set(c.body["personalization"]["degraded"]) for c in answered]
    named = sum(1 for d in degraded if part & d)
    times = [c.ms for c in replies]
    row.figures = {
        "replies": len(replies),
        "non-200": len(replies) - len(answered),
        # the median: the p50 of bench.stats.percentile (linear between the closest ranks)
        "p50 ms": round(statistics.median(times), 1),
        "max ms": round(max(times), 1),
        "naming the part": f"{named}/{len(answered)}" if part else "-",
        "degraded seen": ",".join(sorted(set().union(*degraded))) or "none",
    }
    row.check("healthy before the fault", healthy_before)
    row.check("all 200", len(answered) == len(replies))
    row.check(f"max <= {DEADLINE_MS + SLACK_MS} ms", max(times) <= DEADLINE_MS + SLACK_MS)
    if part:
        row.check("degraded names the part", named == len(answered))
