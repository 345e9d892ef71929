"""App factory and process entry point."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from tritonclient.grpc.aio import InferenceServerClient

from rapport.common.app import add_readiness_check, create_service_app, run_service
from rapport.common.kafka import create_consumer, create_producer, ping_kafka
from rapport.common.milvus import connect
from rapport.common.triton import channel_args
from rapport.knowledge.adapters.encoder import TritonEncoder
from rapport.knowledge.adapters.store import KnowledgeStore
from rapport.knowledge.metrics import KnowledgeMetrics
from rapport.knowledge.routes import router
from rapport.knowledge.service import KnowledgeService
from rapport.knowledge.settings import KnowledgeSettings
from rapport.knowledge.stream import Chunking, Indexer, IndexLifecycle

log = logging.getLogger(__name__)


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
                        settings,
                        group_id=settings.group_id,
                        client_id=settings.service_name,
                        session_timeout_ms=settings.session_timeout_ms,
                        heartbeat_interval_ms=settings.heartbeat_interval_ms,
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
            lifecycle = IndexLifecycle(
                settings, store=store, encoder=encoder, indexer=indexer, opened=service.open
            )
            lifecycle.start()
            stack.push_async_callback(lifecycle.stop)
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
