"""Scheduled batch scoring (`ae tsad score`): files, folders or globs in; one Parquet/CSV out.

Inputs are read in chunks and scored causally with a per-series context of the last `window − 1`
rows, so memory depends on the chunk size, not the input size, and the scores equal `detect`'s
causal scores. Bad rows (unparseable numbers or timestamps, out-of-order or repeated timestamps)
are rejected with their reason and row number in the manifest; a file without the model's columns
is rejected whole. A missing reading is filled with the series' last value (causal gap policy).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.artifact import directory_hash
from core.errors import UserError
from core.jobs.hashing import file_digest
from core.jobs.manifest import RunManifest
from core.jobs.progress import track
from core.jobs.tables import TableWriter, expand_inputs, iter_table_chunks
from tsad.detector import WindowDetector

log = logging.getLogger(__name__)


class _SeriesContext:
    def __init__(self) -> None:
        self.values: np.ndarray | None = None
        self.last_time: pd.Timestamp | None = None


def _fill_causal(values: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    frame = pd.DataFrame(values)
    if previous is not None and len(previous):
        frame = pd.concat([pd.DataFrame(previous[-1:]), frame], ignore_index=True).ffill().iloc[1:]
    return frame.ffill().bfill().fillna(0.0).to_numpy(dtype=float)


def score_inputs(model_dir: Path, inputs: str | list[str], out: Path, series_col: str | None = None,
                 chunk_rows: int = 100_000, device: str = "auto", progress: bool = False) -> RunManifest:
    det = WindowDetector.load(model_dir, device=device)
    files = expand_inputs(inputs)
    if out.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise UserError("--out must end in .parquet or .csv")
    if chunk_rows < det.window:
        raise UserError(f"--chunk-rows must be at least the window ({det.window})")
    manifest = RunManifest(job="tsad score", model_path=str(model_dir), model_hash=directory_hash(model_dir),
                           params={"series_col": series_col, "mode": "causal"}, outputs=[str(out)])
    with TableWriter(out) as writer:
        for path in track(files, "scoring files", progress):
            entry = {"path": str(path), "sha256": file_digest(path), "rows": 0, "rejected": 0}
            manifest.inputs.append(entry)
            contexts: dict[Any, _SeriesContext] = {}
            offset = 0
            try:
                for chunk in iter_table_chunks(path, chunk_rows):
                    n_chunk = len(chunk)
                    frames = _score_chunk(det, chunk, offset, path, series_col, contexts, manifest, entry)
                    for f in frames:
                        writer.write(f)
                    offset += n_chunk
                    entry["rows"] += n_chunk
            except UserError as exc:
                manifest.reject(str(path), str(exc))
                entry["rejected"] = "file"
                log.warning("rejected %s: %s", path, exc)
    manifest.rows_in = sum(e["rows"] for e in manifest.inputs)
    manifest.rows_out = writer.rows
    return manifest


def _score_chunk(det: WindowDetector, chunk: pd.DataFrame, offset: int, path: Path, series_col: str | None,
                 contexts: dict[Any, _SeriesContext], manifest: RunManifest, entry: dict) -> list[pd.DataFrame]:
    channels, time_col = det.channel_names_, det.time_col_
    needed = channels + ([time_col] if time_col else []) + ([series_col] if series_col else [])
    missing = [c for c in needed if c not in chunk.columns]
    if missing:
        raise UserError(f"missing column(s) {', '.join(missing)}")
    rows = np.arange(offset, offset + len(chunk)) + 2  # +1 for 1-based, +1 for the header line
    bad = np.zeros(len(chunk), dtype=bool)
    values = np.empty((len(chunk), len(channels)))
    reasons: dict[int, str] = {}
    for j, c in enumerate(channels):
        col = pd.to_numeric(chunk[c], errors="coerce")
        wrong = col.isna() & chunk[c].notna() & (chunk[c].astype(str).str.strip() != "")
        for r in np.flatnonzero(wrong.to_numpy()):
            reasons.setdefault(r, f"bad number {chunk[c].iloc[r]!r} in {c}")
        bad |= wrong.to_numpy()
        values[:, j] = col.to_numpy(dtype=float)
    times = None
    if time_col:
        times = pd.to_datetime(chunk[time_col], errors="coerce")
        wrong = times.isna().to_numpy()
        for r in np.flatnonzero(wrong):
            reasons.setdefault(r, f"unparseable timestamp {chunk[time_col].iloc[r]!r}")
        bad |= wrong
    keys = chunk[series_col].to_numpy() if series_col else np.zeros(len(chunk), dtype=int)
    frames = []
    for key in pd.unique(keys):
        idx = np.flatnonzero((keys == key) & ~bad)
        ctx = contexts.setdefault(key, _SeriesContext())
        if times is not None and len(idx):
            t = times.to_numpy()[idx]
            prev = np.concatenate([[np.datetime64(ctx.last_time) if ctx.last_time is not None else
                                    np.datetime64("NaT")], t[:-1]])
            running = np.maximum.accumulate(np.where(np.isnat(prev), np.datetime64("1677-09-22"), prev))
            order_bad = t <= running
            for r in idx[order_bad]:
                reasons.setdefault(r, "out-of-order or repeated timestamp")
            idx = idx[~order_bad]
        if not len(idx):
            continue
        v = _fill_causal(values[idx], ctx.values)
        data = np.vstack([ctx.values, v]) if ctx.values is not None else v
        result = det.score(data)
        n = len(idx)
        frame = pd.DataFrame(index=range(n))
        frame["source"] = str(path)
        if series_col:
            frame["series"] = key
        if times is not None:
            frame["timestamp"] = times.to_numpy()[idx]
            ctx.last_time = pd.Timestamp(frame["timestamp"].iloc[-1])
        for j, c in enumerate(channels):
            frame[c] = v[:, j]
        frame["score"] = result.score[-n:]
        frame["score_prob"] = result.score_prob[-n:]
        frame["is_anomaly"] = result.is_anomaly[-n:]
        frames.append(frame)
        ctx.values = data[max(0, len(data) - det.context_rows):]
    for r in sorted(reasons):
        manifest.reject(str(path), reasons[r], int(rows[r]))
    if reasons:
        entry["rejected"] += len(reasons)
    return frames
