"""``rapport-schema [event|knowledge|catalog]``: the JSON Schema of a topic's records, as committed
under ``schemas/`` (a test keeps the files equal to the models)."""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import TypeAdapter

from rapport.common.catalog import CATALOG_RECORD, CATALOG_SCHEMA_ID
from rapport.common.events import EVENT_ADAPTER, SCHEMA_ID
from rapport.common.knowledge import KNOWLEDGE_RECORD, KNOWLEDGE_SCHEMA_ID


def render_json_schema(adapter: TypeAdapter[Any], *, schema_id: str, title: str) -> str:
    """A record's JSON Schema document, as committed under ``schemas/``."""
    schema = adapter.json_schema(ref_template="#/$defs/{model}")
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "title": title,
        **schema,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def render_event_json_schema() -> str:
    """``schemas/event.v1.json``."""
    return render_json_schema(EVENT_ADAPTER, schema_id=SCHEMA_ID, title="Rapport event v1")


def render_knowledge_json_schema() -> str:
    """``schemas/knowledge.v1.json``."""
    return render_json_schema(
        KNOWLEDGE_RECORD, schema_id=KNOWLEDGE_SCHEMA_ID, title="Rapport knowledge record v1"
    )


def render_catalog_json_schema() -> str:
    """``schemas/catalog.v1.json``."""
    return render_json_schema(
        CATALOG_RECORD, schema_id=CATALOG_SCHEMA_ID, title="Rapport catalogue record v1"
    )


RENDERERS = {
    "event": render_event_json_schema,
    "knowledge": render_knowledge_json_schema,
    "catalog": render_catalog_json_schema,
}


def main() -> None:
    """Print the named record's JSON Schema (default ``event``)."""
    which = sys.argv[1] if len(sys.argv) > 1 else "event"
    if which not in RENDERERS:
        raise SystemExit(f"usage: rapport-schema [{'|'.join(RENDERERS)}]")
    print(RENDERERS[which](), end="")
