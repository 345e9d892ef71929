"""The local mesh's model repository is exported again when it is incomplete or stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rapport.devstack.models import MODELS, REFERENCES, is_complete

pytestmark = pytest.mark.unit

References = dict[str, dict[str, Any]]


def repository(root: Path, *, references: References | None) -> Path:
    """Version 2 of every model, the reply carrying its components; references.json as given."""
    repo = root / "repository"
    for name in MODELS:
        (repo / name / "2").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text("")
    (repo / "reply" / "2" / "components.json").write_text("{}")
    if references is not None:
        (root / REFERENCES).write_text(json.dumps(references))
    return repo


def test_a_repository_with_the_latest_references_is_complete(tmp_path: Path) -> None:
    found: References = {"item_scorer": {"1": {}, "2": {}}, "intent_classifier": {"2": {}}}
    assert is_complete(repository(tmp_path, references=found))


@pytest.mark.parametrize(
    "references",
    [
        None,  # exported before references existed
        {"item_scorer": {"2": {}}},  # the intent model's is missing
        {"item_scorer": {"1": {}}, "intent_classifier": {"2": {}}},  # an older version's only
    ],
)
def test_a_repository_without_the_latest_references_is_exported_again(
    tmp_path: Path, references: References | None
) -> None:
    assert not is_complete(repository(tmp_path, references=references))


def test_a_reply_without_its_components_is_exported_again(tmp_path: Path) -> None:
    found: References = {"item_scorer": {"2": {}}, "intent_classifier": {"2": {}}}
    repo = repository(tmp_path, references=found)
    (repo / "reply" / "2" / "components.json").unlink()
    assert not is_complete(repo)
