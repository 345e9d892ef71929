"""Experiment attribution in real ``rapport-profile`` processes: exactly once through
kill -9 and a replay from offset 0, and an erased user leaves the counts for good.

The oracle is computed from the input: per variant, the users whose exposure profile
accepts (the hash's variant, inside the experiment's dates) and those with a purchase
within the attribution window after it. Exposures with the wrong variant, purchases
before the exposure or past the window, and duplicate exposures are in the stream too.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rapport.common.experiments import ExperimentReport, load_experiments
from rapport.common.kafka import TopicSpec, ensure_topics
from rapport.common.settings import KafkaSettings
from rapport.devstack import processes, servers
from rapport.devstack.events import event, produce, record
from rapport.devstack.servers import RunningServer
from rapport.devstack.stack import service_spec
from rapport.devstack.waiting import eventually
from tests.integration import reply_path
from tests.integration.test_profile_faults import (
    applied_at_least,
    committed_at_least,
    committed_total,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "rpk_test_acme-experiments-0123456789"
TENANT = "acme"
USERS = 1_500
PARTITIONS = 4
KILLS = 2
WINDOW_HOURS = 24
TRUE_RATES = {"control": 0.10, "treatment": 0.20}
EXPERIMENT = "checkout-copy"


def experiments_yaml(now: datetime) -> str:
    start = (now - timedelta(days=3)).isoformat()
    stop = (now + timedelta(days=30)).isoformat()
    return f"""
version: 1
experiments:
  - name: {EXPERIMENT}
    description: the empathetic tone against the chosen one
    start: "{start}"
    stop: "{stop}"
    primary_kpi: purchase
    guardrail_kpis: [negative_feedback]
    attribution_window_hours: {WINDOW_HOURS}
    variants:
      - name: control
        weight: 1
      - name: treatment
        weight: 1
        changes: {{tone: empathetic}}
