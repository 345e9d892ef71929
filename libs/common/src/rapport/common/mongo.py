"""MongoDB through PyMongo's native asyncio client (motor is deprecated upstream)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from rapport.common.settings import MongoSettings

Document = dict[str, Any]


def create_mongo_client(settings: MongoSettings, *, app_name: str) -> AsyncMongoClient[Document]:
    """A client whose every operation is bounded by ``timeoutMS``.

    The client connects lazily; call :func:`ping_mongo` to check it answers.
    """
    return AsyncMongoClient(
        settings.mongo_url.get_secret_value(),
        appname=app_name,
        timeoutMS=settings.mongo_timeout_ms,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
        tz_aware=True,
        uuidRepresentation="standard",
    )


async def ping_mongo(client: AsyncMongoClient[Document]) -> None:
    await client.admin.command("ping")
