"""recommend's item catalogue: titles, from the model image's catalog.json."""

from __future__ import annotations

import json
from pathlib import Path


def load_catalog(path: Path | None) -> dict[str, str]:
    """item id -> title, from ``rapport-models export``'s catalog.json (optional)."""
    if path is None or not path.is_file():
        return {}
    return {entry["item_id"]: entry["title"] for entry in json.loads(path.read_text())}
