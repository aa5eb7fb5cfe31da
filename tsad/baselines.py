"""Baselines computed in the same run as the detector: every bar is a comparison, not a number.

- WindowedGaussian: NAB's published "windowedGaussian" detector (the `windowed_gaussian` bar in the
  NAB benchmark): 1 − the gaussian tail probability of each value under the mean and population
  std of the values before it (all of them until 6400 are seen, then a 6400-row window slid every
  100 rows), written to 12 significant digits as NAB's result files hold it.
- RollingZScore: the distance of each point from the mean of the previous `window` points, in
  standard deviations (causal), worst channel wins. Not NAB's detector: a short-window level check.
- PCABaseline: PCA reconstruction on standardised training data, score = Q (squared prediction
  error) + T² (Hotelling), each divided by its training median so neither dominates.
- IsolationForestBaseline: scikit-learn's IsolationForest, score = −score_samples (higher = odder).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special, stats


def _2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[:, None] if x.ndim == 1 else x


class WindowedGaussian:
    """NAB's windowedGaussian detector (numenta/NAB, nab/detectors/gaussian), re-written vectorised.

    Row i is scored before it joins the window, against the window's current mean and population
    std (std 0 is replaced by 1e-6): score = 1 − Q(|x − mean| / std), Q the gaussian upper tail,
    so scores lie in [0.5, 1] and the first row scores 0. A NaN value stays in the window and makes
    the scores NaN until it leaves (as in NAB, whose corpus has none).
    - While the window holds fewer than `window` rows every row is appended and the statistics are
      refreshed at once: row i (i ≤ window) is scored against rows 0..i−1.
    - Once full, new rows wait in a buffer; when `step` have arrived the window drops its oldest
      `step` rows, takes the buffer and is refreshed: row i ≥ window is scored against rows
      s..s+window−1 with s = step·⌊(i − window)/step⌋.
    The detector ignores NAB's probationary period (the scorer skips those rows) and needs no
    training. NAB's published result files hold each score to 12 significant digits (Python 2's
    str), so every value within 5e-13 of 1 ties at exactly 1.0, the threshold NAB's optimiser picks
    for this detector on all three profiles; `significant_digits` (None: full precision) applies
    that rounding. Several channels: each is scored alone and the worst channel wins.
    """

    def __init__(self, window: int = 6400, step: int = 100, significant_digits: int | None = 12) -> None:
        if window < 1 or step < 1:
            raise ValueError("window and step must be at least 1")
        self.window, self.step, self.significant_digits = window, step, significant_digits

    def fit(self, train: np.ndarray) -> WindowedGaussian:
        return self

    def moments(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and population std each row of a 1-D series is scored against (NaN for row 0)."""
        x = np.asarray(x, dtype=float)
        n = len(x)
        mean, std = np.full(n, np.nan), np.full(n, np.nan)
        grow = min(n, self.window)  # rows 1..window−1 (still filling) use every row before them
        if grow > 1:
            d = x[:grow - 1] - x[0]  # shifted, so a constant start gives a variance of exactly 0
            count = np.arange(1, grow)
            s1, s2 = np.cumsum(d), np.cumsum(d * d)
            m = s1 / count
            mean[1:grow] = x[0] + m
            std[1:grow] = np.sqrt(np.maximum(s2 / count - m * m, 0.0))
        for lo in range(0, max(n - self.window, 0), self.step):  # rows lo+window .. lo+window+step−1
            block = x[lo:lo + self.window]
            rows = slice(lo + self.window, min(lo + self.window + self.step, n))
            mean[rows], std[rows] = block.mean(), block.std()
        std[std == 0.0] = 1e-6
        return mean, std

    def _score_1d(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        mean, std = self.moments(x)
        out = 1.0 - 0.5 * special.erfc(np.abs(x - mean) / std / np.sqrt(2.0))
        if len(out):
            out[0] = 0.0
        if self.significant_digits is not None:
            out = np.array([float(f"{v:.{self.significant_digits}g}") for v in out.tolist()])
        return out

    def score(self, x: np.ndarray) -> np.ndarray:
        cols = _2d(x)
        return np.max(np.column_stack([self._score_1d(cols[:, j]) for j in range(cols.shape[1])]), axis=1) \
            if cols.shape[1] else np.zeros(len(cols))


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
