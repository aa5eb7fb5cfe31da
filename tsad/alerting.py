"""Alerting: how a row's score becomes an alert, saved with the model and applied by every command.

Three modes, one contract. `apply(score, surprise, values, state)` takes a batch of consecutive
rows of one series (their raw scores, the calibrated surprise −log10 p of each score, and the
rows' values) and the state left by the rows before them, and returns each row's alert score, its
alert decision and the state for the next batch. The state is plain JSON, so `detect` (one batch:
the whole file), `score --state` (chunks, across runs) and `monitor` (micro-batches, across
restarts) give the same alerts row for row.

- `threshold`: a fixed threshold fitted on the training errors (tsad.thresholds); stateless.
- `adaptive`: how unusual the error's surprise is against its own recent past (a rolling gaussian
  over the last `long` rows, as NAB's anomaly likelihood), optionally the larger of that and a level
  check (the values' rolling z-score over `level_window` rows, for shifts the error adapts to),
  then onsets (a row counts only when it exceeds the previous `peak_window` rows, so a long
  anomaly raises one alarm at its start), squashed into [0, 1) and compared with `cutoff`.
  This is what `evaluate --benchmark nab` measures. It adapts to drift the training data never
  showed.
- `spot`: streaming peaks-over-threshold (Siffer et al., KDD 2017): a generalised Pareto tail fitted
  to the training errors above their `init_quantile`, updated with every later error above that
  level that is not itself an alert; an error above the tail's `risk` quantile is an alert. The
  tail is refitted by the method of moments (closed form, so a stream can afford it per peak) over
  at most `max_peaks` recent peaks, which also lets it follow drift.

Rows without a score (the first `window − 1`) never alert; `adaptive` counts them as surprise 0
and `spot` skips them, in every command alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats

from core.errors import UserError

MODES = ("threshold", "adaptive", "spot")
MAX_SURPRISE = 1000.0


@dataclass
class AlertingConfig:
    """The alerting section of a detector config (see the module docstring for each mode)."""

    # spot, at risk 1e-5, with centred windows: the default since config version 3, chosen on drifting
    # tuning streams (bench/tsad_drift_default.py); saved models of version 2 keep threshold and 1e-4
    mode: str = "spot"
    long: int = 1000  # adaptive: rows of surprise history
    short: int = 1  # adaptive: rows averaged for the current surprise
    min_history: int = 50  # adaptive: rows needed before the history counts
    peak_window: int = 100  # adaptive: onsets look back this many rows
    level: bool = False  # adaptive: also check the values' level
    level_window: int = 0  # adaptive: rows of the level check (0: max(100, training rows))
    cutoff: float = 0.5  # adaptive: alert when the squashed score reaches this
    risk: float = 1e-5  # spot: probability of a normal error above the alert level (per row)
    init_quantile: float = 0.98  # spot: the tail starts at this quantile of the training errors
    max_peaks: int = 1000  # spot: the tail is fitted on at most this many recent peaks

    def validate(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"unknown alerting {self.mode!r}; choose one of {', '.join(MODES)}")
        if min(self.long, self.short, self.min_history, self.peak_window, self.max_peaks) < 1 or self.level_window < 0:
            raise UserError("alerting window lengths must be at least 1")
        if max(self.long, self.peak_window, self.level_window) > 100_000:
            raise UserError("alerting window lengths must be at most 100000")
        if not 0 < self.cutoff < 1 or not 0 < self.risk < 0.1 or not 0.5 <= self.init_quantile < 1:
            raise UserError("alerting: cutoff must be in (0, 1), risk in (0, 0.1), init_quantile in [0.5, 1)")


def squash(surprise: np.ndarray, scale: float = 4.0) -> np.ndarray:
    """Map a non-negative surprise (−log10 p) monotonically into [0, 1)."""
    return 1.0 - np.exp(-np.nan_to_num(np.asarray(surprise, dtype=float), nan=0.0) / scale)


def _past_windows(history: np.ndarray, new: np.ndarray, window: int) -> np.ndarray:
    """For each new row, the `window` rows before it (NaN-padded at the start of the series):
    shape (n, window) or (n, window, channels)."""
    data = np.concatenate([history, new]) if len(history) else new
    pad = np.full((window,) + data.shape[1:], np.nan)
    padded = np.concatenate([pad, data])
    start = window + len(history)  # index of the first new row in `padded`
    views = sliding_window_view(padded, window, axis=0)[start - window:start - window + len(new)]
    return np.moveaxis(views, -1, 1) if data.ndim == 2 else views


def _mean_std(windows: np.ndarray, min_periods: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std over axis 1 ignoring NaN; NaN where fewer than `min_periods` values."""
    count = np.sum(~np.isnan(windows), axis=1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        total = np.nansum(windows, axis=1)
        mean = total / count
        dev = np.nansum((windows - np.expand_dims(mean, 1)) ** 2, axis=1)
        std = np.sqrt(dev / (count - 1))
    short = count < max(min_periods, 2)
    return np.where(short, np.nan, mean), np.where(short, np.nan, std)


def _tail(history: np.ndarray, new: np.ndarray, keep: int) -> np.ndarray:
    data = np.concatenate([history, new]) if len(history) else new
    return data[max(0, len(data) - keep):]


# ------------------------------------------------------------------------------------ threshold
class ThresholdAlerting:
    mode = "threshold"

    def __init__(self, config: AlertingConfig, threshold: float) -> None:
        self.config, self.threshold = config, float(threshold)

    def fresh_state(self) -> dict[str, Any]:
        return {}

    def apply(self, score: np.ndarray, surprise: np.ndarray, values: np.ndarray,
              state: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        flags = np.nan_to_num(score, nan=-np.inf) > self.threshold
        return np.asarray(score, dtype=float), flags, state

    def describe(self) -> float:
        return self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold}


# ------------------------------------------------------------------------------------- adaptive
class AdaptiveAlerting:
    mode = "adaptive"

    def __init__(self, config: AlertingConfig, level_window: int) -> None:
        self.config, self.level_window = config, int(level_window)

    def fresh_state(self) -> dict[str, Any]:
        return {"surprise": [], "values": [], "combined": []}

    def apply(self, score: np.ndarray, surprise: np.ndarray, values: np.ndarray,
              state: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        cfg = self.config
        if not len(score):
            return np.empty(0), np.zeros(0, dtype=bool), state
        values = np.asarray(values, dtype=float).reshape(len(score), -1)
        s_hist = np.asarray(state.get("surprise", []), dtype=float)
        # a surprise beyond MAX_SURPRISE (p < 1e-1000) means nothing more; capped, the rolling sums stay finite
        s_new = np.clip(np.nan_to_num(np.asarray(surprise, dtype=float), nan=0.0), 0.0, MAX_SURPRISE)
        # likelihood: the current surprise (mean of the last `short`) against the `long` rows before it
        mean, std = _mean_std(_past_windows(s_hist, s_new, cfg.long), cfg.min_history)
        current = np.nanmean(np.concatenate([_past_windows(s_hist, s_new, cfg.short - 1),
                                             s_new[:, None]], axis=1), axis=1) if cfg.short > 1 else s_new
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.nan_to_num((current - mean) / np.where(std > 0, std, np.nan), nan=0.0)
        combined = -stats.norm.logsf(z) / np.log(10.0)
        v_hist = np.asarray(state.get("values", []), dtype=float).reshape(-1, values.shape[1])
        if cfg.level:
            w = self.level_window
            lmean, lstd = _mean_std(_past_windows(v_hist, values, w), max(3, w // 10))
            with np.errstate(invalid="ignore", divide="ignore"):
                lz = np.abs((values - lmean) / np.where(lstd > 0, lstd, np.nan))
            largest = np.fmax.reduce(lz, axis=1)  # over channels, NaN only where every channel is
            level = np.nan_to_num(-(np.log(2.0) + stats.norm.logsf(largest)) / np.log(10.0), nan=0.0)
            combined = np.maximum(combined, level)
        # onsets: a row counts only above every one of the `peak_window` rows before it
        c_hist = np.asarray(state.get("combined", []), dtype=float)
        previous = np.nan_to_num(np.fmax.reduce(_past_windows(c_hist, combined, cfg.peak_window), axis=1), nan=0.0)
        alert_score = squash(np.where(combined > previous, combined, 0.0))
        new_state = {"surprise": _tail(s_hist, s_new, max(cfg.long, cfg.short - 1)).tolist(),
                     "values": (_tail(v_hist, values, self.level_window).tolist() if cfg.level else []),
                     "combined": _tail(c_hist, combined, cfg.peak_window).tolist()}
        return alert_score, alert_score >= cfg.cutoff, new_state

    def describe(self) -> float:
        return self.config.cutoff

    def to_dict(self) -> dict[str, Any]:
        return {"level_window": self.level_window}


# ----------------------------------------------------------------------------------------- spot
def gpd_moments(excesses: np.ndarray | list[float]) -> tuple[float, float]:
    """Shape and scale of a generalised Pareto by the method of moments (closed form; needs the
    shape below 1/2, which holds for the light tails of reconstruction errors)."""
    x = np.asarray(excesses, dtype=float)
    if len(x) < 2:
        return 0.0, float(x.mean()) if len(x) else 1e-12
    m, v = float(x.mean()), float(x.var(ddof=1))
    if v <= 0 or m <= 0:
        return 0.0, max(m, 1e-12)
    ratio = m * m / v
    return 0.5 * (1.0 - ratio), max(0.5 * m * (ratio + 1.0), 1e-12)


def spot_level(t: float, shape: float, scale: float, n: int, n_peaks: int, risk: float) -> float:
    """The error exceeded with probability `risk`, from the tail above `t` (Siffer et al. eq. 1)."""
    r = risk * n / max(n_peaks, 1)
    if abs(shape) < 1e-6:
        return t - scale * math.log(r)
    return t + scale / shape * (r ** (-shape) - 1.0)


class SpotAlerting:
    mode = "spot"

    def __init__(self, config: AlertingConfig, t: float, peaks: list[float], n: int) -> None:
        self.config, self.t, self.peaks, self.n = config, float(t), [float(p) for p in peaks], int(n)

    @classmethod
    def fit(cls, config: AlertingConfig, train_scores: np.ndarray) -> SpotAlerting:
        s = np.asarray(train_scores, dtype=float)
        s = s[np.isfinite(s)]
        t = float(np.quantile(s, config.init_quantile))
        peaks = (s[s > t] - t)[-config.max_peaks:]
        return cls(config, t, peaks.tolist(), len(s))

    def fresh_state(self) -> dict[str, Any]:
        return {"peaks": list(self.peaks), "n": self.n}

    def level(self, peaks: list[float], n: int) -> float:
        shape, scale = gpd_moments(peaks)
        return spot_level(self.t, shape, scale, n, len(peaks), self.config.risk)

    def apply(self, score: np.ndarray, surprise: np.ndarray, values: np.ndarray,
              state: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        peaks, n = list(state.get("peaks", self.peaks)), int(state.get("n", self.n))
        shape, scale = gpd_moments(peaks)  # refitted only when the peaks change; the level moves with n
        # plain Python floats in the loop (a monitor runs it for every micro-batch; numpy scalars cost
        # several times more per row here)
        alert_score = [math.nan] * len(score)
        flags = [False] * len(score)
        for i, s in enumerate(np.asarray(score, dtype=float).tolist()):
            if not math.isfinite(s):
                continue
            z = spot_level(self.t, shape, scale, n, len(peaks), self.config.risk)
            alert_score[i] = s / z if z > 0 else math.inf  # above 1: an alert
            if s > z:
                flags[i] = True  # an alert is not learned from
                continue
            n += 1
            if s > self.t:
                peaks.append(s - self.t)
                if len(peaks) > self.config.max_peaks:
                    del peaks[0]
                shape, scale = gpd_moments(peaks)
        return np.asarray(alert_score, dtype=float), np.asarray(flags, dtype=bool), {"peaks": peaks, "n": n}

    def describe(self) -> float:
        return self.level(self.peaks, self.n)

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "peaks": self.peaks, "n": self.n}


Alerting = ThresholdAlerting | AdaptiveAlerting | SpotAlerting


def fit_alerting(config: AlertingConfig, threshold: float, train_scores: np.ndarray, train_rows: int) -> Alerting:
    """The fitted alerting of a detector, from its training errors (and fixed threshold)."""
    config.validate()
    if config.mode == "threshold":
        return ThresholdAlerting(config, threshold)
    if config.mode == "adaptive":
        return AdaptiveAlerting(config, config.level_window or max(100, train_rows))
    return SpotAlerting.fit(config, train_scores)


def alerting_from_dict(config: AlertingConfig, threshold: float, d: dict[str, Any] | None) -> Alerting:
    """Rebuild a saved alerting; a model saved before alerting was kept has the threshold mode."""
    config.validate()
    d = d or {}
    if config.mode == "threshold":
        return ThresholdAlerting(config, threshold)
    if config.mode == "adaptive":
        return AdaptiveAlerting(config, int(d["level_window"]))
    return SpotAlerting(config, float(d["t"]), list(d["peaks"]), int(d["n"]))


def config_dict(config: AlertingConfig) -> dict[str, Any]:
    return asdict(config)
