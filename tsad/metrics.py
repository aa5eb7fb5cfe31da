"""Detection metrics: point-wise, point-adjusted (optimistic), event-wise, ranking (ROC/PR-AUC),
SKAB's FAR/MAR, and the NAB score written from Lavin & Ahmad (2015). The range-aware VUS-PR and
range-based precision/recall/F1 live in tsad.range_metrics.

NAB score, as implemented here:
- each labelled window is a row range; the first `probation` rows of a file
  (min(floor(0.15·n), 750)) are not scored;
- inside a window only the earliest detection counts, rewarded A_TP·σ(y) with
  σ(y) = 2/(1+e^{5y}) − 1 and y = −(end − i + 1)/width (−1 at the window start, → 0 at its end);
- a detection outside windows costs A_FP·σ(y) (negative) with y = (i − end)/width relative to the
  preceding window (clipped to −1 beyond y = 3), or A_FP·(−1) when no window precedes it;
- a missed window costs −A_FN;
- normalised over the corpus: 100·(raw − null)/(perfect − null), null = never detect, perfect =
  detect every window at its first row; one threshold per profile is optimised over the corpus,
  trying every distinct score as NAB's optimiser does (exact, not a grid). `nab_plateau_threshold`
  is the alternative that bench/tsad_nab_threshold_rule.py weighed: the best score averaged over
  ±w decades of 1 − t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)

PROFILES = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}


def segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) row ranges of consecutive ones."""
    y = np.asarray(labels).astype(int)
    d = np.diff(np.concatenate([[0], y, [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), (np.flatnonzero(d == -1) - 1).tolist()))


def point_prf(labels: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    p, r, f, _ = precision_recall_fscore_support(np.asarray(labels).astype(int), np.asarray(pred).astype(int),
                                                 average="binary", zero_division=0)
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def point_adjust(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Mark a whole true segment detected if any point in it is (optimistic: inflates F1)."""
    adjusted = np.asarray(pred).astype(bool).copy()
    for lo, hi in segments(labels):
        if adjusted[lo:hi + 1].any():
            adjusted[lo:hi + 1] = True
    return adjusted


def best_f1(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The best point-wise F1 over all thresholds, and that threshold."""
    y, s = np.asarray(labels).astype(int), np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf)
    if y.sum() == 0:
        return 0.0, float("inf")
    p, r, t = precision_recall_curve(y, s)
    f = 2 * p * r / np.maximum(p + r, 1e-12)
    i = int(np.argmax(f[:-1])) if len(t) else 0
    return float(f[i]), float(t[i]) if len(t) else float("inf")


def best_f1_point_adjusted(labels: np.ndarray, scores: np.ndarray, n_thresholds: int = 200) -> float:
    s = np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf)
    finite = s[np.isfinite(s)]
    best = 0.0
    for t in np.unique(np.quantile(finite, np.linspace(0.5, 1.0, n_thresholds))):
        best = max(best, point_prf(labels, point_adjust(labels, s >= t))["f1"])
    return best


def event_recall(labels: np.ndarray, pred: np.ndarray) -> float:
    segs = segments(labels)
    if not segs:
        return float("nan")
    p = np.asarray(pred).astype(bool)
    return sum(bool(p[lo:hi + 1].any()) for lo, hi in segs) / len(segs)


def far_mar(labels: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """SKAB's false alarm rate FP/(FP+TN) and missed alarm rate FN/(FN+TP)."""
    y, p = np.asarray(labels).astype(bool), np.asarray(pred).astype(bool)
    fp, tn = int((p & ~y).sum()), int((~p & ~y).sum())
    fn, tp = int((~p & y).sum()), int((p & y).sum())
    return fp / max(fp + tn, 1), fn / max(fn + tp, 1)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    y = np.asarray(labels).astype(int)
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, np.nan_to_num(np.asarray(scores, dtype=float), nan=np.nanmin(scores))))


def pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    y = np.asarray(labels).astype(int)
    if y.min() == y.max():
        return float("nan")
    return float(average_precision_score(y, np.nan_to_num(np.asarray(scores, dtype=float), nan=np.nanmin(scores))))


# ------------------------------------------------------------------------------------------ NAB
def scaled_sigmoid(y: np.ndarray | float) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    out = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, out)


MAX_TP = float(scaled_sigmoid(-1.0))  # σ at a window's first row, the earliest true positive


def probation_rows(n: int, fraction: float = 0.15) -> int:
    return int(min(np.floor(fraction * n), fraction * 5000))


