"""`rapport-models train intents` on a team's own CSV, then `predict`, through the CLI.

The real encoder is built into a private cache; the CSV has no `oos` rows, so
out-of-scope detection has to come from the threshold and the distance floor.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from rapport.devstack.servers import console_script

pytestmark = pytest.mark.integration

CLINC = Path(__file__).resolve().parents[2] / "data" / "clinc150"
INTENTS = ("card_declined", "weather", "tell_joke", "book_flight")


def team_csv(path: Path, split: str, per_intent: int) -> list[tuple[str, str]]:
    with (CLINC / f"{split}.csv").open(newline="") as handle:
        rows = [(r["text"], r["intent"]) for r in csv.DictReader(handle)]
    kept = [[row for row in rows if row[1] == i][:per_intent] for i in INTENTS]
    chosen = [row for group in kept for row in group]
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("text", "intent"), *chosen])
    return chosen


def rapport_models(*args: str, cache: Path) -> None:
    env = {**os.environ, "RAPPORT_MODELS_CACHE": str(cache)}
    subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [console_script("rapport-models"), "--quiet", *args], check=True, env=env
    )


def test_a_team_csv_trains_and_predicts_with_the_encoder(tmp_path: Path) -> None:
    team_csv(tmp_path / "train.csv", "train", 40)
    val = team_csv(tmp_path / "val.csv", "val", 10)
    model = tmp_path / "model"
    cache = tmp_path / "cache"
    rapport_models(
        "train", "intents", "--data", str(tmp_path / "train.csv"), "--out", str(model), cache=cache
    )
    meta = json.loads((model / "metadata.json").read_text())
    assert meta["chosen"]["vector_scale"] > 0  # the regression on vectors takes part
    assert meta["chosen"]["distance_floor"] is not None  # no oos rows: the floor does the work
    (encoder,) = cache.glob("encoder-*")
    assert json.loads((encoder / "encoder.json").read_text())["id"]

    out = tmp_path / "out.csv"
    rapport_models(
        "predict",
        "intents",
        "--model",
        str(model),
        "--data",
        str(tmp_path / "val.csv"),
        "--out",
        str(out),
        cache=cache,
    )
    with out.open(newline="") as handle:
        predicted = list(csv.DictReader(handle))
    assert [p["text"] for p in predicted] == [text for text, _ in val]
    right = sum(p["intent"] == gold for p, (_, gold) in zip(predicted, val, strict=True))
    assert right >= 0.9 * len(val)
