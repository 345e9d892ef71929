from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from rapport.common.settings import KafkaSettings, ServiceSettings


class IngestSettings(ServiceSettings, KafkaSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_INGEST_")
    service_name: ClassVar[str] = "rapport-ingest"

    port: int = 8081
