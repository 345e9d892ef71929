"""The published OpenAPI documents: what each app publishes is what docs/openapi holds,
and no published API version ever means two shapes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rapport.common.contracts import API_VERSION
from rapport.devstack import openapi
from rapport.devstack.stack import installed_services

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"


def test_every_app_publishes_the_committed_document() -> None:
    assert openapi.problems(DOCS) == [], "run `python -m rapport.devstack.openapi --write`"


def test_every_service_publishes_the_one_api_version() -> None:
    for service in installed_services():
        document = json.loads((DOCS / f"{service}.json").read_text())
        assert document["info"]["version"] == API_VERSION, service


def _copy(tmp_path: Path) -> Path:
    docs = tmp_path / "openapi"
    shutil.copytree(DOCS, docs)
    return docs


def test_a_changed_shape_under_a_published_version_is_refused(tmp_path: Path) -> None:
    docs = _copy(tmp_path)
    versions = json.loads((docs / openapi.VERSIONS).read_text())
    versions[API_VERSION]["recommend"] = "0" * 64  # as if 1.1.0 had been published otherwise
    (docs / openapi.VERSIONS).write_text(json.dumps(versions))
    found = openapi.problems(docs)
    assert any("recommend" in line and "bump" in line for line in found), found
    assert openapi.write(docs) != [], "--write must not paper over it"
    assert json.loads((docs / openapi.VERSIONS).read_text()) == versions, "nothing written"


def test_a_stale_document_is_found_and_rewritten(tmp_path: Path) -> None:
    docs = _copy(tmp_path)
    (docs / "profile.json").write_text("{}\n")
    assert openapi.problems(docs) == [
        f"{docs / 'profile.json'} is not what the profile app publishes"
    ]
    assert openapi.write(docs) == []
    assert openapi.problems(docs) == []


def test_recommendation_reasons_are_structured_and_the_text_is_deprecated() -> None:
    schemas = json.loads((DOCS / "recommend.json").read_text())["components"]["schemas"]
    item = schemas["RecommendedItem"]
    assert item["properties"]["why"] == {"$ref": "#/components/schemas/Reason"}
    assert item["properties"]["reason"]["deprecated"] is True
    assert set(schemas["Reason"]["properties"]) == {"kind", "label", "item_id"}
