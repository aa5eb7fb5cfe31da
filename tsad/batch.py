"""Scoring files with a detector: `detect` (one file, whole) and `score` (files, folders or globs,
read in chunks, one Parquet/CSV out plus a run manifest).

Rows come in through tsad.ingest, so `detect` in causal mode, `score` and the live monitor keep,
reject and fill the same rows and give the same scores row for row. Bad rows (bad numbers, infinite
values, unparseable, repeated or out-of-order timestamps, a wrong number of fields) are left out
with their line number and reason: `detect` warns, `score` lists them in the manifest. A missing
reading gets the causal gap fill: the channel's last value, or its training mean before the
channel's first reading. Each batch of rows is scored after the last `context_rows` filled rows of
its series (`score_after`), so memory depends on the chunk size, not the input size. Offline
`detect` interpolates gaps instead (the batch form), since it reads the whole series anyway.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.artifact import directory_hash
from core.errors import UserError
from core.jobs.hashing import file_digest
from core.jobs.manifest import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, RunManifest, is_up_to_date, manifest_path_for
from core.jobs.progress import track
from core.jobs.tables import TableWriter, check_outputs_apart, expand_inputs
from tsad.datasets import Series
from tsad.detector import Scores, WindowDetector
from tsad.ingest import Accepted, CausalIngest, Layout, Rejected, Rows, RowScreen, describe, fill_gaps, read_rows

log = logging.getLogger(__name__)

MODES = ("causal", "offline")
SCORE_PARAMS_VERSION = 2  # 2: rows through tsad.ingest (the causal gap fill starts at the training mean)


# ------------------------------------------------------------------------------------ the model's side
def start_values(det: WindowDetector) -> np.ndarray:
    """Each channel's value before its first reading in the causal gap policy: its training mean."""
    return np.asarray(det.scaler_.mean, dtype=float)


def model_layout(det: WindowDetector, key_col: str | None = None) -> Layout:
    return Layout(list(det.channel_names_), det.time_col_ or None, key_col)


def causal_ingest(det: WindowDetector, key_col: str | None = None) -> CausalIngest:
    return CausalIngest(model_layout(det, key_col), start_values(det))


def score_after(det: WindowDetector, context: np.ndarray, values: np.ndarray) -> tuple[Scores, np.ndarray]:
    """Causal scores of new (filled, non-empty) rows given the filled rows before them; returns the
    new rows' scores and the context for the next call (the last `context_rows` rows)."""
    data = np.vstack([context, values]) if len(context) else values
    result = det.score(data)
    n = len(values)
    tail = dataclasses.replace(result, score=result.score[-n:], score_prob=result.score_prob[-n:],
                               is_anomaly=result.is_anomaly[-n:], contributions=result.contributions[-n:])
    return tail, data[max(0, len(data) - det.context_rows):]


class CausalScorer:
    """One series scored causally, a batch of raw rows at a time: its ingest state and scoring context."""

    def __init__(self, det: WindowDetector, key_col: str | None = None) -> None:
        self.det = det
        self.ingest = causal_ingest(det, key_col)
        self.context = np.empty((0, len(det.channel_names_)))

    def push(self, rows: Rows) -> tuple[Accepted, Scores | None, list[Rejected]]:
        accepted, rejected = self.ingest.push(rows)
        if not len(accepted):
            return accepted, None, rejected
        scores, self.context = score_after(self.det, self.context, accepted.values)
        return accepted, scores, rejected


# -------------------------------------------------------------------------------------------- tables
def accepted_series(det: WindowDetector, accepted: Accepted, name: str) -> Series:
    stamps = None
    if accepted.timestamps is not None:
        stamps = pd.DatetimeIndex(accepted.timestamps, name=det.time_col_)
    return Series(accepted.values, list(det.channel_names_), timestamps=stamps, name=name)


def scores_frame(series: Series, result: Scores, contributions: bool = True) -> pd.DataFrame:
    """The scores table: timestamp, values, score, score_prob, is_anomaly (+ each channel's share of
    the score when there are several channels and `contributions`)."""
    frame = pd.DataFrame(index=range(len(series)))
    if series.timestamps is not None:
        frame["timestamp"] = series.timestamps
    for i, name in enumerate(series.channels):
        frame[name] = series.values[:, i]
    frame["score"] = result.score
    frame["score_prob"] = result.score_prob
    frame["is_anomaly"] = result.is_anomaly
    if contributions and len(series.channels) > 1:
        for i, name in enumerate(series.channels):
            frame[f"contrib_{name}"] = result.contributions[:, i]
    return frame


# -------------------------------------------------------------------------------------------- detect
@dataclass
class Detection:
    series: Series  # the rows kept, gaps filled
    scores: Scores
    rejected: list[Rejected]


