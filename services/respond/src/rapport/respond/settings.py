from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rapport.common.kafka import EVENTS_TOPIC
from rapport.common.milvus import MilvusSettings
from rapport.common.settings import (
    KafkaSettings,
    ProfileClientSettings,
    RedisSettings,
    ServiceSettings,
)


class RecommendClientSettings(BaseSettings):
    """Where the recommend service answers."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    recommend_url: str = Field(
        "http://127.0.0.1:8083",
        validation_alias="RAPPORT_RECOMMEND_URL",
        description="Base URL of the recommend service.",
    )
    recommend_timeout_ms: int = Field(
        150, gt=0, validation_alias="RAPPORT_RECOMMEND_TIMEOUT_MS", description="Per call."
    )


class KnowledgeClientSettings(BaseSettings):
    """Where the knowledge service answers; unset, replies carry no company knowledge."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    knowledge_url: str | None = Field(
        None,
        validation_alias="RAPPORT_KNOWLEDGE_URL",
        description="Base URL of the knowledge service; unset: no knowledge retrieval.",
    )
    knowledge_timeout_ms: int = Field(
        30, gt=0, validation_alias="RAPPORT_KNOWLEDGE_TIMEOUT_MS", description="Per call."
    )


class LlmSettings(BaseSettings):
    """The upstream OpenAI-compatible API; LLM mode is on when the base URL is set."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    llm_base_url: str | None = Field(
        None,
        validation_alias="RAPPORT_LLM_BASE_URL",
        description="Upstream base URL (ending in /v1); unset: template mode.",
    )
    llm_api_key: SecretStr | None = Field(None, validation_alias="RAPPORT_LLM_API_KEY")
    llm_model: str = Field(
        "gpt-4o-mini", validation_alias="RAPPORT_LLM_MODEL", description="Default upstream model."
    )
    llm_models: str = Field(
        "",
        validation_alias="RAPPORT_LLM_MODELS",
        description="Comma-separated upstream models a caller may pick with `model`.",
    )
    llm_timeout_ms: int = Field(
        15_000,
        gt=0,
        validation_alias="RAPPORT_LLM_TIMEOUT_MS",
        description="Whole upstream call (non-streaming) or time to its first chunk (streaming).",
    )
    llm_max_tokens: int = Field(
        400,
        gt=0,
        validation_alias="RAPPORT_LLM_MAX_TOKENS",
        description="`max_tokens` sent upstream when the request sets neither it nor "
        "`max_completion_tokens`.",
    )
    llm_http_client: Literal["aiohttp", "httpx"] = Field(
        "aiohttp",
        validation_alias="RAPPORT_LLM_HTTP_CLIENT",
        description="The `openai` client's transport: aiohttp (faster, measured) or httpx2.",
    )
    llm_upstreams: SecretStr | None = Field(
        None,
        validation_alias="RAPPORT_LLM_UPSTREAMS",
        description="JSON list of per-tenant upstreams: `{tenant, base_url, api_key, models}`.",
    )
    llm_upstreams_file: Path | None = Field(
        None,
        validation_alias="RAPPORT_LLM_UPSTREAMS_FILE",
        description="File holding the same JSON list (a mounted Secret).",
    )


class RespondSettings(
    ServiceSettings,
    ProfileClientSettings,
    RedisSettings,
    RecommendClientSettings,
    KnowledgeClientSettings,
    MilvusSettings,
    KafkaSettings,
    LlmSettings,
):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_RESPOND_")
    service_name: ClassVar[str] = "rapport-respond"

    port: int = 8080
    deadline_ms: int = Field(
        80, ge=5, description="End-to-end budget of a reply's fan-out, unless the request says."
    )
    max_deadline_ms: int = Field(
        2000, ge=5, description="Largest budget a request may ask for with X-Rapport-Deadline-Ms."
    )
    profile_share: float = Field(
        0.4,
        gt=0,
        le=1,
        description="Largest fraction of the budget the profile read may use, so a slow "
        "profile service leaves time for recommend.",
    )
    reserve_ms: float = Field(
        8.0, ge=0, description="Budget kept after recommend for the event and the assembly."
    )
    recommendations: int = Field(3, ge=1, le=20, description="Items asked of recommend per reply.")
    knowledge_passages: int = Field(
        3, ge=1, le=10, description="Passages of company knowledge asked per reply."
    )
    milvus_uri: str | None = Field(
        None,
        description="knowledge's vector store (Milvus; Milvus Lite locally): respond then "
        "searches the index itself, one read and no hop through the knowledge service. "
        "Unset: knowledge's HTTP search. Either way knowledge is on only with "
        "`RAPPORT_KNOWLEDGE_URL`.",
    )
    knowledge_collection: str = Field(
        "rapport_knowledge",
        description="knowledge's collection prefix (its `RAPPORT_KNOWLEDGE_COLLECTION`).",
    )
    knowledge_snippet_chars: int = Field(
        400, ge=40, description="Longest passage a reply cites (knowledge's own default)."
    )
    knowledge_min_score: float = Field(
        0.3,
        ge=-1,
        le=1,
        description="Passages less similar to the message than this are left out.",
    )
    knowledge_answer_score: float = Field(
        0.54,
        ge=-1,
        le=1,
        description="Template mode answers from the best passage when its similarity reaches "
        'this (chosen on data: bench/README.md, "Knowledge retrieval quality").',
    )
    knowledge_reserve_ms: float = Field(
        15.0,
        ge=0,
        description="Budget kept after recommend for the knowledge search and the memory "
        "recall, which run at the same time, when either is on.",
    )
    memory: bool = Field(
        True,
        description="Memory in replies: the facts the user stated (from the profile) and "
        "their own past messages that fit this one (a recall with the message's vector).",
    )
    memory_recall: int = Field(3, ge=1, le=10, description="Past messages recalled per reply.")
    memory_min_score: float = Field(
        0.35,
        ge=-1,
        le=1,
        description="Past messages less similar to this one than this are not recalled.",
    )
    memory_timeout_ms: int = Field(30, gt=0, description="Deadline of one recall call.")
    max_in_flight: int = Field(
        32,
        ge=1,
        description="Most fan-outs one process runs at once. Past the admission limit a reply "
        "waits for a place (see `min_fan_out_ms`), then is answered without its fan-out "
        "(profile, recommendations, knowledge and memory listed in `degraded`), so an "
        "overloaded gateway sheds its dependencies' load and still answers within the "
        "deadline. The limit starts here and follows `admission_target_ms`.",
    )
    min_in_flight: int = Field(
        2,
        ge=1,
        description="The admission limit never falls below this.",
    )
    min_fan_out_ms: float = Field(
        30.0,
        ge=0,
        description="A reply past the admission limit waits for a place while more than this "
        "is left of its budget (a fan-out started later could not finish in time), then is "
        "shed. 0: shed at once.",
    )
    admission_target_ms: float = Field(
        40.0,
        ge=0,
        description="A fan-out slower than this lowers the admission limit (AIMD); fast ones "
        "raise it back towards `max_in_flight`. A fan-out whose dependency timed out or "
        "failed does not count: degradation handles that. 0: the limit stays at "
        "`max_in_flight`.",
    )
    events_topic: str = Field(EVENTS_TOPIC, description="Where chat messages are recorded.")
    templates_path: Path | None = Field(
        None, description="A team's templates YAML; unset: the built-in templates."
    )
    experiments_file: Path | None = Field(
        None,
        description="The experiments YAML (the same file as profile's); unset: none. "
        "Validated at start (personas against the templates): one line per problem.",
    )
    kafka_retry_s: float = Field(
        2.0, gt=0, description="Pause between attempts to connect the producer at start-up."
    )

    @model_validator(mode="after")
    def _default_fits(self) -> Self:
        if self.deadline_ms > self.max_deadline_ms:
            raise ValueError("deadline_ms must not exceed max_deadline_ms")
        return self

    @property
    def upstream_models(self) -> tuple[str, ...]:
        """The default upstream's models, its default first."""
        extra = [m.strip() for m in self.llm_models.split(",") if m.strip()]
        return tuple(dict.fromkeys([self.llm_model, *extra]))
