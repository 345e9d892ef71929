"""Milvus through pymilvus, shared by the services that keep vectors (knowledge, profile).

The same client code talks to Milvus Lite locally and to a Milvus cluster in
production; only the URI differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings
from pymilvus import AsyncMilvusClient
from pymilvus.exceptions import MilvusException

log = logging.getLogger(__name__)

Consistency = Literal["Strong", "Session", "Bounded", "Eventually"]


class MilvusSettings(BaseSettings):
    """A service's Milvus endpoint; the service's own prefix applies (``RAPPORT_<SVC>_``)."""

    milvus_token: SecretStr | None = Field(None, description="`user:password` or an API key.")
    milvus_database: str = Field("default", description="Milvus database.")
    search_consistency: Consistency = Field(
        "Strong",
        description="Milvus consistency of a search. Strong: a row written by any replica "
        "is found by the next search; weaker levels trade that for latency.",
    )


# Opening (create, index, load, one search) is bounded: pymilvus calls carry no deadline
# by default, and one request Milvus Lite never answers would stall an opening for good;
# the callers retry an opening that fails.
OPEN_TIMEOUT_S = 30.0


def connect(uri: str, settings: MilvusSettings) -> AsyncMilvusClient:
    """A client; it connects on its first call."""
    quiet_pymilvus()
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else ""
    return AsyncMilvusClient(uri=uri, token=token, db_name=settings.milvus_database)


def quiet_pymilvus() -> None:
    """pymilvus writes a traceback to its own stderr handler for every failed call: while
    Milvus is away, thousands a minute, outside the JSON logs and on the event loop's time.
    The callers log each failure once, as a JSON warning; pymilvus keeps only its critical
    messages, through the service's own handlers."""
    logger = logging.getLogger("pymilvus")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.CRITICAL)


class Reloader:
    """Loads collections again when Milvus answers that one is released: a restarted Milvus
    Lite keeps its rows but not what was loaded, and nothing else would load it. One load
    at a time, in the background: the failing call still fails (its caller degrades or
    retries), and the next ones find the collection loaded."""

    def __init__(self, client: AsyncMilvusClient, *collections: str) -> None:
        self.client = client
        self.collections = collections
        self.loading: asyncio.Task[None] | None = None

    def failed(self, exc: BaseException) -> None:
        if "released" not in str(exc) and "not loaded" not in str(exc):
            return
        if self.loading is None or self.loading.done():
            self.loading = asyncio.create_task(self._load())

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """Around a call: a released collection is loaded again for the next one."""
        try:
            yield
        except MilvusException as exc:
            self.failed(exc)
            raise

    async def _load(self) -> None:
        try:
            for collection in self.collections:
                await self.client.load_collection(collection)
            log.info("milvus collections loaded again", extra={"collections": self.collections})
        except Exception as exc:  # still away: the next failure tries again
            log.warning("milvus collection not loaded", extra={"error": type(exc).__name__})


def literal(value: str) -> str:
    """A Milvus string literal. Identifiers hold no control characters, so only the quote
    and the backslash need escaping (Milvus Lite does not take filter templates)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def create_flat_collection(client: AsyncMilvusClient, name: str, schema: Any) -> None:
    """A collection with an exact (FLAT) inner-product index on its ``vector`` field."""
    index = AsyncMilvusClient.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="IP")
    await client.create_collection(name, schema=schema)
    # Milvus Lite builds the index but does not implement the call pymilvus then makes
    # to wait for it (pymilvus logs that as an error with a traceback): check instead.
    pymilvus_log = logging.getLogger("pymilvus.decorators")
    level = pymilvus_log.level
    pymilvus_log.setLevel(logging.CRITICAL)
    try:
        await client.create_index(name, index)
    except MilvusException:
        raise
    except Exception as exc:
        described = await client.describe_index(name, "vector")
        if not described or described.get("index_type") != "FLAT":
            raise RuntimeError(f"no index on {name}: {exc}") from exc
    finally:
        pymilvus_log.setLevel(level)
    log.info("created milvus collection", extra={"collection": name})
