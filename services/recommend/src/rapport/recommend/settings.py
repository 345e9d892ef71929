from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from rapport.common.settings import ServiceSettings


class RecommendSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_RECOMMEND_")
    service_name: ClassVar[str] = "rapport-recommend"

    port: int = 8083
