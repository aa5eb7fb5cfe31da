"""Thresholds on anomaly scores, and a calibration of scores to [0, 1].

Each threshold is fitted on scores of normal (training) data: `fit(train_scores)` sets `threshold_`.
- `max`: the Keras example's rule, the largest training score (times an optional margin);
- `percentile`: the q-th percentile of training scores;
- `contamination`: the score above which the given fraction of training points lies;
- `pot`: Peaks-Over-Threshold (Siffer et al., KDD 2017): a generalised Pareto fitted to the excesses
  over a high initial quantile gives the score exceeded with probability `risk`.
`TailCalibrator` maps a score to the probability that a normal score is lower (empirical CDF in the
body, the fitted Pareto in the tail), so one cut such as 0.999 reads the same on every series.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from core.errors import UserError
from core.typecheck import check_field_types


def _clean(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=float).ravel()
    s = s[np.isfinite(s)]
    if len(s) == 0:
        raise UserError("cannot fit a threshold: no finite training scores")
    return s


def fit_gpd(excesses: np.ndarray) -> tuple[float, float]:
    """Shape and scale of a generalised Pareto on positive excesses (location fixed at 0)."""
    excesses = excesses[excesses > 0]
    if len(excesses) < 10:
        return 0.0, float(np.mean(excesses)) if len(excesses) else 1e-12
    shape, _, scale = stats.genpareto.fit(excesses, floc=0.0)
    return float(shape), float(max(scale, 1e-12))


def pot_quantile(t: float, shape: float, scale: float, n: int, n_peaks: int, risk: float) -> float:
    r = risk * n / max(n_peaks, 1)
    if abs(shape) < 1e-6:
        return t - scale * math.log(r)
    return t + scale / shape * (r ** (-shape) - 1.0)


@dataclass
class Threshold:
    name: str = "max"
    q: float = 99.0
    rate: float = 0.01
    risk: float = 1e-3
    init_quantile: float = 0.98
    margin: float = 1.0
    threshold_: float = math.nan

    def fit(self, train_scores: np.ndarray) -> Threshold:
        s = _clean(train_scores)
        if self.name == "max":
            self.threshold_ = float(s.max() * self.margin)
        elif self.name == "percentile":
            if not 0 < self.q < 100:
                raise UserError("--percentile must be in (0, 100)")
            self.threshold_ = float(np.percentile(s, self.q) * self.margin)
        elif self.name == "contamination":
            if not 0 < self.rate < 0.5:
                raise UserError("--contamination must be in (0, 0.5)")
            self.threshold_ = float(np.quantile(s, 1 - self.rate) * self.margin)
        elif self.name == "pot":
            t = float(np.quantile(s, self.init_quantile))
            peaks = s[s > t] - t
            shape, scale = fit_gpd(peaks)
            self.threshold_ = float(pot_quantile(t, shape, scale, len(s), len(peaks), self.risk) * self.margin)
        else:
            raise UserError(f"unknown threshold {self.name!r}; choose max, percentile, contamination or pot")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Threshold:
        return cls(**d)

    def check(self) -> None:
        """A read-back threshold must be a finite number and a known rule."""
        check_field_types(self, "threshold")
        if not _is_number(getattr(self, "threshold_", None)):
            raise UserError(f"the alert threshold is {getattr(self, 'threshold_', None)!r}, not a finite number")


class TailCalibrator:
    """Score → probability that a normal score is smaller: empirical CDF below the tail quantile, a
    generalised Pareto above it. Monotone, in [0, 1], fitted on training scores only."""

    def __init__(self, tail_quantile: float = 0.95, n_knots: int = 512) -> None:
        self.tail_quantile, self.n_knots = tail_quantile, n_knots

    def fit(self, train_scores: np.ndarray) -> TailCalibrator:
        s = np.sort(_clean(train_scores))
        probs = np.linspace(0, self.tail_quantile, self.n_knots)
        self.knots_ = np.quantile(s, probs)
        self.probs_ = probs
        self.t_ = float(self.knots_[-1])
        shape, scale = fit_gpd(s[s > self.t_] - self.t_)
        self.shape_, self.scale_ = shape, scale
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        x = np.asarray(scores, dtype=float)
        out = np.interp(x, self.knots_, self.probs_, left=0.0)
        tail = x > self.t_
        if tail.any():
            excess = x[tail] - self.t_
            sf = stats.genpareto.sf(excess, self.shape_, loc=0.0, scale=self.scale_)
            out[tail] = 1.0 - (1.0 - self.tail_quantile) * sf
        out[~np.isfinite(x)] = np.nan
        return np.clip(out, 0.0, 1.0)

    def surprise(self, scores: np.ndarray) -> np.ndarray:
        """−log10 of the probability that a normal score is at least this high: unlike the
        probability it does not saturate at 1 in floating point, so extreme scores stay ordered."""
        x = np.asarray(scores, dtype=float)
        p_exceed = 1.0 - np.interp(x, self.knots_, self.probs_, left=0.0)
        out = -np.log10(np.maximum(p_exceed, 1e-300))
        tail = x > self.t_
        if tail.any():
            logsf = stats.genpareto.logsf(x[tail] - self.t_, self.shape_, loc=0.0, scale=self.scale_)
            out[tail] = -(np.log(1.0 - self.tail_quantile) + logsf) / np.log(10.0)
        out[~np.isfinite(x)] = np.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"tail_quantile": self.tail_quantile, "n_knots": self.n_knots, "knots": self.knots_.tolist(),
                "probs": self.probs_.tolist(), "t": self.t_, "shape": self.shape_, "scale": self.scale_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TailCalibrator:
        c = cls(d["tail_quantile"], d["n_knots"])
        c.knots_, c.probs_ = np.asarray(d["knots"]), np.asarray(d["probs"])
        c.t_, c.shape_, c.scale_ = d["t"], d["shape"], d["scale"]
        return c

    def check(self) -> None:
        """A read-back calibrator must be a monotone map onto [0, tail_quantile] with a finite tail."""
        knots, probs = self.knots_, self.probs_
        if not all(_is_number(v) for v in (self.tail_quantile, self.t_, self.shape_, self.scale_)):
            raise UserError("the score calibrator's tail parameters are not finite numbers")
        if (knots.ndim != 1 or knots.shape != probs.shape or len(knots) < 2 or knots.dtype.kind not in "fiu"
                or probs.dtype.kind not in "fiu" or not (np.isfinite(knots).all() and np.isfinite(probs).all())
                or (np.diff(knots) < 0).any() or (np.diff(probs) < 0).any()
                or not 0 < self.tail_quantile < 1 or self.scale_ <= 0 or self.t_ != knots[-1]):
            raise UserError("the score calibrator is inconsistent (knots and probabilities do not match)")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
