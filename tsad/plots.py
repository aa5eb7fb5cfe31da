"""The detect plot: series on top, score below with the threshold, anomalies shaded; optionally each
channel's share of the score underneath.

Colours never collide: alerts are red shading, true labels are grey hatching, and the channel colours
(`CHANNEL_COLORS`) exclude both red and grey. Channels whose value ranges differ by more than
`SCALE_RATIO` get one small subplot each (sharing x), so a small channel doesn't look flat next to a
big one. At most `MAX_CHANNELS` channels are drawn; the title says so when there are more.
`build_scores_figure` builds the matplotlib Figure (inspectable in tests); `plot_scores` saves it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.jobs.plots import _figure, save_figure
from tsad.metrics import segments

MAX_CHANNELS = 8
SCALE_RATIO = 10.0
ANOMALY_COLOR = "red"
LABEL_COLOR = "0.45"  # grey: label spans are hatched in it
LABEL_HATCH = "///"
OTHER_COLOR = "0.8"  # the "other channels" band of the contributions panel
# tab10 without red, pink (close to the red alert shading) and grey (the label colour), plus a dark blue
CHANNEL_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#bcbd22", "#17becf", "#393b79")


def _ranges(values: np.ndarray) -> np.ndarray:
    """max − min of each column over its finite values (0 for a column with none)."""
    out = np.zeros(values.shape[1])
    for i in range(values.shape[1]):
        col = values[:, i][np.isfinite(values[:, i])]
        out[i] = col.max() - col.min() if col.size else 0.0
    return out


def scales_differ(values: np.ndarray, ratio: float = SCALE_RATIO) -> bool:
    """Whether the channels' value ranges (max − min, NaN ignored) differ by more than `ratio`."""
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    if values.shape[1] < 2 or not len(values):
        return False
    r = _ranges(values)
    if r.max() <= 0:
        return False
    return bool(r.min() * ratio < r.max())


def _spans(ax: Any, x: Any, mask: np.ndarray, **style: Any) -> None:
    """Shade each run of ones in `mask`, up to the start of the next row (a one-row run stays visible)."""
    last = len(x) - 1
    for lo, hi in segments(mask):
        ax.axvspan(x[lo], x[min(hi + 1, last)], **style)


def _shares(contributions: np.ndarray, n_channels: int, shown: int) -> tuple[np.ndarray, bool]:
    """Row-normalised non-negative shares of the first `shown` channels (plus an 'other' column when
    more channels exist); unscored rows (all NaN) stay NaN, a gap in the stack."""
    c = np.asarray(contributions, dtype=float).reshape(len(contributions), -1)
    if c.shape[1] != n_channels:
        raise ValueError(f"contributions have {c.shape[1]} columns but the series has {n_channels} channels")
    unscored = ~np.isfinite(c).any(axis=1)
    c = np.clip(np.where(np.isfinite(c), c, 0.0), 0.0, None)
    total = c.sum(axis=1, keepdims=True)
    c = np.divide(c, total, out=np.zeros_like(c), where=total > 0)
    c[unscored] = np.nan
    other = n_channels > shown
    if other:
        c = np.column_stack([c[:, :shown], c[:, shown:].sum(axis=1)])
    return c, other


def _positive_scores(score: np.ndarray) -> tuple[np.ndarray, float | None]:
    """Scores for a log axis: non-finite → NaN (a gap), zero/negative → a floor below the smallest
    positive score. The floor is None when there is no positive score (use a linear axis then)."""
    s = np.asarray(score, dtype=float).copy()
    s[~np.isfinite(s)] = np.nan
    with np.errstate(invalid="ignore"):
        positive = s[s > 0]
    if not positive.size:
        return s, None
    floor = float(positive.min()) / 10.0
    with np.errstate(invalid="ignore"):
        s[s <= 0] = floor
    return s, floor


