from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rapport.common.kafka import KNOWLEDGE_DLQ_TOPIC, KNOWLEDGE_TOPIC
from rapport.common.milvus import MilvusSettings
from rapport.common.settings import KafkaSettings, ServiceSettings, TritonSettings


class KnowledgeSettings(ServiceSettings, KafkaSettings, TritonSettings, MilvusSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_KNOWLEDGE_")
    service_name: ClassVar[str] = "rapport-knowledge"

    port: int = 8084
    milvus_uri: str = Field(
        "http://127.0.0.1:19530",
        description="Milvus endpoint: a Milvus cluster in production, Milvus Lite locally.",
    )
    collection: str = Field(
        "rapport_knowledge", description="Collection prefix: `<it>_chunks` and `<it>_documents`."
    )
    consume: bool = Field(True, description="Run the indexer in this process.")
    group_id: str = Field("rapport-knowledge", description="Kafka consumer group.")
    topic: str = Field(KNOWLEDGE_TOPIC, description="Topic of documents.")
    dlq_topic: str = Field(KNOWLEDGE_DLQ_TOPIC, description="Dead-letter topic.")
    max_batch: int = Field(64, ge=1, description="Records per getmany batch.")
    session_timeout_ms: int = Field(
        10_000,
        gt=0,
        description="Consumer group session timeout (how fast a dead member is noticed).",
    )
    heartbeat_interval_ms: int = Field(
        3_000, gt=0, description="Consumer group heartbeat interval."
    )
    encoder_model: str = Field("encoder", description="Triton sentence encoder.")
    embed_batch: int = Field(
        32, ge=1, le=64, description="Chunks per encoder request (the model's max is 64)."
    )
    triton_timeout_ms: int = Field(
        5000, gt=0, description="Deadline of one encoder call (indexing is not on a reply's path)."
    )
    chunk_words: int = Field(
        30,
        ge=16,
        le=200,
        description="Words per chunk, at most (the encoder reads 256 tokens). 30 was chosen "
        'on data: bench/README.md, "Knowledge retrieval quality".',
    )
    chunk_overlap_words: int = Field(
        5, ge=0, description="Words a long sentence's windows repeat of the last one."
    )
    max_chunks: int = Field(
        256, ge=1, le=2000, description="Chunks kept per document (the rest is not indexed)."
    )
    snippet_chars: int = Field(400, ge=40, description="Longest snippet a search returns.")
    search_timeout_ms: int = Field(
        200, gt=0, description="Deadline of one vector store search, inside the caller's."
    )
