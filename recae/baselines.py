"""Baselines every model must beat, computed in the same run.

Explicit ratings: GlobalMean, BiasBaseline (μ + b_u + b_i, shrunk, a few alternating passes).
Top-N: Popularity, EASE (Steck 2019: B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, diag(B) = 0),
ItemKNN (cosine on the binary matrix, shrunk, top-k neighbours per item) and RP3beta (Paudel et
al. 2017 as implemented by Dacrema et al. 2019). Every top-N baseline learns an item×item matrix
from the binary training matrix and scores a user as fold-in row @ that matrix, so a new user
needs no refit (the strong-generalisation protocol). The item×item matrices are dense: fine for
MovieLens-sized catalogues (1682 items = 22 MB), not for 100k items. `TOPN_BASELINES` holds each
baseline with the small grid it is tuned over on validation users (recae.protocol).
Indices are the id-map indices of recae.interactions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp


class GlobalMean:
    def fit(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> GlobalMean:
        self.mean_ = float(np.mean(ratings))
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(users), self.mean_)


class BiasBaseline:
    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, n_iter: int = 10) -> None:
        self.reg_user, self.reg_item, self.n_iter = reg_user, reg_item, n_iter

    def fit(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
            n_users: int | None = None, n_items: int | None = None) -> BiasBaseline:
        n_users = int(users.max()) + 1 if n_users is None else n_users
        n_items = int(items.max()) + 1 if n_items is None else n_items
        self.mu_ = float(np.mean(ratings))
        self.lo_, self.hi_ = float(np.min(ratings)), float(np.max(ratings))
        bu, bi = np.zeros(n_users), np.zeros(n_items)
        cu = np.bincount(users, minlength=n_users)
        ci = np.bincount(items, minlength=n_items)
        for _ in range(self.n_iter):
            bi = np.bincount(items, ratings - self.mu_ - bu[users], minlength=n_items) / (ci + self.reg_item)
            bu = np.bincount(users, ratings - self.mu_ - bi[items], minlength=n_users) / (cu + self.reg_user)
        self.bu_, self.bi_ = bu, bi
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        bu = np.where(users >= 0, self.bu_[np.clip(users, 0, None)], 0.0)
        bi = np.where(items >= 0, self.bi_[np.clip(items, 0, None)], 0.0)
        return np.clip(self.mu_ + bu + bi, self.lo_, self.hi_)


class Popularity:
    def fit(self, train: sp.csr_matrix) -> Popularity:
        self.counts_ = np.asarray((train > 0).sum(axis=0)).ravel().astype(float)
        return self

    def scores(self, fold_in: sp.csr_matrix) -> np.ndarray:
        return np.tile(self.counts_, (fold_in.shape[0], 1))


class EASE:
    """`reg` (λ) is tuned on validation users by recae.protocol; 500 is only the untuned default."""

    def __init__(self, reg: float = 500.0) -> None:
        self.reg = reg

    def fit(self, train: sp.csr_matrix) -> EASE:
        x = (train > 0).astype(np.float64)
        g = (x.T @ x).toarray()
        g[np.diag_indices_from(g)] += self.reg
        p = np.linalg.inv(g)
        b = -p / np.diag(p)
        b[np.diag_indices_from(b)] = 0.0
        self.B_ = b
        return self

    def scores(self, fold_in: sp.csr_matrix) -> np.ndarray:
        return np.asarray((fold_in > 0).astype(np.float64) @ self.B_)


def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    return sp.csr_matrix((sp.csr_matrix(matrix) > 0).astype(np.float64))


def _keep_top_k(w: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Zero all but the k largest entries of every column (axis=0) or row (axis=1) of `w`."""
    n = w.shape[axis]
    if k >= n:
        return w
    top = np.argpartition(-w, k - 1, axis=axis)
    top = top[:k] if axis == 0 else top[:, :k]
    out = np.zeros_like(w)
    np.put_along_axis(out, top, np.take_along_axis(w, top, axis=axis), axis=axis)
    return out


