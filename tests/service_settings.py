"""Each service's settings class by name: what the READMEs, the chart and the images are
checked against."""

from __future__ import annotations

from pydantic_settings import BaseSettings

from rapport.ingest.settings import IngestSettings
from rapport.knowledge.settings import KnowledgeSettings
from rapport.profile.settings import ProfileSettings
from rapport.recommend.settings import RecommendSettings
from rapport.respond.settings import RespondSettings

SERVICE_SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "profile": ProfileSettings,
    "recommend": RecommendSettings,
    "respond": RespondSettings,
    "knowledge": KnowledgeSettings,
}
