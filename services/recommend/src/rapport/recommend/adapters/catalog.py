"""recommend's item catalogue: the items the served model was trained on, from the model
image's catalog.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CatalogEntry:
    title: str
    categories: tuple[str, ...]


def load_catalog(path: Path | None) -> dict[str, CatalogEntry]:
    """item id -> title and categories, from ``rapport-models export``'s catalog.json
    (optional: without it, titles are ids and every catalogue item counts as new)."""
    if path is None or not path.is_file():
        return {}
    return {
        entry["item_id"]: CatalogEntry(entry["title"], tuple(entry.get("categories", ())))
        for entry in json.loads(path.read_text())
    }
