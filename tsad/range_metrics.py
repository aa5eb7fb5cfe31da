"""Range-aware detection metrics, written from the papers with the parameters TSB-AD (Liu & Paparrizos,
NeurIPS 2024) reports them with.

Range-based precision / recall / F1 (Tatbul et al., NeurIPS 2018) of a 0/1 prediction:
- recall of one labelled range R = α·existence + (1 − α)·γ·ω, averaged over the labelled ranges;
  existence = 1 if any row of R is predicted; ω = the fraction of R's rows predicted (flat bias δ = 1);
  γ = 1/x when x ≥ 2 predicted ranges overlap R, else 1 (the reciprocal cardinality factor);
- precision of one predicted range P = γ·ω with the roles swapped and no existence reward (α = 0),
  averaged over the predicted ranges (0 when nothing is predicted);
- α = 0.2 for recall as TSB-AD uses it; F1 = 2PR/(P + R), 0 when both are 0.

VUS-PR (Paparrizos et al., VLDB 2022, "Volume Under the Surface"):
- a window length w gives each labelled range a buffer of h = w//2 rows on each side whose label decays
  as sqrt(1 − d/w) at distance d = 1..h from the range; buffers that meet add up, capped at 1, and
  labelled rows stay 1;
- thresholds: the scores at the ranks linspace(0, n − 1, 250) of the descending order (at most 250,
  so every distinct score when n ≤ 250); a row is predicted when its score ≥ the threshold;
- at each threshold: TP = predicted labelled rows + buffer label of predicted buffer rows (B);
  recall = min(TP / (P + B/2), 1) with P the labelled rows; TPR = recall × the fraction of extended
  ranges (range plus buffers, merged where they meet) holding a predicted row; precision = TP / predicted;
- Range-AUC-PR(w) = Σ_k (TPR_k − TPR_{k−1})·precision_k with TPR_0 = 0 (a step sum, as average precision);
- VUS-PR = the mean of Range-AUC-PR(w) over w = 0, 1, …, 100 (TSB-AD's default sliding window).
With one labelled range and n ≤ 250, Range-AUC-PR(0) is exactly the point-wise average precision.

Both are vectorised numpy: VUS-PR costs one sort plus O(n) per distinct buffer length, about 0.1 s for
100k rows. Inputs of different lengths or labels other than 0/1 raise ValueError; with no labelled
row, VUS-PR, range recall and range F1 are NaN (undefined), as point PR-AUC is.
"""

from __future__ import annotations

import numpy as np

N_THRESHOLDS = 250
MAX_WINDOW = 100
RECALL_ALPHA = 0.2