"""


def stream_for(path: Path, now: datetime, rng: random.Random) -> tuple[list[Any], dict[str, Any]]:
    """The records, and the oracle: per variant, users and converted users; per user, the
    variant and whether they converted."""
    experiment = load_experiments(path).get(EXPERIMENT)
    assert experiment is not None
    records: list[Any] = []
    users: Counter[str] = Counter()
    converted: Counter[str] = Counter()
    per_user: dict[str, tuple[str, bool]] = {}
    for n in range(USERS):
        user = f"u-{n}"
        variant = experiment.assign(TENANT, user).name
        other = "treatment" if variant == "control" else "control"
        exposed_at = now - timedelta(hours=rng.uniform(30, 60))

        def exposure(name: str, at: datetime, user: str = user) -> dict[str, Any]:
            attributes = {"experiment": EXPERIMENT, "variant": name}
            return event(user, "exposure", at, tenant=TENANT, attributes=attributes)

        def purchase(at: datetime, user: str = user, n: int = n) -> dict[str, Any]:
            return event(user, "purchase", at, tenant=TENANT, item_id=f"m-{n % 50}", value=9.5)

        if rng.random() < 0.05:  # a client that claims another variant: refused
            records.append(record(exposure(other, exposed_at)))
            continue
        # Before the exposure, so not caused by it: on time, or arriving late.
        early = record(purchase(exposed_at - timedelta(hours=1)))
        late = rng.random() < 0.5
        if rng.random() < 0.3 and not late:
            records.append(early)
        records.append(record(exposure(variant, exposed_at)))
        if rng.random() < 0.3 and late:
            records.append(early)
        if rng.random() < 0.2:  # exposed again later: the first exposure counts
            records.append(record(exposure(variant, exposed_at + timedelta(minutes=5))))
        buys = rng.random() < TRUE_RATES[variant]
        if buys:
            delay = timedelta(hours=rng.uniform(0.01, WINDOW_HOURS - 1))
            records.append(record(purchase(exposed_at + delay)))
            records.append(record(purchase(exposed_at + delay + timedelta(minutes=1))))
        elif rng.random() < 0.1:  # past the window: not a conversion
            records.append(record(purchase(exposed_at + timedelta(hours=WINDOW_HOURS + 2))))
        users[variant] += 1
        converted[variant] += buys
        per_user[user] = (variant, buys)
    return records, {"users": users, "converted": converted, "per_user": per_user}


async def report(http: aiohttp.ClientSession, base_url: str) -> ExperimentReport:
    async with http.get(
        f"{base_url}/v1/experiments/{EXPERIMENT}", headers={"Authorization": f"Bearer {KEY}"}
    ) as response:
        assert response.status == 200, await response.text()
        return ExperimentReport.model_validate_json(await response.read())


def counts(found: ExperimentReport) -> dict[str, tuple[int, int]]:
    primary = found.kpis[0]
    return {v.variant: (v.users, v.conversions) for v in primary.variants}


def expected_counts(users: Counter[str], converted: Counter[str]) -> dict[str, tuple[int, int]]:
    return {v: (users[v], converted[v]) for v in ("control", "treatment")}


def test_attribution_is_exactly_once_through_kill_9_and_a_replay_and_erasure_holds(
    kafka_server: RunningServer,
    mongo_server: RunningServer,
    redis_server: RunningServer,
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    path = tmp_path / "experiments.yaml"
    path.write_text(experiments_yaml(now))
    rng = random.Random(30)
    records, oracle = stream_for(path, now, rng)
    suffix = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(kafka_bootstrap_servers=kafka_server.url())
    topic = f"t.exp.{suffix}"
    asyncio.run(
        ensure_topics(
            kafka,
            [
                TopicSpec(topic, PARTITIONS),
                TopicSpec(f"t.exp-ch.{suffix}", 1),
                TopicSpec(f"t.exp-dlq.{suffix}", 1),
            ],
        )
    )

    def start(group: str) -> RunningServer:
        spec = service_spec(
            "profile",
            processes.free_port(),
            {
                "RAPPORT_PROFILE_LOG_LEVEL": "WARNING",
                "RAPPORT_KAFKA_BOOTSTRAP_SERVERS": kafka.kafka_bootstrap_servers,
                "RAPPORT_MONGO_URL": mongo_server.url(),
                "RAPPORT_MONGO_DATABASE": f"exp_{suffix}",
                "RAPPORT_REDIS_URL": redis_server.url(),
                "RAPPORT_PROFILE_GROUP_ID": group,
                "RAPPORT_PROFILE_EVENTS_TOPIC": topic,
                "RAPPORT_PROFILE_CHANGES_TOPIC": f"t.exp-ch.{suffix}",
                "RAPPORT_PROFILE_DLQ_TOPIC": f"t.exp-dlq.{suffix}",
                "RAPPORT_PROFILE_EXPERIMENTS_FILE": str(path),
                "RAPPORT_PROFILE_MAX_BATCH": "200",
                "RAPPORT_PROFILE_SESSION_TIMEOUT_MS": "2000",
                "RAPPORT_PROFILE_HEARTBEAT_INTERVAL_MS": "500",
                "RAPPORT_API_KEYS": reply_path.keys_json(
                    (KEY, "exp", TENANT, ["experiments:read", "profiles:write"])
                ),
                "OTEL_SDK_DISABLED": "true",
            },
        )
        return servers.start(spec, tmp_path)

    group = f"g.exp.{suffix}"
    chunk = len(records) // (KILLS + 1)
    landed_mid_work = 0
    for k in range(KILLS):
        asyncio.run(produce(kafka, topic, records[k * chunk : (k + 1) * chunk]))
        consumer = start(group)
        try:
            asyncio.run(applied_at_least(consumer))
            asyncio.run(asyncio.sleep(rng.uniform(0.02, 0.3)))
            os.kill(consumer.handle.pid, signal.SIGKILL)
        finally:
            processes.stop(consumer.handle)
        landed_mid_work += (
            asyncio.run(committed_total(kafka, topic, group, PARTITIONS)) < (k + 1) * chunk
        )
    asyncio.run(produce(kafka, topic, records[KILLS * chunk :]))
    expected = expected_counts(oracle["users"], oracle["converted"])

    async def settled(server: RunningServer, want: dict[str, tuple[int, int]]) -> None:
        async with aiohttp.ClientSession() as http:

            async def matches() -> bool:
                return counts(await report(http, server.url())) == want

            await eventually(matches, timeout_s=180, interval_s=0.5)

    consumer = start(group)
    try:
        asyncio.run(settled(consumer, expected))
    finally:
        processes.stop(consumer.handle)
    assert landed_mid_work >= 1, "no kill landed while records were left to apply"

    # A replay from offset 0 (a new group) changes nothing. An erased converted user
    # leaves the counts, and the replay does not bring them back.
    victim = next(u for u, (v, buys) in oracle["per_user"].items() if buys)
    variant = oracle["per_user"][victim][0]
    users, conversions = expected[variant]
    after_erasure = expected | {variant: (users - 1, conversions - 1)}
    replay = start(f"g.exp-replay.{suffix}")
    try:

        async def erase_then_replay() -> None:
            async with aiohttp.ClientSession() as http:
                async with http.delete(
                    f"{replay.url()}/v1/profiles/{victim}",
                    headers={"Authorization": f"Bearer {KEY}"},
                ) as response:
                    assert response.status == 204
                assert counts(await report(http, replay.url())) == after_erasure
                await committed_at_least(
                    kafka,
                    topic,
                    f"g.exp-replay.{suffix}",
                    len(records),
                    partitions=PARTITIONS,
                    timeout_s=180,
                )
                final = await report(http, replay.url())
                assert counts(final) == after_erasure
                assert final.sample_ratio.mismatch is False
                treatment = final.kpis[0].variants[1]
                assert treatment.difference_interval is not None
                truth = TRUE_RATES["treatment"] - TRUE_RATES["control"]
                low, high = treatment.difference_interval
                assert low <= truth <= high

        asyncio.run(erase_then_replay())
    finally:
        processes.stop(replay.handle)
