"""``make demo``: the whole mesh, the way a new user meets it.

1. the model repository: built by ``rapport-models export`` when missing
   (trained models are cached, so a second run takes seconds);
2. the infrastructure (Tansu, nx-27017, Redis, Milvus Lite, Triton) and the five
   services, as ``make up`` starts them;
3. real MovieLens-100K ratings replayed through ingest as a live stream;
4. the company's knowledge base (refund, shipping and gift-card policies)
   published through ingest and indexed by the knowledge service;
5. a scripted conversation through the OpenAI-compatible endpoint, with the
   official ``openai`` client: turn by turn the reply changes as the profile
   does, and the transcript shows why (profile delta, recommendations with
   their reasons, company passages, degraded parts, trace ids). The bot
   answers a policy question from the knowledge base; the policy is updated
   mid-conversation, and the next answer cites the new text. The user says
   they are vegetarian; memory learns it from the chat message, and the very
   next reply shows the fact and uses it;
6. an experiment (``tone-empathetic`` of devstack's ``experiments.yaml``): simulated
   shoppers on the web channel each get a reply, respond assigns each a variant and
   records the exposure, the shoppers of one variant buy more often (seeded), their
   purchases go through ingest, and ``rapport-experiments report`` prints profile's
   report;
7. everything stopped again, nothing left running (``KEEP=1`` leaves it up).

    make demo [KEEP=1] [DEMO_EVENTS=20000]
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from openai import AsyncOpenAI
from tqdm import tqdm

from rapport.devstack import models, processes, stack
from rapport.devstack.servers import ServerStartError

BATCH = 250
VIEWER = "demo-viewer"
STAR_WARS = [
    "50",
    "172",
    "181",
]  # MovieLens ids: Star Wars, The Empire Strikes Back, Return of the Jedi
QUESTION = "Hi there, what is good to watch?"
REFUND_POLICY = "refund-policy"
KNOWLEDGE = [
    {
        "doc_id": REFUND_POLICY,
        "title": "Refund policy",
        "text": "You can return a purchase within 30 days for a full refund. Refunds go back "
        "to the card you paid with within 5 working days.",
        "url": "https://example.com/help/refunds",
    },
    {
        "doc_id": "shipping",
        "title": "Shipping",
        "text": "Orders ship within two working days. Delivery in the EU takes three to five "
        "days; we send a tracking link by email.",
    },
    {
        "doc_id": "gift-cards",
        "title": "Gift cards",
        "text": "Gift cards never expire and can be used online or in any cinema. They cannot "
        "be exchanged for cash.",
    },
]
# The experiment: shoppers who each get one reply, then buy (or not) at the simulated
# rate of their variant; a few complain whatever their variant (the guardrail).
EXPERIMENT = "tone-empathetic"
SHOPPERS = 300  # the report compares arms of 100 users or more
SHOPPER_CHANNEL = "web"  # the shipped experiments enrol this channel only
SHOPPER_QUESTION = "what is good to watch tonight?"
PURCHASE_RATE = {"control": 0.2, "empathetic": 0.5}
COMPLAINT_RATE = 0.05
SHOPPING_SEED = 30
# A few at a time, each with a generous budget: this is a demo of the experiment, not
# of the admission limit or the deadline.
IN_FLIGHT = 4
SHOPPER_DEADLINE_MS = "1000"
REFUND_POLICY_V2 = {
    **KNOWLEDGE[0],
    "text": "You can return a purchase within 60 days for a full refund. Refunds go back to "
    "the card you paid with within 2 working days.",
}


@dataclass(frozen=True)
class Rating:
    user: str
    item: str
    timestamp: int


def movielens() -> tuple[list[Rating], dict[str, str]]:
    """The ratings, oldest first, and each movie's first genre (read from the recbole wheel)."""
    folder = resources.files("recbole") / "dataset_example" / "ml-100k"
    genres: dict[str, str] = {}
    lines = (folder / "ml-100k.item").read_text(encoding="latin-1").splitlines()
    for line in lines[1:]:
        item, _title, _year, genre = line.split("\t")
        genres[item] = genre.split(" ")[0]
    ratings = []
    for line in (folder / "ml-100k.inter").read_text().splitlines()[1:]:
        user, item, _rating, timestamp = line.split("\t")
        ratings.append(Rating(user, item, int(float(timestamp))))
    ratings.sort(key=lambda r: r.timestamp)
    return ratings, genres


