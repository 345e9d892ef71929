from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rapport.common.kafka import EVENTS_DLQ_TOPIC, EVENTS_TOPIC, PROFILE_CHANGES_TOPIC
from rapport.common.milvus import MilvusSettings
from rapport.common.settings import KafkaSettings, MongoSettings, RedisSettings, ServiceSettings
from rapport.profile.domain.memory import MemoryRules
from rapport.profile.domain.state import Rules


class ProfileSettings(ServiceSettings, KafkaSettings, MongoSettings, RedisSettings, MilvusSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_PROFILE_")
    service_name: ClassVar[str] = "rapport-profile"

    port: int = 8082
    consume: bool = Field(True, description="Run the stream processor in this process.")
    group_id: str = Field("rapport-profile", description="Kafka consumer group.")
    events_topic: str = Field(EVENTS_TOPIC, description="Topic of incoming events.")
    changes_topic: str = Field(PROFILE_CHANGES_TOPIC, description="Changelog topic.")
    dlq_topic: str = Field(EVENTS_DLQ_TOPIC, description="Dead-letter topic for poison records.")
    max_batch: int = Field(500, ge=1, description="Records per getmany batch.")
    cached_profiles: int = Field(
        10_000,
        ge=1,
        description="Profiles the stream processor keeps as it last wrote them, so a batch "
        "reads only the others from MongoDB (every write is still compare-and-set). "
        "About 6 KB each (more with remembered messages); size it to the users active "
        "on a replica's partitions.",
    )
    commit_interval_ms: int = Field(
        250,
        ge=0,
        le=60_000,
        description="How often the processor commits its offsets (0: after every batch). "
        "After a crash, what was applied since is delivered again and skipped.",
    )
    session_timeout_ms: int = Field(
        10_000,
        gt=0,
        description="Consumer group session timeout (how fast a dead member is noticed).",
    )
    heartbeat_interval_ms: int = Field(
        3_000, gt=0, description="Consumer group heartbeat interval."
    )
    half_life_hours: float = Field(168.0, gt=0, description="Half-life of category affinities.")
    session_gap_minutes: float = Field(30.0, gt=0, description="Inactivity that ends a session.")
    cache_ttl_s: int = Field(3600, gt=0, description="TTL of cached profiles in Redis.")
    trending_half_life_hours: float = Field(
        24.0, gt=0, description="Half-life of an item view's weight in trending."
    )

    memory: bool = Field(
        True,
        description="Learn facts from chat messages (diet, budget, ...) and, with a vector "
        "store, remember the messages for recall.",
    )
    milvus_uri: str | None = Field(
        None,
        description="Vector store of remembered messages: a Milvus cluster in production, "
        "Milvus Lite locally. Unset: facts only, nothing to recall.",
    )
    memory_collection: str = Field("rapport_memory", description="Milvus collection.")
    memory_dimension: int = Field(
        384, ge=1, le=4096, description="Dimension of the encoder's vectors (the collection's)."
    )
    memory_max_facts: int = Field(64, ge=1, le=1000, description="Live facts kept per user.")
    memory_max_messages: int = Field(
        200, ge=1, le=10_000, description="Messages remembered per user; the oldest go first."
    )
    memory_retention_days: float = Field(
        365.0,
        gt=0,
        description="Facts and messages older than this are not served, then deleted.",
    )
    memory_expire_interval_s: float = Field(
        3600.0, gt=0, description="How often remembered messages past the retention are deleted."
    )
    memory_open_wait_s: float = Field(
        10.0,
        gt=0,
        description="How long start-up waits for the vector store before serving without it "
        "(it keeps trying in the background).",
    )
    memory_retry_s: float = Field(
        2.0, gt=0, description="Pause between attempts to open the vector store."
    )
    memory_write_timeout_ms: int = Field(
        2000,
        gt=0,
        description="Deadline of one vector store write; past it, remembered messages wait "
        "in MongoDB and are written when the store answers again.",
    )
    waiting_interval_s: float = Field(
        1.0,
        gt=0,
        description="How often writes waiting in MongoDB (for the vector store, or for "
        "Redis after a forget or an erasure) are retried.",
    )
    recall_timeout_ms: int = Field(
        200, gt=0, description="Deadline of one vector store search, inside the caller's."
    )

    experiments_file: Path | None = Field(
        None,
        description="The experiments YAML (the same file as respond's); unset: none. "
        "Validated at start: one line per problem, and profile does not start.",
    )
    experiments_report_interval_s: float = Field(
        60.0, gt=0, description="How often the experiments' gauges are computed again."
    )
    drift_reference_path: Path | None = Field(
        None,
        description="references.json from `rapport-models export`: the item model's "
        "training category mix, which incoming item events' categories are compared "
        "against. Unset: no drift measured.",
    )
    drift_model: str = Field(
        "item_scorer", description="Whose reference (its latest version) drift is measured to."
    )
    drift_events: int = Field(
        1000,
        ge=1,
        description="Drift window: the last N item events with a category; scored once full "
        "(the alert threshold is measured for 1000).",
    )
    drift_interval_s: float = Field(
        15.0, gt=0, description="How often the category drift gauges are recomputed."
    )

    @property
    def rules(self) -> Rules:
        return Rules(
            half_life=timedelta(hours=self.half_life_hours),
            session_gap=timedelta(minutes=self.session_gap_minutes),
            memory=MemoryRules(
                enabled=self.memory,
                max_facts=self.memory_max_facts,
                max_messages=self.memory_max_messages,
                retention=timedelta(days=self.memory_retention_days),
            ),
        )
