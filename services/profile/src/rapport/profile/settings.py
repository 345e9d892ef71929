from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from rapport.common.settings import MongoSettings, ServiceSettings


class ProfileSettings(ServiceSettings, MongoSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_PROFILE_")
    service_name: ClassVar[str] = "rapport-profile"

    port: int = 8082
