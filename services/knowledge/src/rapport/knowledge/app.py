"""App factory and process entry point."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from rapport.common.app import add_readiness_check, create_service_app, run_service
from rapport.common.kafka import create_consumer, create_producer, ping_kafka
from rapport.common.milvus import connect
from rapport.common.triton import channel_args
from rapport.knowledge.adapters.encoder import TritonEncoder
from rapport.knowledge.adapters.indexer import Chunking, Indexer
from rapport.knowledge.adapters.store import KnowledgeStore
from rapport.knowledge.metrics import KnowledgeMetrics
from rapport.knowledge.routes import router
from rapport.knowledge.service import KnowledgeService
from rapport.knowledge.settings import KnowledgeSettings

log = logging.getLogger(__name__)


async def wait_for_encoder(encoder: TritonEncoder, *, retry_s: float = 1.0) -> None:
    """Triton may still be loading: the index's dimension and encoder come from it."""
    while True:
        try:
            await encoder.describe()
            return
        except (InferenceServerException, OSError) as exc:
            log.info("encoder not answering yet", extra={"error": str(exc)[:200]})
            await asyncio.sleep(retry_s)


async def open_then_index(
    settings: KnowledgeSettings,
    service: KnowledgeService,
    indexer: Indexer | None,
    stop: asyncio.Event,
) -> None:
    """In the background, so the process serves /livez while Triton is still loading: wait
    for the encoder, open the collections, then run the indexer until ``stop``."""
    while True:
        await wait_for_encoder(service.encoder)
        try:
            await service.store.open(dimension=service.encoder.dimension)
            break
        except Exception as exc:  # the store may still be starting: try again
            log.warning("vector store not open yet", extra={"error": str(exc)[:200]})
            await asyncio.sleep(1.0)
    service.started = True
    log.info("knowledge index open", extra={"encoder": service.encoder.id})
    if indexer is None:
        return
    consumer = indexer.consumer
    consumer.subscribe([settings.topic], listener=indexer.rebalance_listener())
    await consumer.start()
    try:
        await indexer.run(max_records=settings.max_batch, stop=stop)
    finally:
        await consumer.stop()


def create_app(settings: KnowledgeSettings) -> FastAPI:
    metrics = KnowledgeMetrics(settings.service_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            milvus = connect(settings.milvus_uri, settings)
            stack.push_async_callback(milvus.close)
            triton = InferenceServerClient(settings.triton_grpc_url, channel_args=channel_args())
            stack.push_async_callback(triton.close)
            producer = create_producer(settings, client_id=settings.service_name)
            stack.push_async_callback(producer.stop)
            await producer.start()
            encoder = TritonEncoder(
                triton,
                model=settings.encoder_model,
                timeout_s=settings.triton_timeout_ms / 1000,
                metrics=metrics,
            )
            store = KnowledgeStore(
                milvus,
                prefix=settings.collection,
                metrics=metrics,
                consistency=settings.search_consistency,
            )
            service = KnowledgeService(
                store=store,
                encoder=encoder,
                snippet_chars=settings.snippet_chars,
                search_timeout_s=settings.search_timeout_ms / 1000,
            )
            app.state.service = service

            indexer = None
            if settings.consume:
                indexer = Indexer(
                    consumer=create_consumer(
                        settings, group_id=settings.group_id, client_id=settings.service_name
                    ),
                    producer=producer,
                    store=store,
                    encoder=encoder,
                    group_id=settings.group_id,
                    dlq_topic=settings.dlq_topic,
                    metrics=metrics,
                    chunking=Chunking(
                        settings.chunk_words, settings.chunk_overlap_words, settings.max_chunks
                    ),
                    embed_batch=settings.embed_batch,
                )

            async def ready() -> None:
                if not service.started:
                    raise RuntimeError("waiting for the encoder and the vector store")
                await store.ping()

            add_readiness_check(app, "index", ready)
            if indexer is not None:
                add_readiness_check(app, "kafka", partial(ping_kafka, indexer.consumer))
            stop = asyncio.Event()
            task = asyncio.create_task(open_then_index(settings, service, indexer, stop))

            async def finish() -> None:
                stop.set()  # the batch in hand finishes and commits
                if not service.started:
                    task.cancel()  # still waiting for Triton or the store: nothing in hand
                try:
                    await asyncio.wait_for(task, timeout=10)
                except TimeoutError:
                    log.warning("the indexer did not stop within 10 s")
                except asyncio.CancelledError:
                    pass
                except Exception:
                    log.exception("the knowledge index failed")

            stack.push_async_callback(finish)
            yield

    app = create_service_app(
        settings,
        title="Rapport knowledge",
        description="Company documents from the stream, embedded on Triton, searched per tenant.",
        lifespan=lifespan,
        metrics=metrics,
    )
    app.include_router(router)
    return app


def main() -> None:
    run_service(KnowledgeSettings, create_app)