@dataclass
class NabFile:
    """One file's anomaly scores in [0, 1] and its labelled windows as inclusive row ranges."""

    scores: np.ndarray
    windows: list[tuple[int, int]]

    def __post_init__(self) -> None:
        n = len(self.scores)
        self.probation = probation_rows(n)
        s = np.nan_to_num(np.asarray(self.scores, dtype=float), nan=0.0)
        in_window = np.zeros(n, dtype=bool)
        fp_unit = np.full(n, -1.0)  # σ for false positives, before weighting
        for lo, hi in sorted(self.windows):
            in_window[lo:hi + 1] = True
            width = hi - lo + 1
            nxt = min([w[0] for w in self.windows if w[0] > hi], default=n)
            after = np.arange(hi + 1, nxt)
            fp_unit[after] = scaled_sigmoid((after - hi) / max(width - 1, 1))  # NAB divides by width − 1 here
        scored = np.arange(n) >= self.probation
        fp_rows = scored & ~in_window
        self.fp_scores, self.fp_unit = s[fp_rows], fp_unit[fp_rows]
        # per window: prefix max of scores and σ of each row's position
        self.window_prefix, self.window_sigma = [], []
        for lo, hi in self.windows:
            lo_s = max(lo, self.probation)
            if lo_s > hi:
                continue
            width = hi - lo + 1
            rows = np.arange(lo_s, hi + 1)
            self.window_prefix.append(np.maximum.accumulate(s[lo_s:hi + 1]))
            # a detection at the window's first row earns exactly the TP weight (NAB divides by that σ)
            self.window_sigma.append(scaled_sigmoid(-(hi - rows + 1) / width) / MAX_TP)


def nab_scores_at(files: list[NabFile], thresholds: np.ndarray, profile: dict[str, float]) -> np.ndarray:
    """Raw NAB score of the corpus for every threshold (vectorised)."""
    thresholds = np.asarray(thresholds, dtype=float)
    total = np.zeros(len(thresholds))
    fp_s = np.concatenate([f.fp_scores for f in files]) if files else np.zeros(0)
    fp_u = np.concatenate([f.fp_unit for f in files]) if files else np.zeros(0)
    order = np.argsort(fp_s)
    fp_s, fp_u = fp_s[order], fp_u[order]
    suffix = np.concatenate([np.cumsum(fp_u[::-1])[::-1], [0.0]])
    total += profile["fp"] * suffix[np.searchsorted(fp_s, thresholds, side="left")]
    for f in files:
        for prefix, sigma in zip(f.window_prefix, f.window_sigma):
            j = np.searchsorted(prefix, thresholds, side="left")
            hit = j < len(prefix)
            total += np.where(hit, profile["tp"] * sigma[np.minimum(j, len(prefix) - 1)], -profile["fn"])
    return total


def nab_bounds(files: list[NabFile], profile: dict[str, float]) -> tuple[float, float]:
    n_windows = sum(len(f.window_prefix) for f in files)
    return -profile["fn"] * n_windows, profile["tp"] * n_windows


def nab_corpus_score(files: list[NabFile], profile: str | dict[str, float] = "standard",
                     thresholds: np.ndarray | None = None) -> tuple[float, float]:
    """Best normalised NAB score over one corpus-wide threshold, and that threshold."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    if thresholds is None:  # as NAB's optimiser: every distinct score, and one above all (detect nothing)
        alls = np.concatenate([np.nan_to_num(f.scores, nan=0.0) for f in files] + [np.array([np.inf])])
        thresholds = np.unique(alls)
    raw = nab_scores_at(files, thresholds, prof)
    null, perfect = nab_bounds(files, prof)
    if perfect == null:  # no scored window at all: only false positives can move the score
        return 0.0, float(thresholds[int(np.argmax(raw))])
    norm = 100.0 * (raw - null) / (perfect - null)
    i = int(np.argmax(norm))
    return float(norm[i]), float(thresholds[i])


PLATEAU_DECADES = 0.5  # the width bench/tsad_nab_threshold_rule.py chose on NAB's tuning half (a tie)
_GRID_STEP, _GRID_DECADES = 0.005, 10.0


def nab_plateau_threshold(files: list[NabFile], profile: str | dict[str, float] = "standard",
                          width: float = PLATEAU_DECADES) -> float:
    """The threshold whose normalised NAB score, averaged over ±`width` decades of 1 − t, is highest
    (a grid even in −log10(1 − t), 0 to 10 decades in steps of 0.005, then 1 and one point above every
    score). Why: the corpus score is a jagged step function of the threshold, and a threshold meant
    for other files might carry over better from a plateau than from the single best point. Used by
    bench/tsad_nab_threshold_rule.py; `evaluate` keeps NAB's own rule (the best point), see bench/README.md."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    top = max((float(np.max(np.nan_to_num(f.scores, nan=0.0))) for f in files if len(f.scores)), default=0.0)
    decades = np.arange(0.0, _GRID_DECADES + _GRID_STEP / 2, _GRID_STEP)
    grid = np.append(1.0 - 10.0 ** -decades, [1.0, np.nextafter(max(top, 1.0), np.inf)])  # 1.0: saturated scores
    raw = nab_scores_at(files, grid, prof)
    half = int(round(width / _GRID_STEP))
    smooth = np.convolve(np.pad(raw, half, mode="edge"), np.ones(2 * half + 1) / (2 * half + 1), mode="valid")
    return float(grid[int(np.argmax(smooth))])
