"""Ratings loaders: MovieLens 100K (with its official folds), MovieLens 1M, any ratings CSV/Parquet.

A ratings frame has columns `user`, `item`, `rating` (float) and optionally `timestamp` (int64).
Ratings must be finite and positive (0 means "unrated" in the user×item matrix). MovieLens declares
its scale (1-5) and a rating outside it is rejected; a ratings file's scale is inferred from its
ratings (or checked against `scale` when one is given) and reported in the log.
User and item ids of a ratings file are read as written: a column whose every id is a plain integer
literal (no sign other than `-`, no leading zeros) gives int ids, any other column keeps its ids as
strings, so `1.5` or `007` round-trip exactly.
Duplicate (user, item) pairs keep the latest rating (by timestamp, else the last row) and the count
dropped is logged and kept in `frame.attrs["duplicates_dropped"]`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError

log = logging.getLogger(__name__)

ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western"]
COLUMNS = ["user", "item", "rating", "timestamp"]
MOVIELENS_SCALE = (1.0, 5.0)
_INT_ID = re.compile(r"-?(0|[1-9][0-9]*)")


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
    check_ratings(frame, str(path), MOVIELENS_SCALE)
    return frame


def _show(value: Any) -> Any:
    """A cell as the user wrote it (numpy scalars as plain Python values, for messages)."""
    return value.item() if isinstance(value, np.generic) else value


def check_ratings(frame: pd.DataFrame, source: str, scale: tuple[float, float] | None = None,
                  values: pd.Series | None = None) -> tuple[float, float]:
    """Reject non-finite, non-positive and (with `scale`) out-of-scale ratings, naming the first bad
    row (1-based data row; `values` are the ratings as written, for the message). Returns the scale:
    `scale` when declared, else the ratings' own min-max (logged)."""
    ratings = frame["rating"].to_numpy(dtype=np.float64)
    shown = frame["rating"] if values is None else values

    def first(mask: np.ndarray) -> tuple[int, Any]:
        i = int(np.flatnonzero(mask)[0])
        return i + 1, _show(shown.iloc[i])

    bad = ~np.isfinite(ratings)
    if bad.any():
        row, v = first(bad)
        raise UserError(f"{source}: rating {v!r} on row {row} is not a finite number")
    bad = ratings <= 0
    if bad.any():
        row, v = first(bad)
        raise UserError(f"{source}: rating {v!r} on row {row} is not positive (0 means unrated; "
                        "shift the scale so that the lowest rating is above 0)")
    if scale is not None:
        lo, hi = scale
        bad = (ratings < lo) | (ratings > hi)
        if bad.any():
            row, v = first(bad)
            raise UserError(f"{source}: rating {v!r} on row {row} is outside the scale {lo:g}-{hi:g}")
        return float(lo), float(hi)
    lo, hi = (float(ratings.min()), float(ratings.max())) if len(ratings) else (0.0, 0.0)
    log.info("%s: rating scale %g-%g inferred from the ratings (predictions are clipped to it)", source, lo, hi)
    return lo, hi


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
        frame = frame.astype({"user": np.int64, "item": np.int64, "rating": np.float64, "timestamp": np.int64})
    except ValueError as exc:
        raise UserError(f"ml-1m ratings.dat has a non-numeric field: {exc}") from None
    check_ratings(frame, "ml-1m ratings.dat", MOVIELENS_SCALE)
    return frame


def load_ml1m_items(data_dir: str | Path) -> pd.DataFrame:
    frame = _read_dat(_need(Path(data_dir) / "ml-1m" / "movies.dat", "ml-1m"), ["item", "title", "genres"])
    return frame.astype({"item": np.int64})


