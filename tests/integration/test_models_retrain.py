"""`rapport-models retrain` against real Kafka and MongoDB.

One tenant of its own: 24 users view MovieLens items over twelve days (each user's
views spread over the days, so the time holdout has users on both sides of its cutoff),
a new item arrives as a catalogue record, one user is erased through profile's own store,
one opted out in their profile and one with a consent event. Those three are absent from
what retraining reads. Then two runs of the CLI on a private copy of the exported
repository: one whose gate cannot pass (nothing is written) and one whose gate cannot
fail (a new item_scorer and reply version, and the posted item in catalog.json). The
gate's own decisions are unit-tested; here the margins only pick the branch.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rapport.common.catalog import CATALOG_SCHEMA_HEADER, CatalogItem, upsert_record
from rapport.common.identifiers import record_key
from rapport.common.kafka import CATALOG_TOPIC, EVENTS_TOPIC, default_topics, ensure_topics
from rapport.common.mongo import create_mongo_client
from rapport.common.profiles import profile_id
from rapport.common.settings import KafkaSettings, MongoSettings
from rapport.devstack.events import event, produce, publish
from rapport.devstack.models import private_copy
from rapport.devstack.servers import console_script
from rapport.models import interactions
from rapport.profile.adapters.store import ProfileStore, to_document
from rapport.profile.domain.state import Profile, Stamped

pytestmark = pytest.mark.integration

USERS = [f"u{n}" for n in range(24)]
EXCLUDED = ("erased", "opted-out", "said-no")
DAYS = 12
# Two tastes, so the item-item model has something to learn (MovieLens item ids).
POOLS = ([str(i) for i in range(1, 41)], [str(i) for i in range(200, 240)])


@dataclass(frozen=True)
class Stream:
    tenant: str
    database: str
    new_item: str


@pytest.fixture(scope="module")
async def stream(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> Stream:
    suffix = uuid.uuid4().hex[:8]
    found = Stream(
        tenant=f"retrain-{suffix}", database=f"retrain_{suffix}", new_item=f"new-{suffix}"
    )
    await ensure_topics(kafka_settings, default_topics())
    rng = random.Random(31)
    start = datetime.now(UTC) - timedelta(days=DAYS)
    events: list[dict[str, Any]] = []
    for n, user in enumerate([*USERS, *EXCLUDED]):
        pool = POOLS[n % 2]
        for day in range(DAYS):
            at = start + timedelta(days=day, minutes=n)
            item = found.new_item if day == 3 and n % 3 == 0 else rng.choice(pool)
            events.append(event(user, "item_view", at, tenant=found.tenant, item_id=item))
    opted_out = {"personalization": False}
    events.append(event("said-no", "consent", start, tenant=found.tenant, attributes=opted_out))
    await publish(kafka_settings, EVENTS_TOPIC, *events)
    posted = CatalogItem(item_id=found.new_item, title="A New Film", categories=["Drama"])
    value = upsert_record(posted, tenant=found.tenant, published_at=datetime.now(UTC))
    key = record_key(found.tenant, found.new_item)
    await produce(kafka_settings, CATALOG_TOPIC, [(key, value, [CATALOG_SCHEMA_HEADER])])

    client = create_mongo_client(mongo_settings, app_name="rapport-tests")
    try:
        db = client[found.database]
        store = ProfileStore(db)  # profile's own writes: the marker and the consent field
        await store.erase(profile_id(found.tenant, "erased"), datetime.now(UTC))
        opted = Profile(
            tenant=found.tenant,
            user_id="opted-out",
            consent=Stamped(value=False, at=datetime.now(UTC)),
        )
        await store.profiles.insert_one(to_document(opted))
    finally:
        await client.close()
    return found


@pytest.fixture
def repository(model_repository: Path, tmp_path: Path) -> Path:
    return private_copy(tmp_path, model_repository)


def retrain(
    stream: Stream,
    repository: Path,
    kafka: KafkaSettings,
    mongo: MongoSettings,
    report: Path,
    *margins: str,
) -> dict[str, Any]:
    env = {**os.environ, "RAPPORT_MONGO_DATABASE": stream.database}
    finished = subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [
            console_script("rapport-models"),
            "--quiet",
            "retrain",
            "--tenant",
            stream.tenant,
            "--repository",
            str(repository),
            "--bootstrap",
            kafka.kafka_bootstrap_servers,
            "--mongo",
            mongo.mongo_url.get_secret_value(),
            "--report",
            str(report),
            "--metrics-file",
            str(report.with_suffix(".prom")),
            *margins,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert f"retrain item_scorer tenant={stream.tenant}" in finished.stderr  # the log line
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def tree(repository: Path) -> list[str]:
    return sorted(str(p.relative_to(repository)) for p in repository.rglob("*"))


async def test_erased_and_opted_out_users_are_not_read(
    stream: Stream, kafka_settings: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    mongo = MongoSettings(
        mongo_url=mongo_settings.mongo_url.get_secret_value(), mongo_database=stream.database
    )
    found = await interactions.load(kafka_settings, mongo, stream.tenant)
    assert found.users() == set(USERS)
    assert len(found.rows) == len(USERS) * DAYS
    assert found.counts["dropped_erased"] == DAYS
    assert found.counts["dropped_opted_out"] == 2 * DAYS
    posted = await interactions.read_catalog(kafka_settings, stream.tenant)
    assert posted.items[stream.new_item].title == "A New Film"


def test_a_refused_candidate_changes_nothing(
    stream: Stream,
    repository: Path,
    kafka_settings: KafkaSettings,
    mongo_settings: MongoSettings,
    tmp_path: Path,
) -> None:
    before = tree(repository)
    catalog = (repository.parent / "catalog.json").read_bytes()
    report = retrain(
        stream,
        repository,
        kafka_settings,
        mongo_settings,
        tmp_path / "kept.json",
        "--ndcg-margin",
        "1",  # NDCG@10 can never rise by 1
    )
    assert report["outcome"] == "kept"
    assert report["reason"].startswith("NDCG@10")
    assert report["protocol"]["interactions"]["users_kept"] == len(USERS)
    assert report["protocol"]["evaluated_users"] > 0
    for side in ("candidate", "served"):
        assert 0 <= report[side]["metrics"]["ndcg@10"] <= 1
        assert set(report[side]["audit"]["by_activity"]) <= {"light", "medium", "heavy"}
    assert tree(repository) == before
    assert (repository.parent / "catalog.json").read_bytes() == catalog
    assert 'rapport_models_retrain_total{model="item_scorer",outcome="kept"} 1.0' in (
        (tmp_path / "kept.prom").read_text()
    )


def test_a_passing_candidate_is_exported_with_the_posted_item(
    stream: Stream,
    repository: Path,
    kafka_settings: KafkaSettings,
    mongo_settings: MongoSettings,
    tmp_path: Path,
) -> None:
    served = max(int(p.name) for p in (repository / "item_scorer").iterdir() if p.name.isdigit())
    report = retrain(
        stream,
        repository,
        kafka_settings,
        mongo_settings,
        tmp_path / "exported.json",
        "--ndcg-margin=-1",  # any candidate passes: the export is under test
        "--gap-margin=1",
        "--coverage-margin=1",
    )
    assert report["outcome"] == "exported", report["reason"]
    version = report["exported"]["item_scorer"]
    assert version == served + 1
    assert (repository / "item_scorer" / str(version) / "item_scorer.npz").is_file()
    reply = repository / "reply" / str(report["exported"]["reply"])
    assert json.loads((reply / "components.json").read_text())["item_scorer"] == str(version)
    metadata = json.loads((repository / "item_scorer" / str(version) / "metadata.json").read_text())
    assert metadata["tenant"] == stream.tenant
    catalog = json.loads((repository.parent / "catalog.json").read_text())
    posted = [c for c in catalog if c["item_id"] == stream.new_item]
    assert posted == [{"item_id": stream.new_item, "title": "A New Film", "categories": ["Drama"]}]