def build_scores_figure(series, result, threshold: float, contributions: np.ndarray | None = None) -> Any:  # noqa: ANN001
    """The detect plot as a matplotlib Figure. `contributions` (rows × channels, NaN where unscored)
    defaults to `result.contributions`; the panel is drawn only for more than one channel."""
    x = series.timestamps if series.timestamps is not None else np.arange(len(series))
    values = np.asarray(series.values, dtype=float).reshape(len(series), -1)
    n_channels = len(series.channels)
    shown = min(n_channels, MAX_CHANNELS)
    if contributions is None:
        contributions = getattr(result, "contributions", None)
    show_contrib = contributions is not None and n_channels > 1
    split = scales_differ(values[:, :shown])
    n_value_axes = shown if split else 1

    heights = [1.0] * n_value_axes if split else [2.0]
    heights += [2.0] + ([1.4] if show_contrib else [])
    fig = _figure(11, 5.5 if not split and not show_contrib else 1.1 * sum(heights) + 1.2)
    axes = list(np.atleast_1d(fig.subplots(len(heights), 1, sharex=True, height_ratios=heights)))
    value_axes, ax_s = axes[:n_value_axes], axes[n_value_axes]
    ax_c = axes[n_value_axes + 1] if show_contrib else None

    for i, name in enumerate(series.channels[:shown]):
        ax = value_axes[i] if split else value_axes[0]
        ax.plot(x, values[:, i], lw=0.7, color=CHANNEL_COLORS[i % len(CHANNEL_COLORS)], label=str(name))
        if split:
            ax.set_ylabel(str(name), fontsize=8)
    if not split:
        value_axes[0].set_ylabel("value")
        if n_channels > 1:
            value_axes[0].legend(fontsize=7, ncol=4)

    score, floor = _positive_scores(result.score)
    ax_s.plot(x, score, lw=0.7, color="black", label="score")
    log_axis = floor is not None and np.isfinite(threshold) and threshold > 0
    if np.isfinite(threshold):
        ax_s.axhline(threshold, color=ANOMALY_COLOR, ls="--", lw=1, label=f"threshold {threshold:.3g}")
    if log_axis:
        ax_s.set_yscale("log")
        ax_s.set_ylim(bottom=min(floor, threshold) * 0.8)
    ax_s.set_ylabel("anomaly score" + (" (log)" if log_axis else ""))
    if floor is None:
        ax_s.text(0.5, 0.5, "no scored rows" if np.isnan(score).all() else "all scores are zero",
                  transform=ax_s.transAxes, ha="center", va="center", fontsize=9, color="0.3")
    ax_s.legend(fontsize=7)

    anomalies = np.asarray(result.is_anomaly, dtype=bool)
    for ax in [*value_axes, ax_s]:
        _spans(ax, x, anomalies, color=ANOMALY_COLOR, alpha=0.25, lw=0)
    has_labels = series.labels is not None and bool(np.nansum(np.asarray(series.labels, dtype=float)) > 0)
    if has_labels:
        for ax in value_axes:
            _spans(ax, x, np.nan_to_num(np.asarray(series.labels, dtype=float)) > 0, facecolor="none",
                   edgecolor=LABEL_COLOR, hatch=LABEL_HATCH, lw=0, alpha=0.6)

    if ax_c is not None:
        shares, other = _shares(contributions, n_channels, shown)
        colors = [CHANNEL_COLORS[i % len(CHANNEL_COLORS)] for i in range(shown)] + ([OTHER_COLOR] if other else [])
        names = [str(n) for n in series.channels[:shown]] + ([f"other {n_channels - shown}"] if other else [])
        ax_c.stackplot(x, shares.T, colors=colors, labels=names, lw=0)
        ax_c.set_ylim(0, 1)
        ax_c.set_ylabel("channel share\nof score", fontsize=8)
        ax_c.legend(fontsize=6, ncol=min(len(names), 5), loc="upper left")
        ax_c.set_gid("contributions")

    title = f"{series.name}: {int(anomalies.sum())} anomalous rows (red)"
    if has_labels:
        title += "; labelled anomalies hatched grey"
    elif series.labels is not None:
        title += "; no labelled anomalies"
    if n_channels > MAX_CHANNELS:
        title += f"; first {MAX_CHANNELS} of {n_channels} channels"
    fig.suptitle(title)
    return fig


def plot_scores(series, result, threshold: float, path: str | Path,  # noqa: ANN001
                contributions: np.ndarray | None = None) -> Path:
    """Write the detect plot (see `build_scores_figure`) to `path` as a PNG, atomically."""
    return save_figure(build_scores_figure(series, result, threshold, contributions), path)
