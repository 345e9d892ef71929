from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rapport.common.kafka import CATALOG_TOPIC
from rapport.common.settings import (
    KafkaSettings,
    ProfileClientSettings,
    RedisSettings,
    ServiceSettings,
    TritonSettings,
)


class RecommendSettings(
    ServiceSettings, ProfileClientSettings, RedisSettings, TritonSettings, KafkaSettings
):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_RECOMMEND_")
    service_name: ClassVar[str] = "rapport-recommend"

    port: int = 8083
    triton_timeout_ms: int = Field(
        40, gt=0, description="Deadline of one Triton call; past it the fallback serves."
    )
    item_model: str = Field("item_scorer", description="Triton model that ranks items.")
    encoder_model: str = Field(
        "encoder", description="Triton sentence encoder (the intent model reads its vector)."
    )
    intent_model: str = Field("intent_classifier", description="Triton intent model.")
    sentiment_model: str = Field("sentiment", description="Triton sentiment model.")
    reply_model: str = Field(
        "reply",
        description="Triton model running the four models above in one step: a request "
        "with a message ranks and reads it in one call.",
    )
    max_model_in_flight: int = Field(
        32,
        ge=1,
        description="Most requests one process has at Triton at once. Past the admission limit "
        "a request waits up to `model_wait_ms` for a place, then gets the fallback (reason "
        "`overloaded`): a longer queue would overrun the Triton deadline for everyone. The "
        "limit starts here and follows `model_target_ms`.",
    )
    model_wait_ms: float = Field(
        15.0,
        ge=0,
        description="How long a request past the admission limit waits for a place at Triton "
        "(a place frees every few ms under load; an instant fallback turned bursts into "
        "degraded replies). 0: the fallback at once.",
    )
    min_model_in_flight: int = Field(
        4, ge=1, description="The admission limit never falls below this."
    )
    model_target_ms: float = Field(
        20.0,
        ge=0,
        description="A request's model calls slower than this lower the admission limit "
        "(AIMD); fast ones raise it back towards `max_model_in_flight`. 0: a static limit.",
    )
    breaker_failures: int = Field(
        5,
        ge=1,
        description="Consecutive Triton failures (refused or erroring calls; a late one "
        "lowers the admission limit instead) that open the circuit.",
    )
    breaker_reset_s: float = Field(
        5.0, gt=0, description="How long the circuit stays open before one trial call."
    )
    catalog_path: Path | None = Field(
        None, description="catalog.json from `rapport-models export`: titles for reasons."
    )
    catalog_topic: str = Field(
        CATALOG_TOPIC, description="Topic of catalogue items, read whole into the overlay."
    )
    max_new_items: int = Field(
        32,
        ge=0,
        le=1000,
        description="Most catalogue items the model was not trained on that one ranking "
        "considers (Triton scores them beside the known items). 0: no overlay, the topic is "
        "not read.",
    )
    history_decay: float = Field(
        0.85, gt=0, le=1, description="Weight ratio between consecutive recent items."
    )
    history_items: int = Field(20, ge=1, description="Recent items sent to the scorer.")
    explore: bool = Field(True, description="Fill one slot through the exploration bandit.")
    bandit_refresh_s: float = Field(
        10.0, gt=0, description="How often the bandit's feedback counts are re-read."
    )
    drift_reference_path: Path | None = Field(
        None,
        description="references.json from `rapport-models export`: what drift is measured "
        "against. Unset: references.json beside `catalog_path`.",
    )
    drift_messages: int = Field(
        500,
        ge=1,
        description="Drift window of messages: the last N replies' intents and vectors; "
        "scores are published once it is full (thresholds are measured for 500).",
    )
    drift_rankings: int = Field(
        1000,
        ge=1,
        description="Exposure window: the last N rankings' served items (coverage, Gini, "
        "long-tail and fallback share); published once full.",
    )
    drift_interval_s: float = Field(
        15.0, gt=0, description="How often the drift and exposure gauges are recomputed."
    )

    @property
    def drift_references(self) -> Path | None:
        if self.drift_reference_path is not None:
            return self.drift_reference_path
        return self.catalog_path.parent / "references.json" if self.catalog_path else None
