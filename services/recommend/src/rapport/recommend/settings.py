from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rapport.common.settings import ProfileClientSettings, ServiceSettings


class RecommendSettings(ServiceSettings, ProfileClientSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_RECOMMEND_")
    service_name: ClassVar[str] = "rapport-recommend"

    port: int = 8083
    triton_grpc_url: str = Field(
        "127.0.0.1:8001",
        validation_alias="RAPPORT_TRITON_GRPC_URL",
        description="Triton gRPC endpoint, host:port.",
    )
    triton_timeout_ms: int = Field(
        40, gt=0, description="Deadline of one Triton call; past it the fallback serves."
    )
    item_model: str = Field("item_scorer", description="Triton model that ranks items.")
    intent_model: str = Field("intent_classifier", description="Triton intent model.")
    sentiment_model: str = Field("sentiment", description="Triton sentiment model.")
    max_model_in_flight: int = Field(
        16,
        ge=1,
        description="Requests one process has at Triton at once. Past it a request gets the "
        "fallback at once (reason `overloaded`): queueing it would overrun the Triton "
        "deadline for everyone and open the circuit.",
    )
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive Triton failures that open the circuit."
    )
    breaker_reset_s: float = Field(
        5.0, gt=0, description="How long the circuit stays open before one trial call."
    )
    catalog_path: Path | None = Field(
        None, description="catalog.json from `rapport-models export`: titles for reasons."
    )
    history_decay: float = Field(
        0.85, gt=0, le=1, description="Weight ratio between consecutive recent items."
    )
    history_items: int = Field(20, ge=1, description="Recent items sent to the scorer.")
    explore: bool = Field(True, description="Fill one slot through the exploration bandit.")
    bandit_refresh_s: float = Field(
        10.0, gt=0, description="How often the bandit's feedback counts are re-read."
    )
