"""MovieLens-100K, read from inside the recbole==1.2.1 wheel (never copied into the repo)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import numpy as np

DATASET = "ml-100k"


class DataMissingError(RuntimeError):
    pass


@dataclass(frozen=True)
class MovieLens:
    item_ids: list[str]  # MovieLens item ids as strings, catalogue order
    titles: list[str]
    genre_names: list[str]
    genres: np.ndarray  # (items, genres) 0/1 float32
    users: np.ndarray  # (ratings,) user index
    items: np.ndarray  # (ratings,) item index
    timestamps: np.ndarray  # (ratings,)
    user_ids: list[str]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def before(self, at: float) -> MovieLens:
        """Only the ratings made before ``at`` (seconds since the epoch): the catalogue is
        the same, users left without a rating are gone."""
        kept = self.timestamps < at
        users = sorted(set(self.users[kept].tolist()))
        index = np.full(self.n_users, -1, np.int64)
        index[users] = np.arange(len(users))
        return MovieLens(
            item_ids=self.item_ids,
            titles=self.titles,
            genre_names=self.genre_names,
            genres=self.genres,
            users=index[self.users[kept]],
            items=self.items[kept],
            timestamps=self.timestamps[kept],
            user_ids=[self.user_ids[u] for u in users],
        )

    def catalog(self) -> list[dict[str, object]]:
        return [
            {
                "item_id": item,
                "title": title,
                "categories": [self.genre_names[c] for c in np.flatnonzero(row)],
            }
            for item, title, row in zip(self.item_ids, self.titles, self.genres, strict=True)
        ]


def dataset_dir() -> Traversable:
    try:
        root = resources.files("recbole")
    except ModuleNotFoundError as exc:
        raise DataMissingError(
            "MovieLens-100K comes from the recbole wheel: pip install --no-deps recbole==1.2.1 "
            "(`make install` does it)"
        ) from exc
    return root / "dataset_example" / DATASET


def _rows(name: str) -> list[list[str]]:
    text = (dataset_dir() / f"{DATASET}.{name}").read_text(encoding="utf-8")
    rows = list(csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[1:]  # the header names recbole's field types


def load() -> MovieLens:
    """Every rating is an implicit positive (the user chose to watch and rate it)."""
    item_rows = _rows("item")
    item_ids = [r[0] for r in item_rows]
    titles = [r[1] for r in item_rows]
    item_genres = [r[3].split() if len(r) > 3 else [] for r in item_rows]
    genre_names = sorted({g for gs in item_genres for g in gs})
    col = {g: c for c, g in enumerate(genre_names)}
    genres = np.zeros((len(item_ids), len(genre_names)), np.float32)
    for i, gs in enumerate(item_genres):
        genres[i, [col[g] for g in gs]] = 1.0
    item_index = {item: i for i, item in enumerate(item_ids)}
    inter = _rows("inter")
    user_ids = sorted({r[0] for r in inter}, key=int)
    user_index = {u: i for i, u in enumerate(user_ids)}
    return MovieLens(
        item_ids=item_ids,
        titles=titles,
        genre_names=genre_names,
        genres=genres,
        users=np.array([user_index[r[0]] for r in inter], np.int64),
        items=np.array([item_index[r[1]] for r in inter], np.int64),
        timestamps=np.array([float(r[3]) for r in inter], np.float64),
        user_ids=user_ids,
    )