class ItemKNN:
    """Item-based k-nearest neighbours (Sarwar et al. 2001; Deshpande & Karypis 2004) on binary data.

    s_ij = |U_i ∩ U_j| / (‖x_i‖·‖x_j‖ + shrink): cosine similarity of the items' user columns,
    shrunk towards 0 for items with few users (an unreliable similarity is damped rather than
    trusted). Each candidate item j keeps its `k` most similar items as neighbours; a user's score
    for j is the sum of the similarities between j and the user's items among those neighbours.
    """

    def __init__(self, k: int = 100, shrink: float = 0.0) -> None:
        self.k, self.shrink = k, shrink

    def fit(self, train: sp.csr_matrix) -> ItemKNN:
        x = _binary(train)
        co = (x.T @ x).toarray()
        norms = np.sqrt(np.diag(co))
        sim = co / (np.outer(norms, norms) + self.shrink + 1e-12)
        np.fill_diagonal(sim, 0.0)
        # column j holds the similarities of every item to j: keep j's k nearest neighbours
        self.W_ = _keep_top_k(sim, self.k, axis=0)
        return self

    def scores(self, fold_in: sp.csr_matrix) -> np.ndarray:
        return np.asarray(_binary(fold_in) @ self.W_)


class RP3beta:
    """RP3beta (Paudel et al. 2017), the three-step random walk user → item → user → item of P3α
    (Cooper et al. 2014) with the landing item's popularity divided out, as in Dacrema et al.'s
    reference implementation: P_ui (users×items) and P_iu (items×users) are the row-normalised
    binary matrix and its transpose, both raised element-wise to α (α < 1 flattens the transition
    probabilities), W_ij = (P_iu^α @ P_ui^α)_ij / popularity_j^β (β > 0 demotes popular items, the
    walk's bias), diag(W) = 0 and each row keeps its `k` largest entries. With α = 1 the power
    falls on the product, (P_iu @ P_ui)^α, just the same."""

    def __init__(self, alpha: float = 1.0, beta: float = 0.3, k: int = 200) -> None:
        self.alpha, self.beta, self.k = alpha, beta, k

    def fit(self, train: sp.csr_matrix) -> RP3beta:
        x = _binary(train)
        p_ui = _row_normalise(x).power(self.alpha)
        p_iu = _row_normalise(sp.csr_matrix(x.T)).power(self.alpha)
        w = (p_iu @ p_ui).toarray()
        popularity = np.asarray(x.sum(axis=0)).ravel()
        degree = np.zeros_like(popularity)
        seen = popularity > 0
        degree[seen] = popularity[seen] ** -self.beta
        w *= degree[None, :]
        np.fill_diagonal(w, 0.0)
        self.W_ = _keep_top_k(w, self.k, axis=1)
        return self

    def scores(self, fold_in: sp.csr_matrix) -> np.ndarray:
        return np.asarray(_binary(fold_in) @ self.W_)


def _row_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(m.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(inv) @ m)


class TopNBaseline(Protocol):
    def fit(self, train: sp.csr_matrix) -> Any: ...

    def scores(self, fold_in: sp.csr_matrix) -> np.ndarray: ...


@dataclass(frozen=True)
class BaselineSpec:
    """A top-N baseline and the grid of settings it is tuned over on validation users. The grids
    are small on purpose: a few points spanning the range where each method is known to work on
    MovieLens-sized data, so that tuning costs seconds, not the autoencoders' minutes."""

    name: str
    build: Callable[..., TopNBaseline]
    grid: tuple[dict[str, Any], ...] = field(default_factory=lambda: ({},))


TOPN_BASELINES: dict[str, BaselineSpec] = {b.name: b for b in (
    BaselineSpec("popularity", Popularity),
    BaselineSpec("ease", EASE, tuple({"reg": r} for r in (50.0, 100.0, 200.0, 500.0, 1000.0))),
    # k widened after the first grid (50/100/200) chose its edge k = 200 on two folds
    BaselineSpec("itemknn", ItemKNN, tuple({"k": k, "shrink": s} for k in (50, 100, 200, 400, 800)
                                           for s in (0.0, 10.0, 50.0))),
    # α × β widened after the first grid (α 0.5/1, β 0/0.3/0.6) chose its edge β = 0.6 on every fold
    BaselineSpec("rp3beta", RP3beta, tuple({"alpha": a, "beta": b} for a in (0.25, 0.5, 0.75, 1.0)
                                           for b in (0.0, 0.3, 0.6, 0.9, 1.2))),
)}