def detect_file(det: WindowDetector, path: str | Path, mode: str = "causal") -> Detection:
    """Score one whole file: causal (the same rows and scores as `score` and the monitor) or offline
    (every window covering a row; gaps interpolated). Rejected rows are returned, not scored."""
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; choose {' or '.join(MODES)}")
    layout = model_layout(det)
    screen: CausalIngest | RowScreen = causal_ingest(det) if mode == "causal" else RowScreen(layout)
    parts, rejected = [], []
    for rows, split_rejected in read_rows(path, layout, chunk_rows=None):
        accepted, bad = screen.push(rows)
        parts.append(accepted)
        rejected += split_rejected + bad
    rejected.sort(key=lambda r: r.line_no)
    accepted = Accepted.concat(parts, len(layout.channels), layout.time_col is not None)
    if not len(accepted):
        raise UserError(f"{path}: no rows to score" + (f"; {describe(rejected)}" if rejected else ""))
    if isinstance(screen, CausalIngest):
        if screen.counts.missing:
            log.warning("%s", screen.report())
    else:
        accepted.values, _ = fill_gaps(accepted.values)
    series = accepted_series(det, accepted, Path(path).name)
    return Detection(series, det.score(series.values, mode=mode), rejected)


# --------------------------------------------------------------------------------------------- score
def _params(series_col: str | None) -> dict[str, Any]:
    return {"series_col": series_col, "mode": "causal", "ingest": SCORE_PARAMS_VERSION}


def score_inputs(model_dir: Path, inputs: str | list[str], out: Path, series_col: str | None = None,
                 chunk_rows: int = 100_000, device: str = "auto", progress: bool = False) -> RunManifest:
    """Score every input file into `out`; the returned manifest lists inputs, counts and rejections."""
    det = WindowDetector.load(model_dir, device=device)
    files = expand_inputs(inputs)
    if out.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise UserError("--out must end in .parquet or .csv")
    check_outputs_apart([out, manifest_path_for(out)], list(files))
    if chunk_rows < det.window:
        raise UserError(f"--chunk-rows must be at least the window ({det.window})")
    manifest = RunManifest(job="tsad score", model_path=str(model_dir), model_hash=directory_hash(model_dir),
                           params=_params(series_col), outputs=[str(out)])
    with TableWriter(out) as writer:
        for path in track(files, "scoring files", progress):
            entry: dict[str, Any] = {"path": str(path), "sha256": file_digest(path), "rows": 0, "rejected": 0}
            manifest.inputs.append(entry)
            try:
                for frame in _score_file(det, path, series_col, chunk_rows, manifest, entry):
                    writer.write(frame)
            except UserError as exc:
                manifest.reject(str(path), str(exc))
                entry["rejected"] = "file"
                log.warning("rejected %s: %s", path, exc)
    manifest.rows_in = sum(e["rows"] for e in manifest.inputs)
    manifest.rows_out = writer.rows
    return manifest


def _score_file(det: WindowDetector, path: Path, series_col: str | None, chunk_rows: int, manifest: RunManifest,
                entry: dict[str, Any]) -> Iterator[pd.DataFrame]:
    scorers: dict[Any, CausalScorer] = {}
    for rows, rejected in read_rows(path, model_layout(det, series_col), chunk_rows):
        entry["rows"] += len(rows) + len(rejected)
        codes, keys = pd.factorize(rows.keys if series_col else np.zeros(len(rows)), use_na_sentinel=False)
        for code, key in enumerate(keys):
            scorer = scorers.setdefault(key, CausalScorer(det, series_col))
            accepted, scores, bad = scorer.push(rows.take(np.flatnonzero(codes == code)))
            rejected += bad
            if scores is not None:
                frame = scores_frame(accepted_series(det, accepted, str(path)), scores, contributions=False)
                frame.insert(0, "source", str(path))
                if series_col:
                    frame.insert(1, "series", key)
                yield frame
        for r in sorted(rejected, key=lambda r: r.line_no):
            manifest.reject(str(path), r.reason, r.line_no)
        entry["rejected"] += len(rejected)
        entry["gaps"] = {"missing": sum(s.ingest.counts.missing for s in scorers.values()),
                         "filled_start": sum(s.ingest.counts.filled_start for s in scorers.values())}


def score_job(model_dir: Path, inputs: str | list[str], out: Path, series_col: str | None = None,
              chunk_rows: int = 100_000, manifest_path: Path | None = None, skip_existing: bool = False,
              device: str = "auto", progress: bool = False) -> tuple[RunManifest | None, Path]:
    """`ae tsad score` as a library call: score, finish and write the manifest (status and exit code
    0 ok, 3 partial: some inputs or rows rejected). Returns (None, manifest path) when `skip_existing`
    finds the same model, inputs and options already produced `out`. A bad argument or input raises
    UserError and writes nothing; any other failure writes a failed manifest and re-raises."""
    manifest_path = Path(manifest_path) if manifest_path else manifest_path_for(out)
    params = _params(series_col)
    if skip_existing:
        fingerprints = [{"path": str(p), "sha256": file_digest(p)} for p in expand_inputs(inputs)]
        if is_up_to_date(manifest_path, directory_hash(model_dir), fingerprints, params):
            return None, manifest_path
    try:
        manifest = score_inputs(model_dir, inputs, out, series_col, chunk_rows, device=device, progress=progress)
    except UserError:
        raise
    except Exception as exc:  # a real failure: record it so a scheduler can see why
        failed = RunManifest(job="tsad score", model_path=str(model_dir), model_hash="", params=params)
        failed.reject("*", f"{type(exc).__name__}: {exc}")
        failed.finish(EXIT_FAILURE)
        if manifest_path.parent.is_dir():
            failed.write(manifest_path)
        raise
    manifest.finish(EXIT_PARTIAL if manifest.rejected else EXIT_OK)
    manifest.write(manifest_path)
    return manifest, manifest_path
