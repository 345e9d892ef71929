from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic_settings import SettingsConfigDict

from rapport.common.settings import (
    KafkaSettings,
    MongoSettings,
    ServiceSettings,
    load_settings,
)

pytestmark = pytest.mark.unit


class DemoSettings(ServiceSettings, KafkaSettings, MongoSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_DEMO_")
    service_name: ClassVar[str] = "rapport-demo"


def test_reads_own_prefix_and_shared_infra_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_DEMO_PORT", "9123")
    monkeypatch.setenv("RAPPORT_KAFKA_BOOTSTRAP_SERVERS", "broker-0:9092,broker-1:9092")
    monkeypatch.setenv("RAPPORT_MONGO_URL", "mongodb://user:pw@mongo:27017")
    settings = load_settings(DemoSettings)
    assert settings.port == 9123
    assert settings.kafka_bootstrap_servers == "broker-0:9092,broker-1:9092"
    assert settings.mongo_url.get_secret_value() == "mongodb://user:pw@mongo:27017"
    assert "pw" not in repr(settings)


def test_invalid_value_exits_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAPPORT_DEMO_PORT", "not-a-port")
    with pytest.raises(SystemExit) as exc:
        load_settings(DemoSettings)
    message = str(exc.value.code)
    assert "\n" not in message
    assert message.startswith("invalid settings: RAPPORT_DEMO_PORT:")


def test_invalid_shared_variable_is_named_by_its_unprefixed_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAPPORT_MONGO_TIMEOUT_MS", "-5")
    with pytest.raises(SystemExit) as exc:
        load_settings(DemoSettings)
    assert "RAPPORT_MONGO_TIMEOUT_MS:" in str(exc.value.code)


def test_out_of_range_port_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_DEMO_PORT", "70000")
    with pytest.raises(SystemExit, match="RAPPORT_DEMO_PORT: Input should be less than"):
        load_settings(DemoSettings)


def test_settings_are_immutable() -> None:
    settings = load_settings(DemoSettings)
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]
