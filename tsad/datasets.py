"""Series loaders: NAB, SKAB, NASA MSL and any CSV/Parquet with a time column and numeric columns.

Rows come in through tsad.ingest (number and timestamp rules, time order, the gap policy in its
batch form). Training and benchmark data must be clean: the first bad row is an error naming it
(NAB keeps its few repeated or reordered timestamps as published).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError
from core.jsontext import parse_json
from tsad.ingest import MAX_GAP, Layout, Rows, fill_gaps, screen_strict

log = logging.getLogger(__name__)

TIME_NAMES = ("timestamp", "datetime", "time", "date")
LABEL_NAMES = ("label", "anomaly", "is_anomaly", "changepoint")
__all__ = ["MAX_GAP", "Series", "fill_gaps", "frame_to_series", "load_table"]


@dataclass
class Series:
    values: np.ndarray  # (n, channels) float64
    channels: list[str]
    timestamps: pd.DatetimeIndex | None = None
    labels: np.ndarray | None = None
    name: str = "series"
    windows: list[tuple[int, int]] = field(default_factory=list)  # labelled anomaly windows, row ranges
    gap_report: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values)


def _read_frame(path: Path) -> pd.DataFrame:
    from core.jobs.tables import read_table

    return read_table(path, "data file")


def frame_to_series(frame: pd.DataFrame, name: str, time_col: str | None = None,
                    value_cols: list[str] | None = None, label_col: str | None = None,
                    max_gap: int = MAX_GAP, allow_repeats: bool = False) -> Series:
    """Validate a table and turn it into a Series (shared by files, chunks and user data)."""
    cols = list(frame.columns)
    for c in [time_col, label_col, *(value_cols or [])]:
        if c is not None and c not in cols:
            raise UserError(f"{name}: no column {c!r}; columns are {', '.join(map(str, cols))}")
    if time_col is None:
        time_col = next((c for c in cols if str(c).strip().lower() in TIME_NAMES), None)
    if label_col is None:
        label_col = next((c for c in cols if str(c).strip().lower() == "label"), None)
    skip = {time_col, label_col, *[c for c in cols if str(c).strip().lower() in LABEL_NAMES]}
    if value_cols is None:
        value_cols = [c for c in cols if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]
        if not value_cols:
            raise UserError(f"{name}: no numeric value column found (columns: {', '.join(map(str, cols))})")
    layout = Layout(list(value_cols), time_col)
    accepted = screen_strict(Rows.from_frame(layout, frame), layout, name, check_order=not allow_repeats)
    values, report = fill_gaps(accepted.values, max_gap)
    timestamps = None if time_col is None else pd.DatetimeIndex(accepted.timestamps, name=time_col)
    labels = None
    if label_col is not None:
        labels = _labels(frame[label_col], name)
    return Series(values=values, channels=[str(c) for c in value_cols], timestamps=timestamps, labels=labels,
                  name=name, gap_report=report)


def _labels(column: pd.Series, name: str) -> np.ndarray:
    """0/1 labels; anything else (text, an empty cell, 2) is refused naming its row, never read as 0."""
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isin(numbers, (0.0, 1.0)))
    if len(bad):
        cell = column.iloc[bad[0]]
        shown = repr(cell) if isinstance(cell, str) else "an empty cell" if pd.isna(cell) else f"{cell:g}"
        raise UserError(f"{name}: label {shown} on row {bad[0] + 1} is not 0 or 1 (column {column.name!r})")
    return numbers.astype(np.int8)


def load_table(path: str | Path, time_col: str | None = None, value_cols: list[str] | None = None,
               label_col: str | None = None, max_gap: int = MAX_GAP, allow_repeats: bool = False) -> Series:
    path = Path(path)
    return frame_to_series(_read_frame(path), path.name, time_col, value_cols, label_col, max_gap, allow_repeats)


# ------------------------------------------------------------------------------------------ NAB
def nab_windows(data_dir: Path) -> dict[str, list[list[str]]]:
    path = Path(data_dir) / "nab" / "labels" / "combined_windows.json"
    if not path.is_file():
        raise UserError(f"NAB labels not found at {path}")
    return parse_json(path.read_bytes(), f"NAB labels {path}")


def load_nab(data_dir: str | Path, relative_name: str, windows: dict | None = None) -> Series:
    data_dir = Path(data_dir)
    windows = windows if windows is not None else nab_windows(data_dir)
    series = load_table(data_dir / "nab" / "data" / relative_name, time_col="timestamp", value_cols=["value"],
                        allow_repeats=True)  # a few NAB files repeat or reorder timestamps: keep rows as published
    series.name = relative_name
    ts = series.timestamps
    labels = np.zeros(len(series), dtype=np.int8)
    rows = []
    for start, end in windows.get(relative_name, []):
        lo = int(ts.searchsorted(pd.Timestamp(start), side="left"))
        hi = int(ts.searchsorted(pd.Timestamp(end), side="right")) - 1
        labels[lo:hi + 1] = 1
        rows.append((lo, hi))
    series.labels, series.windows = labels, rows
    return series


def iter_nab(data_dir: str | Path) -> Iterator[Series]:
    data_dir = Path(data_dir)
    windows = nab_windows(data_dir)
    for key in sorted(windows):
        yield load_nab(data_dir, key, windows)


# ----------------------------------------------------------------------------------------- SKAB
def iter_skab(data_dir: str | Path) -> Iterator[Series]:
    root = Path(data_dir) / "skab" / "data"
    if not root.is_dir():
        raise UserError(f"SKAB not found at {root}")
    for folder in ("valve1", "valve2", "other"):
        for path in sorted((root / folder).glob("*.csv"), key=lambda p: (len(p.stem), p.stem)):
            frame = pd.read_csv(path, sep=";")
            s = frame_to_series(frame.drop(columns=["changepoint"]), f"{folder}/{path.name}", time_col="datetime",
                                label_col="anomaly")
            yield s


# ------------------------------------------------------------------------------------------ MSL
@dataclass
class Channel:
    name: str
    train: Series
    test: Series


def iter_msl(data_dir: str | Path) -> Iterator[Channel]:
    root = Path(data_dir) / "msl"
    labels_path = root / "labeled_anomalies.csv"
    if not labels_path.is_file():
        raise UserError(f"MSL labels not found at {labels_path}")
    table = pd.read_csv(labels_path)
    table = table[table["spacecraft"] == "MSL"].sort_values("chan_id")
    for _, row in table.iterrows():
        chan = row["chan_id"]
        train = np.load(root / "train" / f"{chan}.npy", allow_pickle=False).astype(float)
        test = np.load(root / "test" / f"{chan}.npy", allow_pickle=False).astype(float)
        labels = np.zeros(len(test), dtype=np.int8)
        spans = json.loads(row["anomaly_sequences"])
        for lo, hi in spans:
            labels[lo:hi + 1] = 1
        names = ["telemetry"] + [f"cmd{i}" for i in range(1, train.shape[1])]
        yield Channel(chan, Series(train, names, name=f"{chan}/train"),
                      Series(test, names, labels=labels, name=f"{chan}/test", windows=[tuple(s) for s in spans]))
