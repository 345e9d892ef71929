from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from rapport.common.settings import ServiceSettings


class RespondSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_RESPOND_")
    service_name: ClassVar[str] = "rapport-respond"

    port: int = 8080
