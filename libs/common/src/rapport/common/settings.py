"""Settings base classes.

Each service subclasses :class:`ServiceSettings` with its own env prefix
(``RAPPORT_INGEST_`` and so on) and mixes in the infrastructure it needs.
Infrastructure endpoints are shared by every service and read from one
unprefixed name each (``RAPPORT_KAFKA_BOOTSTRAP_SERVERS``, ``RAPPORT_MONGO_URL``,
``RAPPORT_REDIS_URL``) so a deployment sets them once.

Settings are built by :func:`load_settings` inside an app factory or a
``main()``; nothing here reads the environment at import time.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from rapport.common.auth import AuthSettings

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ServiceSettings(AuthSettings):
    """Fields every service has, its API keys included (every service authenticates).
    Subclasses set ``env_prefix`` and ``service_name``."""

    model_config = SettingsConfigDict(
        env_prefix="RAPPORT_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        validate_default=True,
    )

    service_name: ClassVar[str] = "rapport"

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    log_level: LogLevel = Field("INFO", description="Root log level.")


class KafkaSettings(BaseSettings):
    """Kafka connection, shared by every service that produces or consumes."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias="RAPPORT_KAFKA_BOOTSTRAP_SERVERS",
        description="Comma-separated host:port list.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias="RAPPORT_KAFKA_SECURITY_PROTOCOL"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, validation_alias="RAPPORT_KAFKA_SASL_MECHANISM"
    )
    kafka_sasl_username: str | None = Field(None, validation_alias="RAPPORT_KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(
        None, validation_alias="RAPPORT_KAFKA_SASL_PASSWORD"
    )


class MongoSettings(BaseSettings):
    """MongoDB connection (the source of truth)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    mongo_url: SecretStr = Field(
        SecretStr("mongodb://127.0.0.1:27017"),
        validation_alias="RAPPORT_MONGO_URL",
        description="MongoDB connection string; may carry credentials.",
    )
    mongo_database: str = Field("rapport", validation_alias="RAPPORT_MONGO_DATABASE")
    mongo_timeout_ms: int = Field(
        2000,
        gt=0,
        validation_alias="RAPPORT_MONGO_TIMEOUT_MS",
        description="Client-side timeoutMS for every operation.",
    )


class RedisSettings(BaseSettings):
    """Redis connection (a cache: it may vanish, so timeouts are short)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        validation_alias="RAPPORT_REDIS_URL",
    )
    redis_timeout_ms: int = Field(250, gt=0, validation_alias="RAPPORT_REDIS_TIMEOUT_MS")


class ProfileClientSettings(BaseSettings):
    """Where the profile service answers, for the services that read profiles."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    profile_url: str = Field(
        "http://127.0.0.1:8082",
        validation_alias="RAPPORT_PROFILE_URL",
        description="Base URL of the profile service.",
    )
    profile_timeout_ms: int = Field(
        150, gt=0, validation_alias="RAPPORT_PROFILE_TIMEOUT_MS", description="Per call."
    )


class TritonSettings(BaseSettings):
    """Triton's gRPC endpoint, shared by the services that run models."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    triton_grpc_url: str = Field(
        "127.0.0.1:8001",
        validation_alias="RAPPORT_TRITON_GRPC_URL",
        description="Triton gRPC endpoint, host:port.",
    )


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def env_var_for(settings_cls: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    """The environment variable a validation error location refers to."""
    if not loc:
        return settings_cls.__name__
    head = str(loc[0])
    field = settings_cls.model_fields.get(head)
    if field is None:
        # An aliased field reports its alias, which is already the variable name.
        return head.upper()
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias.upper()
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    return f"{prefix}{head}".upper()


def env_vars(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """Every variable a settings class reads, with its default (for READMEs and their test)."""
    out = {}
    for name, field in settings_cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, SecretStr):
            default = default.get_secret_value()  # defaults are local endpoints, never secrets
        out[env_var_for(settings_cls, (name,))] = "" if default is None else str(default)
    return out


def describe_settings_error(settings_cls: type[BaseSettings], error: ValidationError) -> str:
    """One line naming every bad variable and why."""
    parts = []
    for item in error.errors():
        var = env_var_for(settings_cls, item["loc"])
        reason = item["msg"]
        if item["type"] == "missing":
            reason = "required but not set"
        parts.append(f"{var}: {reason}")
    return "invalid settings: " + "; ".join(parts)


class ConfigurationError(ValueError):
    """A setting that parsed but cannot be used (a file that does not load, say): the app
    factory raises it, and the process entry point exits with its one line."""


def load_settings(settings_cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build settings from the environment, or exit with one line naming the variable."""
    try:
        return settings_cls(**overrides)
    except ValidationError as error:
        raise SystemExit(describe_settings_error(settings_cls, error)) from None
