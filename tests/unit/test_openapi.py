"""The published OpenAPI documents: what each app publishes is what docs/openapi holds,
and no published API version ever means two shapes."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from rapport.common.contracts import (
    API_VERSION,
    KnowledgeQuery,
    ProfileView,
    RecallRequest,
    RecommendationRequest,
)
from rapport.common.vectors import MessageVector
from rapport.devstack import openapi
from rapport.devstack.stack import installed_services
from rapport.profile.domain.views import ConsentChange
from rapport.respond.wire import ChatCompletionRequest

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"


def test_every_app_publishes_the_committed_document() -> None:
    assert openapi.problems(DOCS) == [], "run `python -m rapport.devstack.openapi --write`"


def test_every_service_publishes_the_one_api_version() -> None:
    for service in installed_services():
        document = json.loads((DOCS / f"{service}.json").read_text())
        assert document["info"]["version"] == API_VERSION, service


VECTOR = MessageVector.of([1.0, 0.0], "encoder:1").model_dump()
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
PROFILE = ProfileView(user_id="u", updated_at=datetime.now(UTC)).model_dump(mode="json")


@pytest.mark.parametrize(
    ("model", "body", "field", "valid", "lax"),
    [
        (ConsentChange, {}, "personalization", False, 0),
        (RecommendationRequest, {"user_id": "u"}, "vector", False, 0),
        (RecommendationRequest, {"user_id": "u"}, "k", 3, "3"),
        (RecallRequest, {"vector": VECTOR}, "k", 3.0, "3"),  # 3.0 is an integer in JSON
        (KnowledgeQuery, {"vector": VECTOR}, "min_score", 0.5, "0.5"),
        (KnowledgeQuery, {}, "vector", VECTOR, VECTOR | {"dimension": "2"}),
        (RecommendationRequest, {"user_id": "u"}, "profile", PROFILE, PROFILE | {"version": "1"}),
        (ChatCompletionRequest, CHAT, "stream", True, 1),
    ],
)
def test_request_bodies_refuse_what_their_schema_calls_invalid(
    model: type[BaseModel], body: dict[str, object], field: str, valid: object, lax: object
) -> None:
    """Found by schemathesis: `{"personalization": 0}` opted a user out and `"vector": 0`
    was false, where the documents say boolean. No coercion: a value of another JSON type
    is refused, as ingest refuses it."""
    model.model_validate(body | {field: valid})
    with pytest.raises(ValidationError):
        model.model_validate(body | {field: lax})


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


@pytest.mark.parametrize("path", ["/v1/respond", "/v1/chat/completions"])
def test_the_deadline_header_is_documented_as_the_number_it_is(path: str) -> None:
    """Found by schemathesis: documented as any string, so `X-Rapport-Deadline-Ms: null`
    was a valid request, and respond refused it (422)."""
    document = openapi.build_document("respond")
    (header,) = [
        p
        for p in document["paths"][path]["post"]["parameters"]
        if p["in"] == "header"
        if p["name"] == "X-Rapport-Deadline-Ms"
    ]
    assert "anyOf" not in header["schema"]
    assert (header["schema"]["type"], header["schema"]["minimum"]) == ("number", 1)


def _patterns(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return found + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value)]
    return []


def test_no_published_pattern_uses_a_class_whose_meaning_depends_on_the_engine() -> None:
    """Found by schemathesis: a URL with U+0085 matched the document's `[^\\s]` (ECMA-262)
    and was refused by the server's (Rust's, where U+0085 is whitespace). Classes are
    spelled out instead, as rapport.common.identifiers does."""
    for service in installed_services():
        document = json.loads((DOCS / f"{service}.json").read_text())
        for pattern in _patterns(document):
            assert not re.search(r"\\[sSwWdDb]", pattern), (service, pattern)
