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
Repeated timestamps follow the duplicates policy of tsad.ingest (`--duplicates`, default first).

Scheduled scoring with memory (`score --state DIR`). Without a state each run starts its series
from nothing, so the first `window − 1` rows (+ `smooth − 1`) of every run get no score, and a run
shorter than that (hourly files of 12 rows, a window of 288) scores nothing. With a state, each
series' scorer is saved after the run and restored by the next one: the causal ingest (last
timestamp and line, each channel's last value, a row held back by `--duplicates last|drop`) and
the last `context_rows` filled rows. Run N+1 then scores its first rows with run N's history, and
running one file per run gives the scores of one run over the files joined together.
- Series key: `--series-col` values when a file holds several series, else `--series NAME`
  (default "default"): one state series per run, all inputs of the run being consecutive parts of
  it in the order given (folders and globs in sorted order). Keys are explicit rather than derived
  from file names, because scheduled files are usually named by date and would each become a
  series of their own.
- Layout: DIR holds one `state.json` (version, the model's directory hash, window, channels, each
  series' scorer), written with core.jobs.atomic.atomic_dir after the output was committed, so a
  failed run leaves the old state, and the state never runs ahead of the outputs. A state written
  with another model is refused (its scores would not continue the same series).
- With `--adapt` (tsad.adapt) each series also keeps its adapter (recent rows, verdicts, round
  count) in `state.json` and its adapted weights in `adapted.safetensors` beside it, in the same
  folder replaced in one rename; a state written with `--adapt` is refused without it and the
  other way round.
- Rows at or before a series' last timestamp when the run started were scored by an earlier run:
  they are skipped and counted as `already_scored` (not rejected: re-reading yesterday's files with
  the same glob is normal for a scheduler). A held-back row (`last`/`drop`) is passed on at the end
  of each file, so a repeat in the next file cannot replace it and is left out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from core.jobs.atomic import atomic_dir
from core.jobs.manifest import RunManifest
from core.jsontext import parse_json
from tsad.adapt import OnlineAdapter, concat_scores, prefixed, unprefixed
from tsad.datasets import Series
from tsad.detector import Scores, WindowDetector
from tsad.ingest import (
    DEFAULT_DUPLICATES,
    SEEN,
    Accepted,
    CausalIngest,
    GapCounts,
    Layout,
    Rejected,
    Rows,
    RowScreen,
    describe,
    fill_gaps,
    read_rows,
)

log = logging.getLogger(__name__)

MODES = ("causal", "offline")
# 2: rows through tsad.ingest (the causal gap fill starts at the training mean); 3: --duplicates
SCORE_PARAMS_VERSION = 3
STATE_VERSION = 1
STATE_FILE = "state.json"
ADAPTED_FILE = "adapted.safetensors"  # --adapt: every series' adapted weights, "<n>/<parameter>"
DEFAULT_SERIES = "default"


# ------------------------------------------------------------------------------------ the model's side
def start_values(det: WindowDetector) -> np.ndarray:
    """Each channel's value before its first reading in the causal gap policy: its training mean."""
    return np.asarray(det.scaler_.mean, dtype=float)


def model_layout(det: WindowDetector, key_col: str | None = None) -> Layout:
    return Layout(list(det.channel_names_), det.time_col_ or None, key_col)


def causal_ingest(det: WindowDetector, key_col: str | None = None, duplicates: str = DEFAULT_DUPLICATES,
                  source: str = "input") -> CausalIngest:
    return CausalIngest(model_layout(det, key_col), start_values(det), duplicates, source)


def score_after(det: WindowDetector, context: np.ndarray, values: np.ndarray, alerting: dict[str, Any],
                adapter: OnlineAdapter | None = None) -> tuple[Scores, np.ndarray, dict[str, Any]]:
    """Causal scores and alerts of new (filled, non-empty) rows given the filled rows before them
    and the alerting state they left; returns the new rows' scores, the context for the next call
    (the last `context_rows` rows) and the next alerting state. With an `adapter` (--adapt), rows
    are scored with the series' adapted weights, and a round of adaptation runs exactly where its
    row count falls, whatever the batch boundaries."""
    if adapter is None:
        return _score_after(det, context, values, alerting)
    parts, start = [], 0
    while start < len(values):
        end = min(len(values), start + adapter.rows_to_round())
        with adapter.applied():
            part, context, alerting = _score_after(det, context, values[start:end], alerting)
        adapter.observe(values[start:end], part.is_anomaly)
        parts.append(part)
        start = end
    return concat_scores(parts), context, alerting


def _score_after(det: WindowDetector, context: np.ndarray, values: np.ndarray,
                 alerting: dict[str, Any]) -> tuple[Scores, np.ndarray, dict[str, Any]]:
    data = np.vstack([context, values]) if len(context) else values
    result = det.raw_score(data)
    n = len(values)
    tail = dataclasses.replace(result, score=result.score[-n:], score_prob=result.score_prob[-n:],
                               is_anomaly=result.is_anomaly[-n:], contributions=result.contributions[-n:])
    tail, alerting = det.alert(tail, values, alerting)
    return tail, data[max(0, len(data) - det.context_rows):], alerting


def stream_score(det: WindowDetector, values: np.ndarray, adapt: bool = False) -> Scores:
    """A whole (filled) series scored as `score` and `monitor` score it, from its first row:
    `det.score` without adaptation, row-exact rounds of it with."""
    if not adapt:
        return det.score(values)
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    result, _, _ = score_after(det, np.empty((0, values.shape[1])), values, det.alerting_.fresh_state(),
                               OnlineAdapter(det))
    return result


class CausalScorer:
    """One series scored causally, a batch of raw rows at a time: its ingest state and scoring
    context, both plain JSON (`state`/`restore`), so a later run can go on where this one stopped."""

    def __init__(self, det: WindowDetector, key_col: str | None = None, duplicates: str = DEFAULT_DUPLICATES,
                 source: str = "input", adapt: bool = False) -> None:
        self.det = det
        self.ingest = causal_ingest(det, key_col, duplicates, source)
        self.context = np.empty((0, len(det.channel_names_)))
        self.alerting = det.alerting_.fresh_state()
        self.history = 0  # rows accepted by this series so far, earlier runs included
        self.adapter = OnlineAdapter(det) if adapt else None

    def push(self, rows: Rows) -> tuple[Accepted, Scores | None, list[Rejected]]:
        """Screen, fill and score a batch; on a bad input (UserError) the scorer is left as it was, so
        a saved state never runs ahead of the rows written."""
        before = (self.ingest.state(), self.context, self.history, self.alerting)
        try:
            accepted, rejected = self.ingest.push(rows)
            return accepted, self._score(accepted), rejected
        except UserError:
            self.ingest.restore(before[0])
            self.context, self.history, self.alerting = before[1], before[2], before[3]
            raise

    def flush(self) -> tuple[Accepted, Scores | None]:
        """The end of an input: score the row held back by `--duplicates last|drop`, if any."""
        accepted = self.ingest.flush()
        return accepted, self._score(accepted)

    def _score(self, accepted: Accepted) -> Scores | None:
        if not len(accepted):
            return None
        scores, self.context, self.alerting = score_after(self.det, self.context, accepted.values, self.alerting,
                                                          self.adapter)
        self.history += len(accepted)
        return scores

    def state(self) -> dict[str, Any]:
        state = {"ingest": self.ingest.state(), "context": self.context.tolist(), "history": self.history,
                 "alerting": self.alerting}
        if self.adapter is not None:
            state["adapt"] = self.adapter.state()
        return state

    def restore(self, state: dict[str, Any], weights: dict[str, Any] | None = None, where: str = "state") -> None:
        """Continue from `state()`; `weights`: the series' adapted weights saved beside it (--adapt)."""
        if (self.adapter is None) != ("adapt" not in state):
            raise UserError(f"{where} was written {'with' if 'adapt' in state else 'without'} --adapt; run "
                            f"{'with' if 'adapt' in state else 'without'} it, or use a new state")
        if self.adapter is not None:
            self.adapter.restore(state["adapt"], weights, where)
        self.ingest.restore(state["ingest"])
        context = np.asarray(state["context"], dtype=float)
        self.context = context.reshape(len(context), len(self.det.channel_names_))
        self.history = int(state.get("history", len(context)))
        self.alerting = state.get("alerting") or self.det.alerting_.fresh_state()
        self.ingest.resume()
        self.ingest.counts = GapCounts()  # the manifest counts this run's fills


class ScoreState:
    """`score --state DIR`: every series' CausalScorer state between runs (see the module docstring)."""

    def __init__(self, path: Path, det: WindowDetector, model_hash: str, duplicates: str,
                 adapt: bool = False) -> None:
        self.path, self.det, self.model_hash, self.duplicates = Path(path), det, model_hash, duplicates
        self.adapt = adapt
        self.saved: dict[str, dict[str, Any]] = {}
        self.saved_weights: dict[str, dict[str, Any]] = {}
        file = self.path / STATE_FILE
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--state {self.path} is a file; give a directory (it holds {STATE_FILE})")
        if self.path.is_dir() and not file.is_file():
            if any(self.path.iterdir()):
                raise UserError(f"--state {self.path} is a directory without {STATE_FILE}; give an empty or new "
                                f"directory (the state replaces its contents)")
            return
        if not file.is_file():
            return
        try:
            text = file.read_bytes()
        except OSError as exc:
            raise UserError(f"state {file} is unreadable: {exc.strerror}") from None
        raw = parse_json(text, f"state {file} is unreadable:")
        if not isinstance(raw, dict) or not isinstance(raw.get("series", {}), dict):
            raise UserError(f"state {file} is unreadable: not a state written by `ae tsad score`")
        if raw.get("version") != STATE_VERSION:
            raise UserError(f"state {file} has version {raw.get('version')}, expected {STATE_VERSION}")
        if raw.get("model_hash") != model_hash:
            raise UserError(f"state {self.path} was written with another model ({raw.get('model_path')}, hash "
                            f"{str(raw.get('model_hash'))[:12]}); its history does not continue this model's "
                            f"series: use a new --state directory")
        self.saved = raw.get("series", {})
        adapted = {isinstance(v, dict) and "adapt" in v for v in self.saved.values()}
        if adapted and adapted != {adapt}:  # checked before any output is written
            was = "with" if not adapt else "without"
            raise UserError(f"state {self.path} was written {was} --adapt; run {was} it, or use a new --state "
                            f"directory")
        names = raw.get("adapted_series", [])
        if names:
            self.saved_weights = self._read_weights(file.parent / ADAPTED_FILE, names)

    def _read_weights(self, path: Path, names: list[str]) -> dict[str, dict[str, Any]]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            by_index = unprefixed(load_file(path))
        except (OSError, SafetensorError) as exc:
            raise UserError(f"state {self.path}: its adapted weights {path.name} cannot be read ({exc})") from None
        return {names[int(i)]: w for i, w in by_index.items() if i.isdigit() and int(i) < len(names)}

    def scorer(self, key: str, key_col: str | None, source: str) -> CausalScorer:
        scorer = CausalScorer(self.det, key_col, self.duplicates, source, adapt=self.adapt)
        if key in self.saved:
            scorer.restore(self.saved[key], self.saved_weights.get(key), f"state {self.path} (series {key!r})")
        return scorer

    def save(self, scorers: dict[str, CausalScorer], model_path: str) -> None:
        weights = {key: s.adapter.weights for key, s in scorers.items()
                   if s.adapter is not None and s.adapter.weights is not None}
        self.save_states({key: s.state() for key, s in scorers.items()}, model_path, weights)

    def save_states(self, states: dict[str, dict[str, Any]], model_path: str,
                    weights: dict[str, dict[str, Any]] | None = None) -> None:
        """Write every series' scorer state (`CausalScorer.state()`) and adapted weights (--adapt),
        keeping the series this run left alone; one folder, replaced in one rename."""
        from safetensors.torch import save_file

        series = {**self.saved, **states}
        adapted = {**self.saved_weights, **(weights or {})}
        names = sorted(adapted)
        doc = {"version": STATE_VERSION, "model_path": model_path, "model_hash": self.model_hash,
               "window": self.det.window, "context_rows": self.det.context_rows,
               "channels": list(self.det.channel_names_), "series": series, "adapted_series": names}
        with atomic_dir(self.path) as tmp:
            if names:
                save_file(prefixed({str(i): adapted[name] for i, name in enumerate(names)}), str(tmp / ADAPTED_FILE))
            (tmp / STATE_FILE).write_text(json.dumps(doc))


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
    frame["score_prob"] = np.where(np.isfinite(result.score), result.score_prob, np.nan)  # empty like the score
    if result.alert_score is not None:  # adaptive or spot alerting: what decided is_anomaly
        frame["alert_score"] = result.alert_score
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


def detect_file(det: WindowDetector, path: str | Path, mode: str = "causal",
                duplicates: str = DEFAULT_DUPLICATES) -> Detection:
    """Score one whole file: causal (the same rows and scores as `score` and the monitor) or offline
    (every window covering a row; gaps interpolated). Rejected rows are returned, not scored."""
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; choose {' or '.join(MODES)}")
    layout = model_layout(det)
    screen: CausalIngest | RowScreen = (causal_ingest(det, None, duplicates, str(path)) if mode == "causal"
                                        else RowScreen(layout, duplicates=duplicates, source=str(path)))
    parts, rejected = [], []
    for rows, split_rejected in read_rows(path, layout, chunk_rows=None):
        accepted, bad = screen.push(rows)
        parts.append(accepted)
        rejected += split_rejected + bad
    parts.append(screen.flush())
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
    scores = det.score(series.values, mode=mode)
    if len(series) < det.window:
        log.warning("%s: %d row(s), fewer than the window (%d): no row can be scored", path, len(series), det.window)
    return Detection(series, scores, rejected)


# --------------------------------------------------------------------------------------------- score
@dataclass
class ScoreOptions:
    """The options of a `score` run that change what it writes (all but where it writes)."""

    series_col: str | None = None
    chunk_rows: int = 100_000
    duplicates: str = DEFAULT_DUPLICATES
    state: Path | None = None
    series: str = DEFAULT_SERIES
    adapt: bool = False  # --adapt: keep learning (tsad.adapt; the settings are the model's)

    def params(self) -> dict[str, Any]:
        """What `--skip-existing` compares (chunking changes no result, so it is left out)."""
        return {"series_col": self.series_col, "mode": "causal", "ingest": SCORE_PARAMS_VERSION,
                "duplicates": self.duplicates,
                **({"state": str(self.state), "series": self.series} if self.state is not None else {}),
                **({"adapt": True} if self.adapt else {})}


def _params(series_col: str | None) -> dict[str, Any]:
    return ScoreOptions(series_col).params()


def score_file(det: WindowDetector, path: Path, opts: ScoreOptions, manifest: RunManifest,
                entry: dict[str, Any], scorers: dict[Any, CausalScorer], state: ScoreState | None,
                kept: dict[str, CausalScorer]) -> Iterator[pd.DataFrame]:
    series_col = opts.series_col

    def scorer_for(key: Any) -> CausalScorer:
        if key not in scorers:
            if state is None:
                scorers[key] = CausalScorer(det, series_col, opts.duplicates, str(path), adapt=opts.adapt)
            else:  # one scorer per series for the whole run, restored from the state
                name = str(key) if series_col else opts.series
                if name not in kept:
                    kept[name] = state.scorer(name, series_col, str(path))
                scorers[key] = kept[name]
                scorers[key].ingest.screen.source = str(path)
        return scorers[key]

    def table(key: Any, accepted: Accepted, scores: Scores) -> pd.DataFrame:
        entry["scored"] += int(np.isfinite(scores.score).sum())
        entry["unscored"] += int((~np.isfinite(scores.score)).sum())
        frame = scores_frame(accepted_series(det, accepted, str(path)), scores, contributions=False)
        frame.insert(0, "source", str(path))
        if series_col:
            frame.insert(1, "series", key)
        return frame

    for rows, rejected in read_rows(path, model_layout(det, series_col), opts.chunk_rows):
        entry["rows"] += len(rows) + len(rejected)
        codes, keys = pd.factorize(rows.keys if series_col else np.zeros(len(rows)), use_na_sentinel=False)
        for code, key in enumerate(keys):
            accepted, scores, bad = scorer_for(key).push(rows.take(np.flatnonzero(codes == code)))
            rejected += bad
            if scores is not None:
                yield table(key, accepted, scores)
        record_rejected(manifest, path, entry, rejected)
    for key, scorer in scorers.items():  # the end of the file: rows held back by --duplicates last|drop
        accepted, scores = scorer.flush()
        if scores is not None:
            yield table(key, accepted, scores)
    entry["gaps"] = {"missing": sum(s.ingest.counts.missing for s in scorers.values()),
                     "filled_start": sum(s.ingest.counts.filled_start for s in scorers.values())}


def record_rejected(manifest: RunManifest, path: Path, entry: dict[str, Any], rejected: list[Rejected]) -> None:
    """Rejected rows into the manifest; rows an earlier run scored are only counted."""
    seen = [r for r in rejected if r.kind == SEEN]
    for r in sorted((r for r in rejected if r.kind != SEEN), key=lambda r: r.line_no):
        manifest.reject(str(path), r.reason, r.line_no)
    entry["rejected"] += len(rejected) - len(seen)
    entry["already_scored"] += len(seen)


def explain_entry(det: WindowDetector, entry: dict[str, Any], histories: list[int], stateful: bool) -> str | None:
    """Why rows of this input have no score: `entry["note"]`; returns a warning when nothing carries
    the history of its too-short series (`histories`: rows each series has seen) to the next run."""
    notes = []
    if entry["unscored"]:
        need = det.context_rows + 1
        how = ("the series' history, earlier runs included, is still shorter" if stateful else
               "use --state to carry context between runs")
        notes.append(f"{entry['unscored']} need window history ({need} rows: window {det.window}"
                     + (f", smooth {det.config.scoring.smooth}" if det.config.scoring.smooth > 1 else "")
                     + f") — {how}")
    if entry["rejected"]:
        notes.append(f"{entry['rejected']} rejected (see the manifest's rejected list)")
    if entry["already_scored"]:
        notes.append(f"{entry['already_scored']} already scored by an earlier run (at or before the state's last "
                     f"timestamp)")
    if notes:
        entry["note"] = "; ".join(notes)
    short = [h for h in histories if h <= det.context_rows]
    if short and not stateful:
        return (f"{entry['path']}: {sum(short)} row(s), fewer than the {det.context_rows + 1} a score needs "
                f"(window {det.window}): no row of it can be scored; use --state DIR to carry context between runs")
    return None
