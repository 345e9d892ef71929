"""Profiles in MongoDB, the source of truth.

One document per (tenant, user). Maps whose keys come from clients
(categories, preference names) are stored as lists of pairs, because MongoDB
field names may not contain ``.`` or start with ``$``. Writes are
compare-and-set on ``version``: two consumers that briefly own the same
partition during a rebalance cannot overwrite each other's updates; the loser
reloads and applies again (the watermark then skips what is already in).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from rapport.common.experiments import Kpi
from rapport.common.mongo import Document
from rapport.common.profiles import (
    CONSENT_VALUE_FIELD,
    ERASED_AT_FIELD,
    ERASURES_COLLECTION,
    PROFILES_COLLECTION,
    profile_id,
)
from rapport.profile.domain.analysis import VariantCounts
from rapport.profile.domain.state import ArmFeedback, Profile, Seen

PAIR_FIELDS = ("counters", "affinities", "preferences", "watermarks", "feedback", "facts")
# Fields stored before they left the model: ignored on read, gone at the next write.
RETIRED_FIELDS = frozenset({"cluster_id"})  # API 2.0.0: nothing ever set it
DUPLICATE_KEY = 11000
NEVER = 1e18  # an outcome that did not happen: later than any attribution window
# Rounds of compare-and-set a writer outside the stream (a forget, the re-redaction job)
# tries against the processor writing the same profile, before giving up.
COMPARE_AND_SET_ATTEMPTS = 5


def to_document(profile: Profile) -> Document:
    doc = profile.model_dump(mode="python")
    for field in PAIR_FIELDS:
        doc[field] = [{"k": key, "v": value} for key, value in doc[field].items()]
    doc["_id"] = profile_id(profile.tenant, profile.user_id)
    return doc


def from_document(doc: Document) -> Profile:
    data = {k: v for k, v in doc.items() if k != "_id" and k not in RETIRED_FIELDS}
    for field in PAIR_FIELDS:
        data[field] = {pair["k"]: pair["v"] for pair in data.get(field, [])}
    return Profile.model_validate(data)


def consenting(tenant: str) -> dict[str, Any]:
    """A tenant's profiles whose data may be used: not opted out (no consent yet is consent)."""
    return {"tenant": tenant, CONSENT_VALUE_FIELD: {"$ne": False}}


class ProfileStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.profiles = db[PROFILES_COLLECTION]
        self.erasures = db[ERASURES_COLLECTION]

    async def load(self, ids: Iterable[str]) -> dict[str, Profile]:
        wanted = list(ids)
        if not wanted:
            return {}
        cursor = self.profiles.find({"_id": {"$in": wanted}})
        return {doc["_id"]: from_document(doc) async for doc in cursor}

    async def erased_at(self, ids: Iterable[str]) -> dict[str, datetime]:
        """When each of these users was erased, if they were."""
        wanted = list(ids)
        if not wanted:
            return {}
        cursor = self.erasures.find({"_id": {"$in": wanted}})
        return {doc["_id"]: doc[ERASED_AT_FIELD] async for doc in cursor}

    async def recent_items(self, tenant: str) -> list[list[Seen]]:
        """Every consenting profile's recent items in a tenant (the input of trending)."""
        cursor = self.profiles.find(consenting(tenant), {"recent_items": 1})
        return [
            [Seen.model_validate(item) for item in doc.get("recent_items", [])]
            async for doc in cursor
        ]

    async def feedback(self, tenant: str) -> list[dict[str, ArmFeedback]]:
        """Every consenting profile's bandit feedback counts in a tenant."""
        cursor = self.profiles.find(consenting(tenant), {"feedback": 1})
        return [
            {pair["k"]: ArmFeedback.model_validate(pair["v"]) for pair in doc["feedback"]}
            async for doc in cursor
            if doc.get("feedback")
        ]

    async def experiment_counts(
        self, name: str, kpis: Sequence[Kpi], window_s: float, tenant: str | None
    ) -> dict[str, VariantCounts]:
        """Per variant, the consenting users exposed and those with each KPI within the
        window: one aggregation in the database (``tenant`` None: every tenant)."""
        field = f"experiments.{name}"
        match: dict[str, Any] = {
            f"{field}.variant": {"$exists": True},  # the path of the experiment's index
            CONSENT_VALUE_FIELD: {"$ne": False},
        }
        if tenant is not None:
            match["tenant"] = tenant
        within = {
            f"k{i}": {
                "$sum": {
                    "$cond": [
                        {"$lte": [{"$ifNull": [f"${field}.outcomes.{kpi}", NEVER]}, window_s]},
                        1,
                        0,
                    ]
                }
            }
            for i, kpi in enumerate(kpis)
        }
        pipeline: list[dict[str, Any]] = [
            {"$match": match},
            {"$group": {"_id": f"${field}.variant", "users": {"$sum": 1}, **within}},
        ]
        cursor = await self.profiles.aggregate(pipeline)
        return {
            str(row["_id"]): VariantCounts(
                users=int(row["users"]),
                conversions={kpi: int(row[f"k{i}"]) for i, kpi in enumerate(kpis)},
            )
            async for row in cursor
        }

    async def index_experiments(self, names: Iterable[str]) -> None:
        """A sparse index per experiment: its report reads only the enrolled profiles."""
        for name in names:
            await self.profiles.create_index(
                [(f"experiments.{name}.variant", 1)], name=f"experiment_{name}", sparse=True
            )

    async def erase(self, pid: str, at: datetime) -> None:
        """The marker first, so a batch in flight cannot bring the profile back after it."""
        marker = {"_id": pid, ERASED_AT_FIELD: at}
        await self.erasures.replace_one({"_id": pid}, marker, upsert=True)
        await self.profiles.delete_one({"_id": pid})

    async def undo_erased(self, saved: Iterable[str]) -> set[str]:
        """Delete again any just-saved profile erased while its batch was in flight."""
        erased = set(await self.erased_at(saved))
        if erased:
            await self.profiles.delete_many({"_id": {"$in": list(erased)}})
        return erased

    async def save(
        self, changed: dict[str, tuple[int, Profile]], *, existing: Iterable[str] = ()
    ) -> set[str]:
        """Write each profile if its stored version is still the one it was loaded at.

        ``changed`` maps an id to (loaded version, new profile); ``existing`` names the
        ones that were stored when loaded: those are only replaced, never inserted, so a
        profile erased meanwhile is not written back. Returns the ids that lost a race
        (changed or erased meanwhile) and must be reloaded and applied again.
        """
        if not changed:
            return set()
        stored = set(existing)
        ops = [
            ReplaceOne(
                {"_id": pid, "version": loaded}, to_document(profile), upsert=pid not in stored
            )
            for pid, (loaded, profile) in changed.items()
        ]
        ids = list(changed)
        lost: set[str] = set()
        try:
            result = await self.profiles.bulk_write(ops, ordered=False)
            matched = result.matched_count
        except BulkWriteError as exc:
            errors: list[dict[str, Any]] = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            # A version mismatch on an upsert shows up as a duplicate _id.
            lost = {ids[error["index"]] for error in errors}
            matched = int(exc.details.get("nMatched", 0))
        replaced = [pid for pid in ids if pid in stored]
        if matched < len(replaced):  # some replace found no such version: ask which
            lost |= await self._not_written(
                {pid: changed[pid][1] for pid in replaced if pid not in lost}
            )
        return lost

    async def _not_written(self, profiles: dict[str, Profile]) -> set[str]:
        """Those of ``profiles`` that are not what is stored. The version alone could be
        another writer's (a forget also adds one), so the last event applied must match."""
        cursor = self.profiles.find(
            {"_id": {"$in": list(profiles)}}, {"version": 1, "recent_event_ids": 1}
        )
        found = {doc["_id"]: doc async for doc in cursor}

        def written(pid: str, profile: Profile) -> bool:
            doc = found.get(pid)
            return (
                doc is not None
                and doc.get("version") == profile.version
                and doc.get("recent_event_ids", [])[-1:] == profile.recent_event_ids[-1:]
            )

        return {pid for pid, profile in profiles.items() if not written(pid, profile)}
