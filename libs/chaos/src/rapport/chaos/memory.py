"""Milvus away under replies and chat (row 11), and an erasure while it is away (row 12).

The whole reply path runs as processes: profile (memory on), recommend on the shared
Triton, knowledge and respond, all on one Milvus of this scenario, which is paused
(SIGSTOP), then killed (SIGKILL) and started again on its data. Replies must keep
their deadline and say what they lacked; every chat message a reply recorded must be
in Milvus once it is back, and an erasure made while it was away must be complete.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

from pymilvus import AsyncMilvusClient

from rapport.chaos.harness import (
    Call,
    GroupWatch,
    Harness,
    Lane,
    Row,
    call,
    eventually,
    metric,
    traffic,
)
from rapport.chaos.scale import Scale
from rapport.chaos.serving import DEADLINE_MS, SLACK_MS, recommend_env, within
from rapport.common.milvus import literal
from rapport.common.profiles import profile_id
from rapport.devstack import processes
from rapport.devstack.events import read_topic
from rapport.devstack.servers import RunningServer, ServerSpec
from rapport.devstack.stack import infra_spec

USERS = 24
MESSAGES = (
    "I'm vegetarian and I love hiking.",
    "Any good films about space travel?",
    "I live in Berlin, what is on tonight?",
    "My budget is 50 EUR for a gift.",
    "Something light and funny, please.",
    "I have two kids, we watch together.",
)
MEMORY_ID_PREFIX = "m-"  # profile's message ids: the prefix, then the chat event's id
WAITING = "rapport_profile_memory_waiting"


async def milvus_away(h: Harness, rows: list[Row], scale: Scale) -> None:
    pause_row = Row(
        "11",
        f"SIGSTOP Milvus {scale.pause_s:.0f} s, then kill -9 it {scale.outage_s:.0f} s, "
        "under replies and chat",
        f"200 within {DEADLINE_MS}+{SLACK_MS} ms, knowledge named; every message remembered",
    )
    erase_row = Row(
        "12",
        "erasure while Milvus is dead",
        "204 at once; nothing of the users left once Milvus is back",
    )
    rows += [pause_row, erase_row]
    lane = Lane("milvus")
    mesh = await start_mesh(h, lane)
    profile, respond, milvus = mesh.profile, mesh.respond, mesh.milvus
    users = [f"talker-{i}" for i in range(USERS)]
    rng = random.Random(11)
    replies: list[Call] = []

    async def reply() -> float | None:
        body = {"user_id": rng.choice(users), "session_id": "s-1", "message": rng.choice(MESSAGES)}
        url = f"{respond.url()}/v1/respond"
        replies.append(await call(h.http, "respond", "POST", url, headers=h.auth, json=body))
        return None

    async def healthy() -> bool:
        await reply()
        answer = replies.pop()
        return answer.status == 200 and not answer.body["personalization"]["degraded"]

    if await eventually(healthy, 60) is None:
        raise RuntimeError("the reply path never answered without degradation")
    async with traffic([reply, reply], 0.05):
        await asyncio.sleep(3.0)
        processes.pause(milvus.handle)
        paused = time.monotonic()
        await asyncio.sleep(scale.pause_s)
        processes.resume(milvus.handle)
        resumed = time.monotonic()
        await asyncio.sleep(3.0)
        await h.kill(milvus)
        killed = time.monotonic()
        await asyncio.sleep(scale.outage_s)
        restarting = time.monotonic()
        milvus = mesh.milvus = await h.start(mesh.milvus_spec)
        await asyncio.sleep(3.0)

    async def drained() -> bool:
        return await metric(profile.url(), h.http, WAITING) == 0 and await caught_up(h, lane)

    drain_s = await eventually(drained, scale.drain_timeout_s)
    sent = await chat_messages(h, lane)
    stored = await stored_ids(milvus, lane, sent)
    delayed = await metric(
        profile.url(), h.http, "rapport_profile_memory_total", kind="messages_delayed"
    )
    faults = within(replies, paused, resumed) + within(replies, killed, restarting)
    judge_replies(pause_row, replies, faults)
    first, last = replies[0].sent, replies[-1].done
    for phase, calls in (
        ("before", within(replies, first, paused)),
        ("paused", within(replies, paused, resumed)),
        ("resumed", within(replies, resumed, killed)),
        ("dead", within(replies, killed, restarting)),
        ("restarted", within(replies, restarting, last)),
    ):
        pause_row.figures[f"max ms {phase}"] = round(max((c.ms for c in calls), default=0), 1)
    missing = set(sent) - stored
    pause_row.figures |= {
        "chat messages sent": len(sent),
        "delayed": int(delayed),
        "in Milvus after": len(stored),
        "missing": len(missing),
        "drained s": "-" if drain_s is None else round(drain_s, 1),
    }
    pause_row.check("chat recorded", len(sent) > 0)
    pause_row.check("messages waited", delayed > 0)
    pause_row.check("waiting drained", drain_s is not None)
    pause_row.check("0 missing", not missing)

    await erase_while_dead(h, erase_row, lane, mesh, sent=sent, scale=scale)


@dataclass
class Mesh:
    profile: RunningServer
    respond: RunningServer
    milvus: RunningServer
    milvus_spec: ServerSpec  # to start it again on its data


async def start_mesh(h: Harness, lane: Lane) -> Mesh:
    """profile (memory on), recommend, knowledge and respond, on a Milvus of their own."""
    await h.open_lane(lane)
    triton = await h.ensure_triton()
    milvus_spec = infra_spec("milvus", h.log_dir)
    milvus = await h.start(milvus_spec)
    infra = {**h.infra, "milvus": milvus.url("milvus")}
    profile = await h.start(
        h.service(
            "profile",
            lane,
            infra=infra,
            env={
                "RAPPORT_PROFILE_MEMORY_WRITE_TIMEOUT_MS": "500",
                "RAPPORT_PROFILE_MEMORY_RETRY_S": "0.5",
                "RAPPORT_PROFILE_WAITING_INTERVAL_S": "0.5",
            },
        )
    )
    recommend_settings = recommend_env(h, profile.url())
    recommend_settings["RAPPORT_TRITON_GRPC_URL"] = triton.url("triton_grpc")
    recommend = await h.start(h.service("recommend", lane, env=recommend_settings))
    knowledge = await h.start(h.service("knowledge", lane, infra=infra))
    respond = await h.start(
        h.service(
            "respond",
            lane,
            infra=infra,
            env={
                "RAPPORT_PROFILE_URL": profile.url(),
                "RAPPORT_RECOMMEND_URL": recommend.url(),
                "RAPPORT_KNOWLEDGE_URL": knowledge.url(),
                "RAPPORT_RESPOND_DEADLINE_MS": str(DEADLINE_MS),
            },
        )
    )
    return Mesh(profile, respond, milvus, milvus_spec)


async def erase_while_dead(
    h: Harness, row: Row, lane: Lane, mesh: Mesh, *, sent: dict[str, str], scale: Scale
) -> None:
    """Kill Milvus, erase the users who said the most, start it again: none of their
    vectors, profiles or published views are left."""
    by_user: dict[str, int] = {}
    for pid in sent.values():
        by_user[pid] = by_user.get(pid, 0) + 1
    victims = sorted(by_user, key=lambda pid: -by_user[pid])[:3]
    users = [pid.split(":", 2)[2] for pid in victims]  # profile ids are "<n>:<tenant>:<user>"
    profile, milvus = mesh.profile, mesh.milvus
    before = await vectors_of(milvus, lane, victims)
    await h.kill(milvus)
    started = time.monotonic()
    answers = [
        await call(
            h.http,
            "erase",
            "DELETE",
            f"{profile.url()}/v1/profiles/{user}",
            headers=h.auth,
        )
        for user in users
    ]
    answered_s = time.monotonic() - started
    milvus = mesh.milvus = await h.start(mesh.milvus_spec)

    async def erased() -> bool:
        return await metric(profile.url(), h.http, WAITING) == 0 and not await vectors_of(
            milvus, lane, victims
        )

    done_s = await eventually(erased, scale.drain_timeout_s)
    left = await vectors_of(milvus, lane, victims)
    profiles = [p for p in await h.profiles(lane) if p["_id"] in victims]
    row.figures = {
        "users": len(users),
        "vectors before": len(before),
        "answered in s": round(answered_s, 2),
        "statuses": ",".join(sorted({str(a.status) for a in answers})),
        "done after restart s": "-" if done_s is None else round(done_s, 1),
        "vectors left": len(left),
        "profiles left": len(profiles),
    }
    row.check("users had vectors", len(before) > 0)
    row.check("all 204", all(a.status == 204 for a in answers))
    row.check("nothing left", done_s is not None and not left and not profiles)


def judge_replies(row: Row, replies: list[Call], faults: list[Call]) -> None:
    answered = [c for c in replies if c.status == 200]
    during = [c for c in faults if c.status == 200]
    named = sum(1 for c in during if "knowledge" in c.body["personalization"]["degraded"])
    memory = sum(1 for c in during if "memory" in c.body["personalization"]["degraded"])
    slowest = max(c.ms for c in replies)
    row.figures = {
        "replies": len(replies),
        "in the faults": len(faults),
        "non-200": len(replies) - len(answered),
        "max ms": round(slowest, 1),
        "knowledge named": f"{named}/{len(during)}",
        # respond reads the recall set from Redis: memory needs Milvus only when it is not there
        "memory named": f"{memory}/{len(during)}",
    }
    row.check("replies in the faults", len(faults) > 0)
    row.check("all 200", len(answered) == len(replies))
    row.check(f"max <= {DEADLINE_MS + SLACK_MS} ms", slowest <= DEADLINE_MS + SLACK_MS)
    row.check("knowledge named in the faults", named == len(during))


async def caught_up(h: Harness, lane: Lane) -> bool:
    async with GroupWatch(h.kafka(), lane.topic, lane.group()) as watch:
        return await watch.lag() == 0


async def chat_messages(h: Harness, lane: Lane) -> dict[str, str]:
    """Every chat message recorded with its vector (memory keeps only those): memory id to
    profile id."""
    found: dict[str, str] = {}
    for record in await read_topic(h.kafka(), lane.topic, 3):
        event = json.loads(record.value)
        if event.get("type") == "chat_message" and event.get("vector"):
            pid = profile_id(event["tenant"], event["user_id"])
            found[MEMORY_ID_PREFIX + event["event_id"]] = pid
    return found


def collection(lane: Lane) -> str:
    return f"{lane.database}_memory"  # as Lane.profile_env names it


async def stored_ids(milvus: RunningServer, lane: Lane, wanted: Iterable[str]) -> set[str]:
    ids = sorted(wanted)
    client = AsyncMilvusClient(uri=milvus.url("milvus"))
    try:
        await client.load_collection(collection(lane))
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ", ".join(literal(i) for i in ids[start : start + 500])
            rows = await client.query(
                collection(lane),
                filter=f"id in [{chunk}]",
                output_fields=["id"],
                consistency_level="Strong",
            )
            found |= {str(row["id"]) for row in rows}
        return found
    finally:
        await client.close()


async def vectors_of(milvus: RunningServer, lane: Lane, pids: Iterable[str]) -> list[str]:
    quoted = ", ".join(literal(pid) for pid in pids)
    client = AsyncMilvusClient(uri=milvus.url("milvus"))
    try:
        await client.load_collection(collection(lane))
        rows = await client.query(
            collection(lane),
            filter=f"pid in [{quoted}]",
            output_fields=["id"],
            consistency_level="Strong",
        )
        return [str(row["id"]) for row in rows]
    finally:
        await client.close()
