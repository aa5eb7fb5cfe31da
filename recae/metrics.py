"""Rating-prediction and top-N metrics.

`course_rmse` is the classic course's own measure: the mean over test users of each user's RMSE on
their test ratings (it weights every user equally, unlike the global RMSE over all test ratings).
Top-N metrics rank all items a user did not see in fold-in; Recall@K is Liang et al.'s
(hits / min(K, number of targets)); NDCG@K uses binary relevance and a log2 discount.
`topn_per_user` keeps the per-user values, which paired model comparisons need.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(true)) ** 2)))


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred) - np.asarray(true))))


def course_rmse(users: np.ndarray, pred: np.ndarray, true: np.ndarray) -> float:
    se = pd.Series((np.asarray(pred) - np.asarray(true)) ** 2)
    return float(np.sqrt(se.groupby(np.asarray(users)).mean()).mean())


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def topn_per_user(scores: np.ndarray, target: sp.csr_matrix, ks: tuple[int, ...] = (20, 50, 100),
                  seen: sp.csr_matrix | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-user Recall/NDCG/MRR/Hit@K as arrays over the users that have targets (rows without
    targets cannot be measured and are left out), the mask of those rows, and their top-max(ks)
    items. Kept per user so that two models scored on the same rows can be compared pairwise."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    if seen is not None:
        scores[seen.nonzero()] = -np.inf
    target = sp.csr_matrix(target)
    has = np.diff(target.indptr) > 0
    scores, target = scores[has], target[has]
    n_targets = np.diff(target.indptr)
    top = topk_indices(scores, max(ks))
    hits = np.take_along_axis(target.toarray() > 0, top, axis=1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = hits[:, :k]
        out[f"recall@{k}"] = h.sum(1) / np.minimum(k, n_targets)
        disc = 1.0 / np.log2(np.arange(2, k + 2))
        dcg = (h * disc[: h.shape[1]]).sum(1)
        idcg = np.cumsum(disc)[np.minimum(n_targets, k) - 1]
        out[f"ndcg@{k}"] = dcg / idcg
        first = np.where(h.any(1), h.argmax(1) + 1, np.inf)
        out[f"mrr@{k}"] = np.where(np.isfinite(first), 1.0 / first, 0.0)
        out[f"hit@{k}"] = h.any(1).astype(np.float64)
    return out, has, top


def evaluate_topn(scores: np.ndarray, target: sp.csr_matrix, ks: tuple[int, ...] = (20, 50, 100),
                  seen: sp.csr_matrix | None = None) -> dict[str, float]:
    """Means over the users with targets of `topn_per_user`, plus catalogue coverage@K."""
    per_user, _, top = topn_per_user(scores, target, ks, seen)
    out: dict[str, float] = {}
    for k in ks:
        for name in ("recall", "ndcg", "mrr", "hit"):
            out[f"{name}@{k}"] = float(np.mean(per_user[f"{name}@{k}"]))
        out[f"coverage@{k}"] = float(len(np.unique(top[:, :k])) / np.shape(scores)[1])
    return out
