"""The published OpenAPI documents, held so that a contract never changes silently.

``docs/openapi/<service>.json`` is each service's document as its app builds it,
and ``docs/openapi/versions.json`` records, per API version, a digest of every
document published under it. A change to a document therefore fails
``tests/unit/test_openapi.py`` until it is written here again, and a change
that keeps the version fails until the version moves: a published version
never means two shapes.

    python -m rapport.devstack.openapi           # check, exit 1 with what differs
    python -m rapport.devstack.openapi --write   # write the documents (after a version bump)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, get_type_hints

from fastapi import FastAPI

from rapport.devstack.stack import SERVICE_ENTRY_POINTS, installed_services

DOCS = Path("docs/openapi")
VERSIONS = "versions.json"


def build_document(service: str) -> dict[str, Any]:
    """The service's OpenAPI document, from its app factory with default settings."""
    (entry,) = entry_points(group=SERVICE_ENTRY_POINTS, name=service)
    create_app: Callable[[Any], FastAPI] = entry.load()
    settings_cls = get_type_hints(create_app)["settings"]
    return create_app(settings_cls()).openapi()


def canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(document).encode()).hexdigest()


def problems(docs: Path = DOCS) -> list[str]:
    """What differs between the apps and the published documents (nothing: empty)."""
    versions = _read_versions(docs)
    found = []
    for service in installed_services():
        document = build_document(service)
        path = docs / f"{service}.json"
        if not path.exists() or path.read_text() != canonical(document):
            found.append(f"{path} is not what the {service} app publishes")
        version = document["info"]["version"]
        recorded = versions.get(version, {}).get(service)
        if recorded is not None and recorded != digest(document):
            found.append(
                f"{service}: API {version} was published with another shape; "
                "bump rapport.common.contracts.API_VERSION"
            )
        elif recorded is None:
            found.append(f"{service}: API {version} is not recorded in {docs / VERSIONS}")
    return found


def write(docs: Path = DOCS) -> list[str]:
    """Write every document; refuses (and writes nothing) where a version would change shape."""
    versions = _read_versions(docs)
    documents = {s: build_document(s) for s in installed_services()}
    refused = [
        f"{s}: API {d['info']['version']} was published with another shape; bump the version"
        for s, d in documents.items()
        if versions.get(d["info"]["version"], {}).get(s, digest(d)) != digest(d)
    ]
    if refused:
        return refused
    docs.mkdir(parents=True, exist_ok=True)
    for service, document in documents.items():
        (docs / f"{service}.json").write_text(canonical(document))
        versions.setdefault(document["info"]["version"], {})[service] = digest(document)
    (docs / VERSIONS).write_text(json.dumps(versions, indent=1, sort_keys=True) + "\n")
    return []


def _read_versions(docs: Path) -> dict[str, dict[str, str]]:
    path = docs / VERSIONS
    if not path.exists():
        return {}
    recorded: dict[str, dict[str, str]] = json.loads(path.read_text())
    return recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rapport.devstack.openapi")
    parser.add_argument("--write", action="store_true", help="write the documents")
    parser.add_argument("--docs", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    found = write(args.docs) if args.write else problems(args.docs)
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
