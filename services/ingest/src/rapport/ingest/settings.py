from typing import ClassVar, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from rapport.common.kafka import CATALOG_TOPIC, EVENTS_TOPIC, KNOWLEDGE_TOPIC
from rapport.common.settings import KafkaSettings, RedisSettings, ServiceSettings


class IngestSettings(ServiceSettings, KafkaSettings, RedisSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_INGEST_")
    service_name: ClassVar[str] = "rapport-ingest"

    port: int = 8081
    topic: str = Field(EVENTS_TOPIC, description="Topic events are produced to.")
    max_events: int = Field(500, ge=1, le=10_000, description="Events per request.")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Request body size.")
    knowledge_topic: str = Field(KNOWLEDGE_TOPIC, description="Topic documents are produced to.")
    max_documents: int = Field(100, ge=1, le=1000, description="Documents per request.")
    knowledge_max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Request body size of `POST /v1/knowledge`."
    )
    catalog_topic: str = Field(CATALOG_TOPIC, description="Topic catalogue items are produced to.")
    max_catalog_items: int = Field(100, ge=1, le=1000, description="Items per `POST /v1/catalog`.")
    produce_timeout_ms: int = Field(
        2000, gt=0, description="Deadline for the broker to acknowledge every event."
    )
    retry_after_s: int = Field(1, ge=1, description="`Retry-After` on 503.")
    dedup_window_s: int = Field(86_400, gt=0, description="How long an event_id is remembered.")
    dedup_pending_ttl_s: int = Field(
        60,
        gt=0,
        description="How long an unconfirmed produce holds its event_id (a crashed request).",
    )
    max_future_skew_s: int = Field(
        300, ge=0, description="How far ahead of server time `occurred_at` may be."
    )
    events_hot_path: bool = Field(
        True,
        description="Serve `POST /v1/events` ahead of the framework's middleware and router "
        "(under half the CPU per request); `false` serves it through FastAPI.",
    )
    rate_per_s: float = Field(5000, gt=0, description="Default events/s per key.")
    rate_burst: int = Field(10_000, gt=0, description="Default bucket size per key.")

    @model_validator(mode="after")
    def _burst_fits_a_full_request(self) -> Self:
        if self.rate_burst < self.max_events:
            raise ValueError("rate_burst must be at least max_events, or full batches never pass")
        return self