def _id_column(raw: pd.Series) -> pd.Series:
    """Ids as written: ints when every id is an integer literal, else the strings themselves."""
    if pd.api.types.is_integer_dtype(raw.dtype):
        return raw.astype(np.int64)
    if pd.api.types.is_float_dtype(raw.dtype):  # Parquet floats: integral ones are ints, others keep repr
        if raw.isna().any():
            return raw
        vals = raw.to_numpy()
        if np.all(np.isfinite(vals)) and np.all(vals == np.round(vals)):
            return pd.Series(vals.astype(np.int64), index=raw.index)
        return raw.map(repr)
    text = raw.map(lambda v: v if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())
    if text.isna().any():
        return text
    if all(_INT_ID.fullmatch(v) for v in text):
        try:
            return text.astype(np.int64)
        except (OverflowError, ValueError):  # beyond int64: keep the strings
            return text.astype(object)
    return text.astype(object)


def _read_ratings_table(path: Path, id_cols: list[str], what: str = "ratings file") -> pd.DataFrame:
    """The file with id columns read as text (CSV), so pandas never turns `1.5` into a float id."""
    from core.jobs.tables import read_table, sniff_separator

    frame = read_table(path, what)
    present = [c for c in id_cols if c in frame.columns]
    if present and path.suffix.lower() not in (".parquet", ".pq"):
        try:
            text = pd.read_csv(path, sep=sniff_separator(path), usecols=present, dtype=str)
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} cannot be read: {str(exc).splitlines()[0]}") from None
        for c in present:
            frame[c] = text[c].to_numpy(dtype=object)
    return frame


def load_ratings_file(path: str | Path, user_col: str = "user", item_col: str = "item", rating_col: str = "rating",
                      time_col: str | None = None, scale: tuple[float, float] | None = None) -> pd.DataFrame:
    """A ratings CSV/Parquet file (see the module notes on ids and the scale); `scale` declares the
    rating scale (ratings outside it are rejected), else it is inferred and logged."""
    path = Path(path)
    frame = _read_ratings_table(path, [user_col, item_col])
    wanted = [user_col, item_col, rating_col] + ([time_col] if time_col else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        available = ", ".join(map(str, frame.columns))
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; available: {available}")
    out = pd.DataFrame({"user": _id_column(frame[user_col]), "item": _id_column(frame[item_col])})
    ratings = pd.to_numeric(frame[rating_col], errors="coerce")
    bad = ratings.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{path}: rating {_show(frame[rating_col].iloc[i])!r} on row {i + 1} is not a number")
    out["rating"] = ratings.astype(float)
    out.attrs["scale"] = check_ratings(out, str(path), scale, values=frame[rating_col])
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
                    rating_col: str = "rating", time_col: str | None = None,
                    scale: tuple[float, float] | None = None) -> pd.DataFrame:
    """A named dataset (checked complete first; its scale is its own) or a ratings file with the
    given columns and optional declared `scale`."""
    if name in _NAMED:
        root = dataset_root(data_dir)
        ensure_dataset(name, root)
        return _NAMED[name][0](root)
    return load_ratings_file(name, user_col, item_col, rating_col, time_col, scale)


def load_titles_file(path: str | Path, item_col: str = "item", title_col: str = "title") -> pd.DataFrame:
    """Item titles for a ratings file's items: a CSV/Parquet file with an item id column (read as
    the ratings' ids are) and a title column. Returns columns `item`, `title`."""
    path = Path(path)
    frame = _read_ratings_table(path, [item_col], "items file")
    missing = [c for c in (item_col, title_col) if c not in frame.columns]
    if missing:
        available = ", ".join(map(str, frame.columns))
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; available: {available}")
    items = pd.DataFrame({"item": _id_column(frame[item_col]), "title": frame[title_col]})
    items = items[items["item"].notna() & items["title"].notna()]
    if items.empty:
        raise UserError(f"{path}: no item has a title")
    items["title"] = items["title"].astype(str)
    return items.reset_index(drop=True)


def load_items(name: str, data_dir: str | Path | None = None) -> pd.DataFrame | None:
    """Titles for a known dataset when they are available, else None (ids are shown instead)."""
    if name not in _NAMED:
        return None
    try:
        return _NAMED[name][1](dataset_root(data_dir))
    except UserError:
        return None
