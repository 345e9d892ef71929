"""Each service README documents every environment variable its settings read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from rapport.common.settings import env_vars
from rapport.ingest.settings import IngestSettings
from rapport.knowledge.settings import KnowledgeSettings
from rapport.profile.settings import ProfileSettings
from rapport.recommend.settings import RecommendSettings
from rapport.respond.settings import RespondSettings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("service", "settings_cls"),
    [
        ("ingest", IngestSettings),
        ("profile", ProfileSettings),
        ("recommend", RecommendSettings),
        ("respond", RespondSettings),
        ("knowledge", KnowledgeSettings),
    ],
)
def test_service_readme_lists_every_variable(
    service: str, settings_cls: type[BaseSettings]
) -> None:
    readme = (REPO / "services" / service / "README.md").read_text()
    missing = [var for var in env_vars(settings_cls) if f"`{var}`" not in readme]
    assert not missing, f"services/{service}/README.md lacks {missing}"