def _check(labels: np.ndarray, other: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    y, o = np.asarray(labels), np.asarray(other)
    if y.ndim != 1 or o.ndim != 1:
        raise ValueError(f"labels and {what} must be 1-D, got shapes {y.shape} and {o.shape}")
    if len(y) != len(o):
        raise ValueError(f"labels and {what} differ in length: {len(y)} != {len(o)}")
    if len(y) == 0:
        raise ValueError("no rows to score")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y.astype(bool), o


def _ranges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive starts and ends of the runs of True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1


def _range_side(target: np.ndarray, other: np.ndarray, alpha: float) -> float:
    """Mean over `target`'s ranges of α·existence + (1 − α)·γ·ω against the rows of `other`."""
    starts, ends = _ranges(target)
    if len(starts) == 0:
        return float("nan")
    covered = np.concatenate([[0], np.cumsum(other)])
    hits = covered[ends + 1] - covered[starts]
    opens = other & ~np.concatenate([[False], other[:-1]])  # first row of each of `other`'s ranges
    opened = np.concatenate([[0], np.cumsum(opens)])
    overlapping = opened[ends + 1] - opened[starts + 1] + other[starts]  # ranges of `other` meeting this one
    gamma = np.where(overlapping > 1, 1.0 / np.maximum(overlapping, 1), 1.0)
    reward = alpha * (hits > 0) + (1.0 - alpha) * gamma * hits / (ends - starts + 1)
    return float(reward.mean())


def range_prf(labels: np.ndarray, pred: np.ndarray, alpha: float = RECALL_ALPHA) -> dict[str, float]:
    """Range-based precision, recall (existence weight `alpha`) and F1 of 0/1 predictions."""
    y, p = _check(labels, pred, "predictions")
    p = p.astype(bool)
    recall = _range_side(y, p, alpha)
    precision = _range_side(p, y, 0.0) if p.any() else 0.0
    if np.isnan(recall):
        f1 = float("nan")
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _count_at_least(ascending: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return len(ascending) - np.searchsorted(ascending, thresholds, side="left")


def range_pr_auc_curve(labels: np.ndarray, scores: np.ndarray, windows: np.ndarray,
                       n_thresholds: int = N_THRESHOLDS) -> np.ndarray:
    """Range-AUC-PR for each window length in `windows` (see the module docstring)."""
    y, s = _check(labels, scores, "scores")
    s = np.nan_to_num(np.asarray(s, dtype=float), nan=-np.inf)  # a missing score ranks lowest
    windows = np.asarray(windows, dtype=int)
    if (windows < 0).any():
        raise ValueError("window lengths must be at least 0")
    starts, ends = _ranges(y)
    if len(starts) == 0:
        return np.full(len(windows), np.nan)
    n, positives = len(y), int(y.sum())
    ascending = np.sort(s)
    thresholds = ascending[::-1][np.linspace(0, n - 1, n_thresholds).astype(int)]
    n_pred = _count_at_least(ascending, thresholds)
    tp_labelled = _count_at_least(np.sort(s[y]), thresholds)

    # every (row, distance) pair within the widest buffer, outside the labelled rows, nearest first
    widest = int(windows.max()) // 2
    dist = np.arange(1, widest + 1)
    rows = np.concatenate([(starts[:, None] - dist).ravel(), (ends[:, None] + dist).ravel()])
    dists = np.tile(np.repeat(dist[None, :], len(starts), axis=0).ravel(), 2)
    keep = (rows >= 0) & (rows < n)
    rows, dists = rows[keep], dists[keep]
    keep = ~y[rows]
    rows, dists = rows[keep], dists[keep]
    order = np.argsort(dists, kind="stable")
    rows, dists = rows[order], dists[order]
    buffer_rows, column = np.unique(rows, return_inverse=True)
    by_score = np.argsort(-s[buffer_rows], kind="stable")  # buffer rows, highest score first
    place = np.empty(len(buffer_rows), dtype=int)
    place[by_score] = np.arange(len(buffer_rows))
    column = place[column]
    buffer_predicted = _count_at_least(np.sort(s[buffer_rows]), thresholds)  # a prefix of that order

    padded = np.append(s, -np.inf)
    existence: dict[int, np.ndarray] = {}
    out = np.empty(len(windows))
    for j, w in enumerate(windows):
        half = int(w) // 2
        if half == 0 or len(buffer_rows) == 0:
            buffer_tp = np.zeros(len(thresholds))
        else:
            near = np.searchsorted(dists, half, side="right")
            label = np.minimum(np.bincount(column[:near], weights=np.sqrt(1.0 - dists[:near] / w),
                                           minlength=len(buffer_rows)), 1.0)
            buffer_tp = np.concatenate([[0.0], np.cumsum(label)])[buffer_predicted]
        if half not in existence:
            lo, hi = np.maximum(starts - half, 0), np.minimum(ends + half, n - 1)
            first = np.flatnonzero(np.concatenate([[True], lo[1:] > hi[:-1]]))  # extended ranges that meet merge
            last = np.concatenate([first[1:] - 1, [len(lo) - 1]])
            bounds = np.column_stack([lo[first], hi[last] + 1]).ravel()
            peak = np.maximum.reduceat(padded, bounds)[::2]
            existence[half] = _count_at_least(np.sort(peak), thresholds) / len(first)
        tp = tp_labelled + buffer_tp
        recall = np.minimum(tp / (positives + buffer_tp / 2.0), 1.0)
        tpr = recall * existence[half]
        precision = tp / n_pred
        out[j] = float(np.sum(np.diff(np.concatenate([[0.0], tpr])) * precision))
    return out


def range_pr_auc(labels: np.ndarray, scores: np.ndarray, window: int = 0, n_thresholds: int = N_THRESHOLDS) -> float:
    """Range-AUC-PR for one window length (buffer of window//2 rows on each side of a range)."""
    return float(range_pr_auc_curve(labels, scores, np.array([window]), n_thresholds)[0])


def vus_pr(labels: np.ndarray, scores: np.ndarray, max_window: int = MAX_WINDOW,
           n_thresholds: int = N_THRESHOLDS) -> float:
    """Volume under the PR surface: the mean Range-AUC-PR over window lengths 0..max_window. NaN without a
    labelled row."""
    if max_window < 0:
        raise ValueError("max_window must be at least 0")
    return float(np.mean(range_pr_auc_curve(labels, scores, np.arange(max_window + 1), n_thresholds)))
