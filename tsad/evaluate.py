"""Benchmark protocols: NAB (causal, per-file probationary training), SKAB (per file, first 400
rows train), MSL (train/test per channel), and a user's own labelled file. Baselines run in the
same call on the same splits. Every benchmark's result has one shape: `metrics` and `baselines` over
the evaluation part (NAB_SPLIT_RULE, SKAB_SPLIT_RULE, MSL_SPLIT_RULE), `metrics_all` (and
`baselines_all`) over the whole corpus, `tuning` the rule, the parts' sizes and where the settings
were chosen; a user's file has no split (`metrics_all` = `metrics`, `tuning` says so)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from core.jobs.atomic import atomic_path, atomic_write_text
from core.jobs.progress import track
from tsad import metrics as M
from tsad import range_metrics as RM
from tsad.adapt import check_adaptable
from tsad.alerting import AdaptiveAlerting
from tsad.baselines import IsolationForestBaseline, PCABaseline, RollingZScore, WindowedGaussian
from tsad.batch import stream_score
from tsad.config import BENCHMARKS, DetectorConfig
from tsad.datasets import Series, iter_msl, iter_nab, iter_skab
from tsad.detector import WindowDetector, trailing_mean

log = logging.getLogger(__name__)



@dataclass
class EvalResult:
    benchmark: str
    model: str
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "model": self.model, "metrics": self.metrics,
                "baselines": self.baselines, "seconds": round(self.seconds, 1), **self.extra}


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


# ------------------------------------------------------------------------------------------ NAB
def evaluate_nab(data_dir: Path, make: Callable[[], WindowDetector], out: Path | None = None,
                 limit: int | None = None, progress: bool = False, adapt: bool = False) -> EvalResult:
    """Scores each file causally through the detector's saved alerting, exactly as `detect`, `score`
    and `monitor` do: with the nab preset, `adaptive` (the error's likelihood combined with a level
    check, see tsad.alerting). The same alerting without the level check is reported as an ablation;
    the windowed-gaussian baseline is NAB's own windowedGaussian detector (tsad.baselines).
    `metrics` are the evaluation half's (NAB_SPLIT_RULE) at the tuning half's thresholds;
    `metrics_all` the whole corpus at the same thresholds, `metrics_all_own_threshold` the whole
    corpus at its own optimum (how NAB's published scores are computed: optimistic). `adapt`: the
    detector keeps learning as it scores (tsad.adapt; NAB allows it: each row is seen once, in order)."""
    t0 = time.perf_counter()
    series = list(iter_nab(data_dir))[:limit]
    ours, alone, base = [], [], []
    points, score_seconds = 0, 0.0
    for s in track(series, "NAB", progress):
        p = M.probation_rows(len(s))
        det = make().fit(s.values[:p])
        t1 = time.perf_counter()
        raw = stream_score(det, s.values, adapt)
        score_seconds += time.perf_counter() - t1
        points += len(s)
        anomaly = raw.alert_score if raw.alert_score is not None else det.calibrator_.transform(raw.score)
        ours.append(M.NabFile(np.nan_to_num(anomaly, nan=0.0), s.windows))
        surprise = det.calibrator_.surprise(raw.score)
        without = dataclasses.replace(det.config.alerting, mode="adaptive", level=False)
        alone.append(M.NabFile(AdaptiveAlerting(without, max(100, p)).apply(
            raw.score, surprise, s.values, {})[0], s.windows))
        base.append(M.NabFile(WindowedGaussian().score(s.values), s.windows))
        if out is not None:
            frame = pd.DataFrame({"timestamp": s.timestamps.strftime("%Y-%m-%d %H:%M:%S"), "value": s.values[:, 0],
                                  "anomaly_score": anomaly, "label": s.labels})
            _write_csv(frame, out / f"{s.name}")
    tuning, evaluation = nab_halves([s.name for s in series])
    tune_idx = [i for i, s in enumerate(series) if s.name in set(tuning)]
    eval_idx = [i for i, s in enumerate(series) if s.name in set(evaluation)]
    parts = {name: _nab_parts(files, tune_idx, eval_idx) for name, files in
             (("ours", ours), ("alone", alone), ("gaussian", base))}
    metrics = dict(parts["ours"]["evaluation"])
    metrics["points_per_second"] = round(points / max(score_seconds, 1e-9))
    extra = {"files": len(series),
             "metrics_all": parts["ours"]["all"],
             "metrics_all_own_threshold": parts["ours"]["all_own_threshold"],
             "baselines_all": {"windowed_gaussian": parts["gaussian"]["all"]},
             "ablations": {"ae_without_level": parts["alone"]["evaluation"]},
             "tuning": {"rule": NAB_SPLIT_RULE, "files": len(tuning), "evaluation_files": len(evaluation),
                        "thresholds": parts["ours"]["thresholds"], "scores": parts["ours"]["tuning"],
                        "settings": "the nab preset; its alerting was chosen on the tuning half "
                                    "(bench/tsad_nab_protocol.py)"},
             "adapt": dataclasses.asdict(make().config.adapt) if adapt else False}
    return EvalResult("nab", make().config.network.kind, metrics,
                      {"windowed_gaussian": parts["gaussian"]["evaluation"]}, time.perf_counter() - t0, extra)


NAB_SPLIT_RULE = ("within each category (a file's folder), files sorted by name alternate: tuning (1st, 3rd, ...) and "
                  "evaluation (2nd, 4th, ...); thresholds come from the tuning half")
_NAB_NAMES = {"standard": "nab_standard", "reward_low_FP_rate": "nab_low_fp", "reward_low_FN_rate": "nab_low_fn"}


def nab_halves(names: list[str]) -> tuple[list[str], list[str]]:
    """NAB_SPLIT_RULE: (tuning, evaluation) file names."""
    tuning, evaluation = [], []
    for _, group in itertools.groupby(sorted(names), key=lambda n: n.split("/")[0]):
        for i, name in enumerate(group):
            (tuning if i % 2 == 0 else evaluation).append(name)
    return tuning, evaluation


def nab_score_at(files: list[M.NabFile], profile: str, threshold: float) -> float:
    """The normalised NAB score of `files` at a threshold chosen elsewhere (not optimised on them)."""
    prof = M.PROFILES[profile]
    null, perfect = M.nab_bounds(files, prof)
    if perfect == null:
        return 0.0
    return 100 * (float(M.nab_scores_at(files, np.array([threshold]), prof)[0]) - null) / (perfect - null)


def _nab_parts(files: list[M.NabFile], tune_idx: list[int], eval_idx: list[int]) -> dict[str, dict[str, float]]:
    """Per profile: the threshold optimised on the tuning half, the evaluation half and the whole
    corpus scored at it, and the whole corpus at its own optimum (NAB's published convention)."""
    out: dict[str, dict[str, float]] = {"evaluation": {}, "all": {}, "all_own_threshold": {}, "thresholds": {},
                                        "tuning": {}}
    for profile, key in _NAB_NAMES.items():
        tuned, th = M.nab_corpus_score([files[i] for i in tune_idx], profile) if tune_idx else (0.0, 1.0)
        out["thresholds"][key] = float(th)
        out["tuning"][key] = round(tuned, 2)  # what a settings grid may look at
        out["evaluation"][key] = round(nab_score_at([files[i] for i in eval_idx], profile, th), 2) if eval_idx else 0.0
        out["all"][key] = round(nab_score_at(files, profile, th), 2)
        out["all_own_threshold"][key] = round(M.nab_corpus_score(files, profile)[0], 2)
    return out


# ------------------------------------------------------------------------------------- labelled
def _point_metrics(labels: np.ndarray, scores: np.ndarray, pred: np.ndarray | None) -> dict[str, float]:
    """Point metrics, VUS-PR of the scores and range-based P/R/F1 of `pred` (tsad.range_metrics, TSB-AD's
    parameters: windows 0..100, 250 thresholds, recall α = 0.2), all over the given rows together."""
    f1, _ = M.best_f1(labels, scores)
    out = {"best_f1": f1, "f1_pa": M.best_f1_point_adjusted(labels, scores), "pr_auc": M.pr_auc(labels, scores),
           "roc_auc": M.roc_auc(labels, scores), "vus_pr": RM.vus_pr(labels, scores)}
    if pred is not None:
        prf = M.point_prf(labels, pred)
        far, mar = M.far_mar(labels, pred)
        rng = RM.range_prf(labels, pred)
        out.update({"f1": prf["f1"], "precision": prf["precision"], "recall": prf["recall"], "far": far,
                    "mar": mar, "event_recall": M.event_recall(labels, pred), "range_precision": rng["precision"],
                    "range_recall": rng["recall"], "range_f1": rng["f1"]})
    return {k: round(float(v), 4) for k, v in out.items()}


def _whole_file_metrics(train_labels: list[np.ndarray], test_labels: list[np.ndarray], train_pred: list[np.ndarray],
                        test_pred: list[np.ndarray]) -> dict[str, float]:
    """F1, FAR and MAR over every row of each file, its training rows included, as SKAB's leaderboard
    scores them (its notebooks predict on the whole file and its `chp_score(..., metric="binary")`
    counts every row): the training rows are scored by the fitted detector like any others. The
    plain `f1`/`far`/`mar` count the test rows only, the stricter figure (a detector rarely alarms on
    the rows it was fitted to, so they mostly add true negatives and lower the FAR)."""
    y = np.concatenate([np.concatenate([a, b]) for a, b in zip(train_labels, test_labels)])
    p = np.concatenate([np.concatenate([a, b]) for a, b in zip(train_pred, test_pred)])
    far, mar = M.far_mar(y, p)
    return {"f1_whole_file": round(M.point_prf(y, p)["f1"], 4), "far_whole_file": round(far, 4),
            "mar_whole_file": round(mar, 4)}


def _threshold_by_train(train_scores: np.ndarray, test_scores: np.ndarray, q: float = 99.0,
                        margin: float = 1.0) -> np.ndarray:
    finite = train_scores[np.isfinite(train_scores)]
    return np.nan_to_num(test_scores, nan=-np.inf) > np.percentile(finite, q) * margin


def _write_scored(test: Series, score: np.ndarray, pred: np.ndarray, out: Path) -> None:
    """One test file's rows as evaluated: timestamp (or row number), values, score, alert, label."""
    frame = pd.DataFrame({"timestamp": (test.timestamps.strftime("%Y-%m-%d %H:%M:%S") if test.timestamps is not None
                                        else np.arange(len(test)))})
    for j, channel in enumerate(test.channels):
        frame[str(channel)] = test.values[:, j]
    frame["score"], frame["is_anomaly"], frame["label"] = score, pred.astype(int), test.labels.astype(int)
    name = test.name.replace("/", "__").replace("\\", "__")
    _write_csv(frame, out / (name if name.endswith(".csv") else f"{name}.csv"))


SKAB_SPLIT_RULE = ("SKAB's labelled files grouped by folder (valve1, valve2, other); within each folder the files "
                   "sorted by name (numerically: 0, 1, 2, ..., 10, ...) alternate: even positions (1st, 3rd, ...) "
                   "tuning, odd positions (2nd, 4th, ...) evaluation; fixed before any result")
MSL_SPLIT_RULE = ("MSL's 27 channels sorted by channel id (as strings: C-1, C-2, D-14, ..., T-9, the loader's order) "
                  "alternate: even positions (0th, 2nd, ...) tuning, odd positions (1st, 3rd, ...) evaluation; "
                  "fixed before any result")


def skab_halves(names: list[str]) -> tuple[list[str], list[str]]:
    """SKAB_SPLIT_RULE: (tuning, evaluation) file names ("folder/N.csv"). Folders keep the order in which
    they first appear in `names` (the loader's: valve1, valve2, other); within a folder the files are
    sorted numerically (shorter names first, then by name: the loader's order), then alternate."""
    folders: dict[str, list[str]] = {}
    for name in names:
        folders.setdefault(name.split("/")[0], []).append(name)
    tuning, evaluation = [], []
    for group in folders.values():
        for i, name in enumerate(sorted(group, key=lambda n: (len(n), n))):
            (tuning if i % 2 == 0 else evaluation).append(name)
    return tuning, evaluation


def msl_halves(names: list[str]) -> tuple[list[str], list[str]]:
    """MSL_SPLIT_RULE: (tuning, evaluation) names, sorted by channel id (the part before any "/": a bare
    id "C-1" or a test series' name "C-1/test"); the names are returned as given."""
    ordered = sorted(names, key=lambda n: (n.split("/")[0], n))
    return ordered[0::2], ordered[1::2]


@dataclass(frozen=True)
class SplitRule:
    """A benchmark's fixed tuning/evaluation split: the rule in words, the function applying it to the
    test series' names, and which bench chose the preset's settings on the tuning part."""
    rule: str
    halves: Callable[[list[str]], tuple[list[str], list[str]]]
    settings: str


SPLITS = {
    "skab": SplitRule(SKAB_SPLIT_RULE, skab_halves,
                      "the skab preset; its smoothing (bench/tsad_skab_protocol.py), score channels "
                      "(bench/tsad_skab_channels.py) and threshold margin (bench/tsad_skab_test_rows.py) were "
                      "chosen on the tuning part"),
    "msl": SplitRule(MSL_SPLIT_RULE, msl_halves,
                     "the msl preset; its smoothing span (scoring.smooth) was chosen on the tuning part "
                     "(bench/tsad_msl_protocol.py), then centred windows (bench/tsad_center.py)"),
}
NO_SPLIT_RULE = "none: every test file is scored (no tuning part)"


def evaluate_split(pairs: list[tuple[Series, Series]], make: Callable[[], WindowDetector], benchmark: str,
                   baselines: tuple[str, ...] = ("rolling_zscore", "pca", "isolation_forest"),
                   progress: bool = False, out: Path | None = None, adapt: bool = False,
                   split: SplitRule | None = None, no_split: str = NO_SPLIT_RULE) -> EvalResult:
    """Train on each pair's first series, score its second. With a `split` (SKAB, MSL: run_benchmark
    passes SPLITS[name]) `metrics` and `baselines` are over the evaluation part's test rows together,
    `metrics_all` and `baselines_all` over every test file's, and `tuning` names the rule, the parts'
    sizes and where the preset's settings were chosen; without one, both are over every file and
    `tuning` is {"rule": no_split} (the same shape). `points_per_second` is over every file scored.
    When our detector smooths its scores, PCA and IsolationForest are also reported smoothed the
    same way (`<name>_smoothed`), so the comparison does not credit the smoothing to the model.
    `out`: a folder that gets each test file's rows as scored (see `_write_scored`), every file,
    whichever part it is in; `adapt`: our detector keeps learning as it scores each test series (tsad.adapt)."""
    missing = next((test.name for _, test in pairs if test.labels is None), None)
    if missing is not None:
        raise UserError(f"{missing}: no labels to evaluate against")
    check_test_labels(np.concatenate([test.labels for _, test in pairs]) if pairs else np.zeros(0), benchmark)
    t0 = time.perf_counter()
    smooth = make().config.scoring.smooth
    if smooth > 1:
        baselines = (*baselines, *(f"{b}_smoothed" for b in baselines if b in ("pca", "isolation_forest")))
    labels, ours, ours_pred = [], [], []
    base_scores: dict[str, list[np.ndarray]] = {b: [] for b in baselines}
    base_pred: dict[str, list[np.ndarray]] = {b: [] for b in baselines}
    # SKAB's own convention also scores each file's training rows (see _whole_file_metrics)
    whole_files = bool(pairs) and all(train.labels is not None for train, _ in pairs)
    train_labels, ours_train_pred = [], []
    base_train_pred: dict[str, list[np.ndarray]] = {b: [] for b in baselines}
    points, score_seconds = 0, 0.0
    blame = FalseAlarmChannels()
    for train, test in track(pairs, benchmark, progress):
        det = make().fit(train)
        if whole_files:  # before the test rows, which --adapt would learn from
            train_labels.append(train.labels)
            ours_train_pred.append(det.score(train.values).is_anomaly)
        t1 = time.perf_counter()
        result = stream_score(det, test.values, adapt)
        score_seconds += time.perf_counter() - t1
        points += len(test)
        score = np.nan_to_num(result.score, nan=0.0)
        labels.append(test.labels)
        ours.append(score)
        ours_pred.append(result.is_anomaly)
        blame.add(test, result)
        if out is not None:
            _write_scored(test, result.score, result.is_anomaly, out)
        fitted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for b in baselines:
            if b == "rolling_zscore":
                z = RollingZScore(window=100).score(np.vstack([train.values, test.values]))
                s_tr, s_te = z[:len(train)], z[len(train):]
            elif b.endswith("_smoothed"):
                s_tr, s_te = (trailing_mean(v, smooth) for v in fitted[b.removesuffix("_smoothed")])
            else:
                model = (PCABaseline() if b == "pca" else IsolationForestBaseline()).fit(train.values)
                s_tr, s_te = model.score(train.values), model.score(test.values)
            fitted[b] = (s_tr, s_te)
            base_scores[b].append(np.nan_to_num(s_te, nan=0.0))
            base_pred[b].append(_threshold_by_train(s_tr, s_te))
            if whole_files:
                base_train_pred[b].append(_threshold_by_train(s_tr, s_tr))

    def over(idx: list[int], scores: list[np.ndarray], pred: list[np.ndarray],
             train_pred: list[np.ndarray]) -> dict[str, float]:
        out = _point_metrics(np.concatenate([labels[i] for i in idx]), np.concatenate([scores[i] for i in idx]),
                             np.concatenate([pred[i] for i in idx]))
        if whole_files:
            out.update(_whole_file_metrics([train_labels[i] for i in idx], [labels[i] for i in idx],
                                           [train_pred[i] for i in idx], [pred[i] for i in idx]))
        return out

    every = list(range(len(pairs)))
    metrics_all = over(every, ours, ours_pred, ours_train_pred)
    base_all = {b: over(every, base_scores[b], base_pred[b], base_train_pred[b]) for b in baselines}
    if split is None:
        metrics, base = dict(metrics_all), base_all
        tuning: dict[str, Any] = {"rule": no_split}
    else:
        names = [test.name for _, test in pairs]
        tune_names, eval_names = split.halves(names)
        eval_set = set(eval_names)
        eval_idx = [i for i, name in enumerate(names) if name in eval_set]
        if eval_idx:
            metrics = over(eval_idx, ours, ours_pred, ours_train_pred)
            base = {b: over(eval_idx, base_scores[b], base_pred[b], base_train_pred[b]) for b in baselines}
        else:  # e.g. --limit 1: every file is in the tuning part, the evaluation part's figures are undefined
            log.warning("%s: no file in the evaluation part (%d files); its metrics are null", benchmark, len(pairs))
            metrics = {k: float("nan") for k in metrics_all}
            base = {b: {k: float("nan") for k in m} for b, m in base_all.items()}
        tuning = {"rule": split.rule, "files": len(tune_names), "evaluation_files": len(eval_names),
                  "settings": split.settings}
    metrics["points_per_second"] = round(points / max(score_seconds, 1e-9))
    return EvalResult(benchmark, make().config.network.kind, metrics, base, time.perf_counter() - t0,
                      {"series": len(pairs), "metrics_all": metrics_all, "baselines_all": base_all,
                       "tuning": tuning, "adapt": dataclasses.asdict(make().config.adapt) if adapt else False,
                       "false_alarm_channels": blame.shares()})


class FalseAlarmChannels:
    """Which channels carry our detector's false alarms: each channel's mean share of the score
    (Scores.contributions) over the test rows flagged but labelled normal, over every test file.
    A diagnostic, not a metric: a channel that drifts past its training range without being the
    anomaly shows up here, and `train --score-columns` can leave it out of the score (SKAB's
    temperatures, bench/tsad_skab_channels.py). Empty for one channel or when no row is a false alarm;
    files whose channels differ from the first file's are left out."""

    def __init__(self) -> None:
        self.channels: list[str] | None = None
        self.total: np.ndarray | None = None
        self.rows = 0

    def add(self, test: Series, result: Any) -> None:
        if self.channels is None:
            self.channels = list(test.channels)
            self.total = np.zeros(len(self.channels))
        wrong = np.asarray(result.is_anomaly, dtype=bool) & (np.asarray(test.labels) == 0)
        if list(test.channels) != self.channels or not wrong.any():
            return
        self.total += np.nan_to_num(np.asarray(result.contributions, dtype=float)[wrong], nan=0.0).sum(axis=0)
        self.rows += int(wrong.sum())

    def shares(self) -> dict[str, float]:
        """{channel: mean share}, largest first."""
        if self.channels is None or len(self.channels) < 2 or not self.rows:
            return {}
        mean = self.total / self.rows
        order = np.argsort(-mean, kind="stable")
        return {self.channels[i]: round(float(mean[i]), 4) for i in order}


def check_labels(labels: np.ndarray, name: str, offset: int = 0) -> None:
    """Labels must be 0 or 1: name the first other value (its 1-based data row, `offset` rows in)."""
    y = np.asarray(labels, dtype=np.float64)
    bad = ~np.isin(y, (0.0, 1.0))  # NaN is not in (0, 1) either
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(f"{name}: label {y[i]:g} on row {offset + i + 1} is not 0 or 1; labels must be 0 (normal) "
                        "or 1 (anomaly)")


def check_test_labels(labels: np.ndarray, name: str) -> None:
    """The scored part needs both classes, else F1/PR-AUC/ROC-AUC are undefined (NaN)."""
    check_labels(labels, name)
    if not (np.asarray(labels) == 1).any():
        raise UserError(f"{name}: no positive labels (1) in the test part, so the metrics are undefined; "
                        "label at least one anomaly after the training rows")
    if not (np.asarray(labels) == 0).any():
        raise UserError(f"{name}: no negative labels (0) in the test part, so the metrics are undefined")


def labelled_file_pair(series: Series, train_rows: int) -> tuple[Series, Series]:
    """A user's own labelled file: its first `train_rows` rows train, the rest is scored against the labels.
    Labels must be 0/1 and the scored rows must hold both (else exit 2 with the reason)."""
    if series.labels is None:
        raise UserError(f"{series.name}: no label column")
    if not 0 < train_rows < len(series) - 1:
        raise UserError(f"--train-rows must be between 1 and {len(series) - 2}")
    check_labels(series.labels, series.name)
    check_test_labels(series.labels[train_rows:], series.name)
    train = Series(series.values[:train_rows], series.channels, labels=series.labels[:train_rows], name=series.name)
    test = Series(series.values[train_rows:], series.channels, labels=series.labels[train_rows:], name=series.name)
    return train, test


def skab_pairs(data_dir: Path, train_rows: int = 400, limit: int | None = None) -> list[tuple[Series, Series]]:
    pairs = []
    for s in list(iter_skab(data_dir))[:limit]:
        tr = Series(s.values[:train_rows], s.channels, s.timestamps[:train_rows], s.labels[:train_rows], s.name)
        te = Series(s.values[train_rows:], s.channels, s.timestamps[train_rows:], s.labels[train_rows:], s.name)
        pairs.append((tr, te))
    return pairs


def msl_pairs(data_dir: Path, limit: int | None = None) -> list[tuple[Series, Series]]:
    return [(c.train, c.test) for c in list(iter_msl(data_dir))[:limit]]


def _json_safe(value: Any) -> Any:
    """NaN and ±inf (a metric the data cannot define) become null; numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(result: EvalResult, path: Path) -> None:
    """Strict JSON: an undefined (NaN/inf) metric is written as null, never as `NaN`."""
    atomic_write_text(path, json.dumps(_json_safe(result.to_dict()), indent=2, allow_nan=False))


def result_rows(result: EvalResult) -> tuple[list[str], list[list[Any]]]:
    keys = [k for k in result.metrics if k != "points_per_second"]
    rows = [[f"{result.model} (ours)", *[result.metrics.get(k) for k in keys]]]
    for name, m in result.extra.get("ablations", {}).items():
        rows.append([f"{result.model} {name.replace('_', ' ')} (ablation)", *[m.get(k) for k in keys]])
    for name, m in result.baselines.items():
        rows.append([name, *[m.get(k) for k in keys]])
    return ["detector", *keys], rows


def run_benchmark(name: str, config: DetectorConfig, seed: int = 0, device: str = "auto", out: Path | None = None,
                  limit: int | None = None, progress: bool = False, adapt: bool = False) -> EvalResult:
    """One benchmark protocol end to end on the dataset under AE_DATA_DIR (fetched if allowed)."""
    from data.registry import ensure_dataset

    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    config.validate()
    if adapt:
        check_adaptable(config)
    root = ensure_dataset(name)

    def make() -> WindowDetector:
        return WindowDetector(config, seed=seed, device=device)

    if name == "nab":
        return _with_ensemble(evaluate_nab(root, make, out, limit, progress=progress, adapt=adapt), config)
    pairs = skab_pairs(root, limit=limit) if name == "skab" else msl_pairs(root, limit)
    return _with_ensemble(evaluate_split(pairs, make, name, progress=progress, out=out, adapt=adapt,
                                         split=SPLITS[name]), config)


def evaluate_labelled_file(series: Series, train_rows: int, config: DetectorConfig, seed: int = 0,
                           device: str = "auto", adapt: bool = False) -> EvalResult:
    """A user's own labelled file: the first `train_rows` rows train, the rest is scored."""
    if adapt:
        check_adaptable(config)
    pair = labelled_file_pair(series, train_rows)
    return _with_ensemble(evaluate_split([pair], lambda: WindowDetector(config, seed=seed, device=device),
                                         series.name, baselines=("rolling_zscore",), adapt=adapt,
                                         no_split="none: a single user file"), config)


def _with_ensemble(result: EvalResult, config: DetectorConfig) -> EvalResult:
    """Name an ensemble in the result (`model` reads e.g. "conv x3"; `ensemble` in --json)."""
    result.extra["ensemble"] = config.network.ensemble
    if config.network.ensemble > 1:
        result.model = f"{result.model} x{config.network.ensemble}"
    return result