def events(ratings: list[Rating], genres: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Item views in the same order and spacing, moved into the last week (affinities decay)."""
    first, last = ratings[0].timestamp, ratings[-1].timestamp
    end = datetime.now(UTC)
    span = timedelta(days=7)
    for rating in ratings:
        at = end - span * ((last - rating.timestamp) / max(1, last - first))
        yield {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ml100k/{rating.user}/{rating.item}")),
            "type": "item_view",
            "user_id": f"ml-{rating.user}",
            "item_id": rating.item,
            "category": genres.get(rating.item, "unknown"),
            "occurred_at": at.isoformat(),
            "source": "movielens-100k",
        }


class Demo:
    def __init__(self, data: dict[str, Any], session: aiohttp.ClientSession) -> None:
        self.services = data["services"]
        self.key = data["api_key"]
        self.experiments: str | None = data.get("experiments")
        self.http = session
        self.headers = {"Authorization": f"Bearer {self.key}"}
        self.openai = AsyncOpenAI(
            api_key=self.key, base_url=f"{self.services['respond']}/v1", max_retries=0
        )

    async def post_events(self, batch: list[dict[str, Any]]) -> int:
        url = f"{self.services['ingest']}/v1/events"
        for attempt in range(20):  # a 503 or 429 says when to come back
            async with self.http.post(url, json={"events": batch}, headers=self.headers) as r:
                if r.status == 202:
                    return len(batch)
                wait = float(r.headers.get("Retry-After", "0.2"))
            await asyncio.sleep(min(wait, 1.0) * (attempt + 1) / 4)
        raise RuntimeError(f"ingest refused a batch {attempt + 1} times")

    async def replay(self, count: int) -> None:
        ratings, genres = movielens()
        chosen = ratings[:count]
        print(f"\nreplaying {len(chosen):,} MovieLens-100K ratings through ingest as item views")
        started = time.perf_counter()
        stream = events(chosen, genres)
        with tqdm(total=len(chosen), unit="ev", file=sys.stdout) as bar:
            while batch := [e for _, e in zip(range(BATCH), stream, strict=False)]:
                bar.update(await self.post_events(batch))
        elapsed = time.perf_counter() - started
        print(f"accepted {len(chosen):,} events in {elapsed:.1f}s ({len(chosen) / elapsed:,.0f}/s)")
        last_user = f"ml-{chosen[-1].user}"
        await self.until(lambda p: p["known"], last_user, "the stream to reach the profiles")

    async def publish(self, *documents: dict[str, Any]) -> None:
        """Company knowledge through ingest; returns once the index holds every version."""
        url = f"{self.services['ingest']}/v1/knowledge"
        async with self.http.post(
            url, json={"documents": list(documents)}, headers=self.headers
        ) as response:
            if response.status != 202:
                raise RuntimeError(f"ingest refused the documents: {await response.text()}")
        for document in documents:
            await self.until_indexed(document)

    async def until_indexed(self, document: dict[str, Any], timeout_s: float = 60) -> None:
        url = f"{self.services['knowledge']}/v1/knowledge/{document['doc_id']}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            async with self.http.get(url, headers=self.headers) as response:
                if response.status == 200:
                    body = await response.json()
                    if " ".join(c["text"] for c in body["chunks"]) == document["text"]:
                        return
            await asyncio.sleep(0.02)
        raise RuntimeError(f"{document['doc_id']} was not indexed within {timeout_s:.0f}s")

    async def models_ready(self, timeout_s: float = 120) -> None:
        """Recommend says `ready` once Triton has every model loaded and answering."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            async with self.http.get(f"{self.services['recommend']}/readyz") as response:
                if (await response.json()).get("status") == "ready":
                    return
            await asyncio.sleep(0.5)
        raise RuntimeError("recommend did not report its models ready")

    async def profile(self, user: str) -> dict[str, Any]:
        url = f"{self.services['profile']}/v1/profiles/{user}"
        async with self.http.get(url, headers=self.headers) as response:
            response.raise_for_status()
            body: dict[str, Any] = await response.json()
            return body

    async def until(self, done: Any, user: str, what: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not done(await self.profile(user)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)

    async def report(self, name: str) -> dict[str, Any]:
        url = f"{self.services['profile']}/v1/experiments/{name}"
        async with self.http.get(url, headers=self.headers) as response:
            response.raise_for_status()
            body: dict[str, Any] = await response.json()
            return body

    async def until_counted(
        self,
        name: str,
        counted: Callable[[dict[str, Any]], dict[str, int]],
        expected: dict[str, int],
        what: str,
        timeout_s: float = 30,
    ) -> None:
        """Poll the report until ``counted(report)`` (per variant) is ``expected``."""
        deadline = time.monotonic() + timeout_s
        while (seen := counted(await self.report(name))) != expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}: {seen}, expected {expected}")
            await asyncio.sleep(0.2)

    async def shop(self, shopper: str) -> dict[str, Any] | None:
        """One reply on the web channel; the shopper's assignment in ``EXPERIMENT``."""
        body = {
            "user_id": shopper,
            "session_id": "demo-shop",
            "channel": SHOPPER_CHANNEL,
            "message": SHOPPER_QUESTION,
        }
        url = f"{self.services['respond']}/v1/respond"
        headers = self.headers | {"X-Rapport-Deadline-Ms": SHOPPER_DEADLINE_MS}
        async with self.http.post(url, json=body, headers=headers) as response:
            response.raise_for_status()
            reply = await response.json()
        assignments = reply["personalization"].get("experiments", [])
        return next((a for a in assignments if a["experiment"] == EXPERIMENT), None)

    async def send(self, *fresh: dict[str, Any]) -> None:
        now = datetime.now(UTC).isoformat()
        batch = [{"user_id": VIEWER, "occurred_at": now, **e} for e in fresh]
        await self.post_events(batch)

    async def turn(self, number: int, message: str, history: list[dict[str, str]]) -> str:
        before = await self.profile(VIEWER)
        history.append({"role": "user", "content": message})
        completion = await self.openai.chat.completions.create(
            model="rapport",
            messages=history,  # type: ignore[arg-type]
            user=VIEWER,
            extra_headers={"X-Rapport-Session-Id": "demo-session", "X-Rapport-Deadline-Ms": "250"},
        )
        reply = completion.choices[0].message.content or ""
        history.append({"role": "assistant", "content": reply})
        rapport = (completion.model_extra or {}).get("rapport", {})
        show_turn(number, message, reply, rapport, before)
        return reply


def show_turn(
    number: int, message: str, reply: str, rapport: dict[str, Any], profile: dict[str, Any]
) -> None:
    personal = rapport.get("personalization", {})
    print(f"\n── turn {number} " + "─" * 60)
    print(f"user : {message}")
    print("bot  : " + textwrap.fill(reply, 96, subsequent_indent="       "))
    top = sorted(profile.get("affinities", {}).items(), key=lambda kv: -kv[1])[:3]
    recent = (profile.get("recent_items") or [])[:5]
    print(
        f"profile  : version {profile.get('version')}, recent {recent}, "
        f"interests {[name for name, _ in top]}, preferences {profile.get('preferences')}"
    )
    print(
        f"reading  : intent={personal.get('intent')} sentiment={personal.get('sentiment')} "
        f"tone={personal.get('tone')} segment={personal.get('segment')}"
    )
    for item in rapport.get("recommendations", [])[:5]:
        print(f"  - {item['title']:<42} {item['reason']}")
    for passage in rapport.get("knowledge", [])[:2]:
        print(f"  ~ {passage['title']:<30} score {passage['score']:.2f}: {passage['snippet'][:50]}")
    memory = rapport.get("memory", {})
    facts = [f"{f['type']}={f['value']}" for f in memory.get("facts", [])]
    if facts:
        print(f"memory   : facts {facts}")
    for past in memory.get("recalled", [])[:2]:
        print(
            f"  > said {past['occurred_at'][:19]} (score {past['score']:.2f}): {past['text'][:60]}"
        )
    print(f"degraded : {personal.get('degraded') or 'none'}")
    print(f"trace id : {rapport.get('trace_id')}")


async def conversation(demo: Demo) -> list[str]:
    history: list[dict[str, str]] = []
    replies = [await demo.turn(1, QUESTION, history)]
    print("\n[the user watches the original Star Wars trilogy]")
    await demo.send(
        *({"type": "item_view", "item_id": item, "category": "Sci-Fi"} for item in STAR_WARS)
    )
    await demo.until(lambda p: len(p["recent_items"]) >= len(STAR_WARS), VIEWER, "the views")
    replies.append(await demo.turn(2, QUESTION, history))
    print('\n[the user states a preference: {"tone": "concise"}]')
    await demo.send({"type": "preference", "attributes": {"tone": "concise"}})
    await demo.until(lambda p: p["preferences"].get("tone") == "concise", VIEWER, "the preference")
    replies.append(await demo.turn(3, "ok, and what else would you suggest?", history))
    replies.append(
        await demo.turn(4, "ugh my card got declined at the cinema and i'm really annoyed", history)
    )
    replies.append(await demo.turn(5, "what is your refund policy?", history))
    print("\n[the company updates its refund policy: 60 days, refunds in 2 working days]")
    started = time.perf_counter()
    await demo.publish(REFUND_POLICY_V2)
    print(
        f"[indexed and searchable {1000 * (time.perf_counter() - started):.0f} ms after the POST]"
    )
    replies.append(await demo.turn(6, "and what is the refund policy now?", history))
    said = time.perf_counter()
    replies.append(await demo.turn(7, "by the way, I'm vegetarian", history))
    await demo.until(
        lambda p: any(f["value"] == "vegetarian" for f in p["facts"]), VIEWER, "the fact"
    )
    print(f"[the fact is in the profile {1000 * (time.perf_counter() - said):.0f} ms after turn 7]")
    replies.append(await demo.turn(8, "can you suggest a meal for dinner tonight?", history))
    return replies


def per_variant(report: dict[str, Any], field: str) -> dict[str, int]:
    """A primary-KPI figure of each variant with any users (``users``, ``conversions``)."""
    primary = next(k for k in report["kpis"] if k["role"] == "primary")
    return {v["variant"]: v[field] for v in primary["variants"] if v["users"]}


def tally(users: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for variant in users.values():
        counts[variant] = counts.get(variant, 0) + 1
    return counts


async def experiment(demo: Demo) -> bool:
    """Shoppers meet ``EXPERIMENT``; profile's report, as ``rapport-experiments`` prints it."""
    if demo.experiments is None:
        print("\n[no experiments run in this mesh (RAPPORT_DEV_EXPERIMENTS=off)]")
        return True
    print(f"\n── an experiment: {EXPERIMENT} " + "─" * 45)
    started = time.perf_counter()
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(shopper: str) -> tuple[str, dict[str, Any] | None]:
        async with limit:
            return shopper, await demo.shop(shopper)

    shoppers = [f"shopper-{n:03d}" for n in range(SHOPPERS)]
    answers = await asyncio.gather(*(one(s) for s in shoppers))
    if all(a is None for _, a in answers):
        print(f"[{EXPERIMENT} is not in {demo.experiments}: nothing to show]")
        return True
    exposed = {s: a["variant"] for s, a in answers if a is not None and a["exposed"]}
    print(
        f"{SHOPPERS} shoppers asked {SHOPPER_QUESTION!r} on the {SHOPPER_CHANNEL} channel; "
        f"respond exposed {len(exposed)} of them: {tally(exposed)}"
    )
    await demo.until_counted(
        EXPERIMENT, lambda r: per_variant(r, "users"), tally(exposed), "the exposures"
    )
    pick = random.Random(SHOPPING_SEED)  # noqa: S311 - a simulation, not secrets
    now = datetime.now(UTC).isoformat()
    outcomes: list[dict[str, Any]] = []
    bought: dict[str, str] = {}
    for shopper, variant in exposed.items():
        if pick.random() < PURCHASE_RATE.get(variant, PURCHASE_RATE["control"]):
            bought[shopper] = variant
            outcomes.append({"type": "purchase", "user_id": shopper, "item_id": STAR_WARS[0]})
        if pick.random() < COMPLAINT_RATE:
            outcomes.append({"type": "feedback", "user_id": shopper, "rating": 1})
    if outcomes:
        await demo.post_events([{"occurred_at": now, "source": "demo-shop", **e} for e in outcomes])
    rates = ", ".join(f"{v} {r:.0%}" for v, r in PURCHASE_RATE.items())
    print(
        f"[simulated: they buy at {rates}; {len(bought)} purchases and "
        f"{len(outcomes) - len(bought)} complaints sent through ingest]"
    )
    expected = {v: tally(bought).get(v, 0) for v in tally(exposed)}
    await demo.until_counted(
        EXPERIMENT, lambda r: per_variant(r, "conversions"), expected, "the purchases"
    )
    print(f"[counted by profile {time.perf_counter() - started:.1f} s after the first reply]")
    profile = demo.services["profile"]
    print(f"\n$ RAPPORT_API_KEY=<dev key> rapport-experiments report {EXPERIMENT} --url {profile}")
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rapport.profile.experiments_cli",
        "report",
        EXPERIMENT,
        "--url",
        profile,
        env={**os.environ, "RAPPORT_API_KEY": demo.key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    printed, _ = await cli.communicate()
    print(printed.decode(errors="replace").rstrip())
    return cli.returncode == 0


async def run(data: dict[str, Any], count: int) -> bool:
    async with aiohttp.ClientSession() as session:
        demo = Demo(data, session)
        await demo.replay(count)
        await demo.models_ready()
        print(f"\npublishing {len(KNOWLEDGE)} company documents through ingest")
        await demo.publish(*KNOWLEDGE)
        replies = await conversation(demo)
        try:
            reported = await experiment(demo)
        except (RuntimeError, aiohttp.ClientError) as exc:  # the conversation's checks still count
            print(f"demo: the experiment: {type(exc).__name__}: {exc}", file=sys.stderr)
            reported = False
    changed = len(set(replies)) == len(replies)
    print(f"\nevery reply differs from the one before: {changed}")
    cites_old, cites_new = "30 days" in replies[4], "60 days" in replies[5]
    print(f"the policy answer cited the policy, then its new version: {cites_old and cites_new}")
    remembers = "vegetarian" in replies[7]
    print(f"the reply after 'I'm vegetarian' used the fact: {remembers}")
    print(f"the experiment's report counted every exposure and purchase: {reported}")
    return changed and cites_old and cites_new and remembers and reported


def main() -> int:
    home = Path(os.environ.get("RAPPORT_HOME", ".rapport"))
    keep = os.environ.get("KEEP", "") not in ("", "0")
    count = int(os.environ.get("DEMO_EVENTS", "20000"))
    try:
        repository = models.ensure_repository()
        print(
            "starting the local mesh (Kafka, MongoDB wire, Redis, Milvus Lite, Triton, "
            "five services)..."
        )
        started = time.perf_counter()
        config = stack.StackConfig.from_env(home)
        config.model_repository = config.model_repository or repository
        data = stack.up(config)
    except (stack.StackError, ServerStartError, models.ModelBuildError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(f"up in {time.perf_counter() - started:.1f}s; described in {stack.stack_path(home)}")
    stack.print_endpoints(data)
    print(f"  {'experiments':<14} {data['experiments'] or 'none'}")
    ok = False
    try:
        ok = asyncio.run(run(data, count))
    except Exception as exc:  # the mesh still has to come down; say what broke
        print(f"demo: {type(exc).__name__}: {exc}", file=sys.stderr)
    if keep:
        print(f"\nKEEP=1: the mesh stays up. Dev API key: {data['api_key']}")
        print("Stop it with: make down")
        return 0 if ok else 1
    handles = stack.handles_of(data)
    stopped = stack.down(home)
    leftovers = [h.name for h in handles if processes.is_running(h)]
    print(f"\nstopped {len(stopped)} processes; still running: {leftovers or 'none'}")
    return 0 if ok and not leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
