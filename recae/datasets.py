"""Ratings loaders: MovieLens 100K (with its official folds), MovieLens 1M, any ratings CSV/Parquet.

A ratings frame has columns `user`, `item`, `rating` (float) and optionally `timestamp` (int64).
Duplicate (user, item) pairs keep the latest rating (by timestamp, else the last row) and the count
dropped is logged and kept in `frame.attrs["duplicates_dropped"]`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError

log = logging.getLogger(__name__)

ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western"]
COLUMNS = ["user", "item", "rating", "timestamp"]


def _need(path: Path, dataset: str) -> Path:
    if not path.is_file():
        from data.registry import registry

        url = registry()[dataset]["sources"][0]["url"]
        raise UserError(f"{path} is missing: download {url}, unpack it under {path.parent.parent} "
                        f"(or set AE_DATA_DIR), or run `ae data fetch {dataset}`")
    return path


def _read_tab(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", names=COLUMNS, dtype={"user": np.int64, "item": np.int64,
                                                              "rating": np.float64, "timestamp": np.int64})
    return frame


def load_ml100k(data_dir: str | Path) -> pd.DataFrame:
    return _read_tab(_need(Path(data_dir) / "ml-100k" / "u.data", "ml-100k"))


def load_ml100k_fold(data_dir: str | Path, fold: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    if fold not in ML100K_FOLDS:
        raise UserError(f"unknown ML-100K fold {fold!r}; choose one of {', '.join(ML100K_FOLDS)}")
    root = Path(data_dir) / "ml-100k"
    return (_read_tab(_need(root / f"{fold}.base", "ml-100k")), _read_tab(_need(root / f"{fold}.test", "ml-100k")))


def load_ml100k_items(data_dir: str | Path) -> pd.DataFrame:
    path = _need(Path(data_dir) / "ml-100k" / "u.item", "ml-100k")
    raw = pd.read_csv(path, sep="|", header=None, encoding="latin-1")
    flags = raw.iloc[:, 5:24].to_numpy(dtype=bool)
    genres = ["|".join(g for g, f in zip(ML100K_GENRES, row) if f) for row in flags]
    return pd.DataFrame({"item": raw[0].astype(np.int64), "title": raw[1].astype(str), "genres": genres})


def _read_dat(path: Path, names: list[str]) -> pd.DataFrame:
    lines = path.read_text(encoding="latin-1").splitlines()
    rows = [line.split("::") for line in lines if line.strip()]
    bad = next((i for i, r in enumerate(rows) if len(r) != len(names)), None)
    if bad is not None:
        raise UserError(f"{path}: line {bad + 1} has {len(rows[bad])} fields, expected {len(names)}")
    return pd.DataFrame(rows, columns=names)


def load_ml1m(data_dir: str | Path) -> pd.DataFrame:
    frame = _read_dat(_need(Path(data_dir) / "ml-1m" / "ratings.dat", "ml-1m"), COLUMNS)
    try:
        return frame.astype({"user": np.int64, "item": np.int64, "rating": np.float64, "timestamp": np.int64})
    except ValueError as exc:
        raise UserError(f"ml-1m ratings.dat has a non-numeric field: {exc}") from None


def load_ml1m_items(data_dir: str | Path) -> pd.DataFrame:
    frame = _read_dat(_need(Path(data_dir) / "ml-1m" / "movies.dat", "ml-1m"), ["item", "title", "genres"])
    return frame.astype({"item": np.int64})


def load_ratings_file(path: str | Path, user_col: str = "user", item_col: str = "item", rating_col: str = "rating",
                      time_col: str | None = None) -> pd.DataFrame:
    from core.jobs.tables import read_table

    path = Path(path)
    frame = read_table(path, "ratings file")
    wanted = [user_col, item_col, rating_col] + ([time_col] if time_col else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        available = ", ".join(map(str, frame.columns))
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; available: {available}")
    out = pd.DataFrame({"user": frame[user_col], "item": frame[item_col]})
    ratings = pd.to_numeric(frame[rating_col], errors="coerce")
    bad = ratings.isna() & frame[rating_col].notna() | ratings.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{path}: rating {frame[rating_col].iloc[i]!r} on row {i + 1} is not a number")
    out["rating"] = ratings.astype(float)
    if out["user"].isna().any() or out["item"].isna().any():
        raise UserError(f"{path}: empty user or item ids")
    if time_col:
        ts = pd.to_numeric(frame[time_col], errors="coerce")
        if ts.isna().any():
            ts = pd.to_datetime(frame[time_col], errors="coerce")
            if ts.isna().any():
                raise UserError(f"{path}: column {time_col!r} has unparseable timestamps")
            ts = ts.astype("int64") // 10**9
        out["timestamp"] = ts.astype(np.int64)
    return drop_duplicates(out)


def drop_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the latest rating of each (user, item) pair and report how many were dropped."""
    if "timestamp" in frame:
        frame = frame.sort_values("timestamp", kind="stable")
    before = len(frame)
    frame = frame.drop_duplicates(["user", "item"], keep="last").sort_index().reset_index(drop=True)
    dropped = before - len(frame)
    if dropped:
        log.warning("dropped %d duplicate (user, item) ratings, keeping the latest of each", dropped)
    frame.attrs["duplicates_dropped"] = dropped
    return frame


def dataset_root(data_dir: str | Path | None = None) -> Path:
    """`data_dir`, else the datasets folder ($AE_DATA_DIR, or the project's data/)."""
    from data.registry import data_dir as default_dir

    return Path(data_dir) if data_dir is not None else default_dir()


def ensure_dataset(name: str, root: str | Path | None = None) -> None:
    """Fail early, saying what to download and where, unless every file of `name` is under `root`."""
    from data.registry import ensure_dataset as ensure

    ensure(name, root=dataset_root(root))


_NAMED = {"ml-100k": (load_ml100k, load_ml100k_items), "ml-1m": (load_ml1m, load_ml1m_items)}
NAMED_DATASETS = tuple(_NAMED)  # read by name from the datasets folder, titles included


def resolve_dataset(name: str, data_dir: str | Path | None = None, user_col: str = "user", item_col: str = "item",
                    rating_col: str = "rating", time_col: str | None = None) -> pd.DataFrame:
    """A named dataset (checked complete first) or a ratings file with the given columns."""
    if name in _NAMED:
        root = dataset_root(data_dir)
        ensure_dataset(name, root)
        return _NAMED[name][0](root)
    return load_ratings_file(name, user_col, item_col, rating_col, time_col)


def load_items(name: str, data_dir: str | Path | None = None) -> pd.DataFrame | None:
    """Titles for a known dataset when they are available, else None (ids are shown instead)."""
    if name not in _NAMED:
        return None
    try:
        return _NAMED[name][1](dataset_root(data_dir))
    except UserError:
        return None
