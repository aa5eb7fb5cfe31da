"""Baselines computed in the same run as the detector: every bar is a comparison, not a number.

- RollingZScore: NAB's "windowed gaussian": the distance of each point from the mean of the
  previous `window` points, in standard deviations (causal), worst channel wins.
- PCABaseline: PCA reconstruction on standardised training data, score = Q (squared prediction
  error) + T² (Hotelling), each divided by its training median so neither dominates.
- IsolationForestBaseline: scikit-learn's IsolationForest, score = −score_samples (higher = odder).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def _2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[:, None] if x.ndim == 1 else x


class RollingZScore:
    def __init__(self, window: int = 100) -> None:
        self.window = window

    def fit(self, train: np.ndarray) -> RollingZScore:
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame(_2d(x))
        past = frame.shift(1).rolling(self.window, min_periods=max(3, self.window // 10))
        z = (frame - past.mean()) / past.std().replace(0, np.nan)
        return z.abs().max(axis=1).to_numpy()

    @staticmethod
    def surprise(z: np.ndarray) -> np.ndarray:
        """−log10 of the two-sided gaussian tail probability of |z| (does not saturate)."""
        return np.nan_to_num(-(np.log(2.0) + stats.norm.logsf(np.abs(z))) / np.log(10.0), nan=0.0)


class PCABaseline:
    def __init__(self, n_components: float | int = 0.95) -> None:
        self.n_components = n_components

    def fit(self, train: np.ndarray) -> PCABaseline:
        from sklearn.decomposition import PCA

        x = _2d(train)
        self.mean_, std = x.mean(axis=0), x.std(axis=0)
        self.std_ = np.where(std > 1e-8, std, 1.0)
        z = (x - self.mean_) / self.std_
        self.pca_ = PCA(n_components=self.n_components, svd_solver="full").fit(z)
        q, t2 = self._parts(z)
        self.q_scale_, self.t2_scale_ = max(np.median(q), 1e-12), max(np.median(t2), 1e-12)
        return self

    def _parts(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        code = self.pca_.transform(z)
        q = ((z - self.pca_.inverse_transform(code)) ** 2).sum(axis=1)
        t2 = (code ** 2 / np.maximum(self.pca_.explained_variance_, 1e-12)).sum(axis=1)
        return q, t2

    def score(self, x: np.ndarray) -> np.ndarray:
        q, t2 = self._parts((_2d(x) - self.mean_) / self.std_)
        return q / self.q_scale_ + t2 / self.t2_scale_


class IsolationForestBaseline:
    def __init__(self, n_estimators: int = 100, seed: int = 0) -> None:
        self.n_estimators, self.seed = n_estimators, seed

    def fit(self, train: np.ndarray) -> IsolationForestBaseline:
        from sklearn.ensemble import IsolationForest

        self.model_ = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed).fit(_2d(train))
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(_2d(x))
