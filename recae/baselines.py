"""Baselines every model must beat, computed in the same run.

Explicit ratings: GlobalMean, BiasBaseline (μ + b_u + b_i, shrunk, a few alternating passes).
Top-N: Popularity, EASE (Steck 2019: B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, diag(B) = 0).
Indices are the id-map indices of recae.interactions.
"""

from __future__ import annotations

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
