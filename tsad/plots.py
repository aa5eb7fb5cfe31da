"""The detect plot: series on top, score below with the threshold, anomalies shaded in both."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.jobs.plots import _figure, save_figure
from tsad.metrics import segments


def plot_scores(series, result, threshold: float, path: str | Path) -> Path:  # noqa: ANN001
    x = series.timestamps if series.timestamps is not None else np.arange(len(series))
    fig = _figure(11, 5.5)
    ax_v, ax_s = fig.subplots(2, 1, sharex=True)
    for i, name in enumerate(series.channels[:8]):
        ax_v.plot(x, series.values[:, i], lw=0.7, label=name)
    if len(series.channels) > 1:
        ax_v.legend(fontsize=7, ncol=4)
    ax_v.set_ylabel("value")
    ax_s.plot(x, result.score, lw=0.7, color="black", label="score")
    ax_s.axhline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax_s.set_ylabel("anomaly score")
    ax_s.set_yscale("log")
    ax_s.legend(fontsize=7)
    for lo, hi in segments(result.is_anomaly):
        for ax in (ax_v, ax_s):
            ax.axvspan(x[lo], x[hi], color="red", alpha=0.25, lw=0)
    if series.labels is not None:
        for lo, hi in segments(series.labels):
            ax_v.axvspan(x[lo], x[hi], color="orange", alpha=0.15, lw=0)
    fig.suptitle(f"{series.name}: {int(result.is_anomaly.sum())} anomalous rows (red); labels in orange")
    return save_figure(fig, path)
