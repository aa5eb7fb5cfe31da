"""The detect plot and the latent plot, checked on the matplotlib Figure they build (no CLI, no training)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from core.jobs.plots import build_latent_figure, plot_latent
from tsad.datasets import Series
from tsad.plots import (
    ANOMALY_COLOR,
    CHANNEL_COLORS,
    LABEL_COLOR,
    MAX_CHANNELS,
    build_scores_figure,
    plot_scores,
    scales_differ,
)

N = 120


def _series(channels: int = 1, scales: list[float] | None = None, labels: bool = False, seed: int = 0,
            timestamps: bool = True) -> Series:
    rng = np.random.default_rng(seed)
    scales = scales or [1.0] * channels
    t = np.arange(N)
    values = np.column_stack([s * (np.sin(2 * np.pi * t / 20 + c) + 0.05 * rng.standard_normal(N))
                              for c, s in enumerate(scales)])
    y = None
    if labels:
        y = np.zeros(N, dtype=int)
        y[60:70] = 1
    ts = pd.date_range("2024-01-01", periods=N, freq="5min") if timestamps else None
    return Series(values, [f"v{c}" for c in range(len(scales))], ts, y, name="test")


def _result(channels: int = 1, seed: int = 0, with_contrib: bool = False) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    score = rng.gamma(2.0, 0.1, N)
    score[:15] = np.nan  # the first rows have no complete window
    score[30] = 0.0  # an exact zero on the log axis
    is_anomaly = np.zeros(N, dtype=bool)
    is_anomaly[62:66] = True
    out = SimpleNamespace(score=score, is_anomaly=is_anomaly)
    if with_contrib:
        c = rng.random((N, channels))
        c /= c.sum(axis=1, keepdims=True)
        c[:15] = np.nan
        out.contributions = c
    return out


def _suptitle(fig) -> str:  # noqa: ANN001
    return fig._suptitle.get_text()


def _channel_lines(fig, series: Series) -> list:  # noqa: ANN001
    names = set(series.channels)
    return [line for ax in fig.axes for line in ax.get_lines() if line.get_label() in names]


def test_title_mentions_labels_only_when_there_are_labels() -> None:
    fig = build_scores_figure(_series(), _result(), 0.3)
    assert "label" not in _suptitle(fig).lower()
    fig = build_scores_figure(_series(labels=True), _result(), 0.3)
    assert "labelled anomalies hatched grey" in _suptitle(fig)
    assert "orange" not in _suptitle(fig)


def test_all_zero_labels_are_not_called_shaded() -> None:
    series = _series(labels=True)
    series.labels[:] = 0
    title = _suptitle(build_scores_figure(series, _result(), 0.3))
    assert "hatched" not in title and "no labelled anomalies" in title


def test_channel_colours_avoid_label_and_anomaly_colours() -> None:
    series = _series(channels=MAX_CHANNELS, labels=True)
    fig = build_scores_figure(series, _result(MAX_CHANNELS), 0.3)
    lines = _channel_lines(fig, series)
    assert len(lines) == MAX_CHANNELS
    reserved = {to_rgb(LABEL_COLOR), to_rgb(ANOMALY_COLOR), to_rgb("orange")}
    colours = {to_rgb(line.get_color()) for line in lines}
    assert not colours & reserved
    assert len(colours) == MAX_CHANNELS  # all distinct
    # the label spans are hatched grey, never filled with a channel colour
    hatched = [p for ax in fig.axes for p in ax.patches if p.get_hatch()]
    assert hatched and all(to_rgb(p.get_edgecolor()[:3]) == to_rgb(LABEL_COLOR) for p in hatched)
    assert all(to_rgb(c) not in reserved for c in CHANNEL_COLORS)


def test_similar_scales_share_one_value_axis() -> None:
    series = _series(scales=[1.0, 3.0])
    fig = build_scores_figure(series, _result(2), 0.3, contributions=None)
    assert len(fig.axes) == 2  # values + score (no contributions on the fake result)
    assert not scales_differ(series.values)


def test_different_scales_get_one_subplot_per_channel_sharing_x() -> None:
    series = _series(scales=[1.0, 1000.0, 0.01])
    assert scales_differ(series.values)
    fig = build_scores_figure(series, _result(3), 0.3)
    assert len(fig.axes) == 3 + 1
    value_axes = fig.axes[:3]
    assert [ax.get_ylabel() for ax in value_axes] == ["v0", "v1", "v2"]
    assert all(len(ax.get_lines()) == 1 for ax in value_axes)
    shared = fig.axes[0].get_shared_x_axes()
    assert all(shared.joined(fig.axes[0], ax) for ax in fig.axes[1:])


def test_more_than_eight_channels_says_first_eight() -> None:
    scales = [10.0 ** (k % 4) for k in range(11)]
    series = _series(scales=scales)
    fig = build_scores_figure(series, _result(11, with_contrib=True), 0.3)
    assert f"first {MAX_CHANNELS} of 11 channels" in _suptitle(fig)
    assert len(_channel_lines(fig, series)) == MAX_CHANNELS
    assert len(fig.axes) == MAX_CHANNELS + 2  # channels, score, contributions
    contrib = [ax for ax in fig.axes if ax.get_gid() == "contributions"][0]
    assert "other 3" in [t.get_text() for t in contrib.get_legend().get_texts()]


def test_contributions_panel_from_argument_or_result() -> None:
    series = _series(channels=3)
    res = _result(3)
    assert not any(ax.get_gid() == "contributions" for ax in build_scores_figure(series, res, 0.3).axes)
    contrib = _result(3, with_contrib=True).contributions
    fig = build_scores_figure(series, res, 0.3, contributions=contrib)
    panels = [ax for ax in fig.axes if ax.get_gid() == "contributions"]
    assert len(panels) == 1 and panels[0] is fig.axes[-1]
    assert len(panels[0].collections) == 3  # one stacked band per channel
    assert panels[0].get_ylim() == (0, 1)
    # taken from result.contributions when not passed (the detector's Scores carries them)
    fig = build_scores_figure(series, _result(3, with_contrib=True), 0.3)
    assert any(ax.get_gid() == "contributions" for ax in fig.axes)


def test_unscored_rows_are_a_gap_in_the_contributions_stack() -> None:
    from tsad.plots import _shares

    c = _result(3, with_contrib=True).contributions
    c[40] = [2.0, 1.0, 1.0]  # not normalised: shares are
    shares, other = _shares(c, 3, 3)
    assert not other
    assert np.isnan(shares[:15]).all()
    np.testing.assert_allclose(shares[15:].sum(axis=1), 1.0)
    np.testing.assert_allclose(shares[40], [0.5, 0.25, 0.25])


def test_no_contributions_panel_for_one_channel() -> None:
    fig = build_scores_figure(_series(), _result(1, with_contrib=True), 0.3)
    assert not any(ax.get_gid() == "contributions" for ax in fig.axes)


def test_contributions_of_the_wrong_width_are_refused() -> None:
    with pytest.raises(ValueError, match="columns"):
        build_scores_figure(_series(channels=2), _result(2), 0.3, contributions=np.ones((N, 3)))


def test_log_score_axis_survives_nan_and_zero_scores() -> None:
    fig = build_scores_figure(_series(timestamps=False), _result(), 0.3)
    ax_s = fig.axes[1]
    assert ax_s.get_yscale() == "log"
    lo, hi = ax_s.get_ylim()
    assert np.isfinite([lo, hi]).all() and 0 < lo < hi
    score = ax_s.get_lines()[0].get_ydata()
    assert np.isnan(score[:15]).all() and score[30] > 0


def test_score_axis_without_positive_scores_is_linear(tmp_path: Path) -> None:
    res = _result()
    res.score[:] = np.nan
    fig = build_scores_figure(_series(), res, 0.3)
    assert fig.axes[1].get_yscale() == "linear"
    res.score[:] = 0.0
    out = plot_scores(_series(), res, 0.3, tmp_path / "zero.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_plot_scores_writes_png_atomically(tmp_path: Path) -> None:
    path = tmp_path / "scores.png"
    series = _series(scales=[1.0, 100.0], labels=True)
    out = plot_scores(series, _result(2), 0.3, path, contributions=_result(2, with_contrib=True).contributions)
    assert out == path and path.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.png"]  # no temporary left behind


def test_latent_axes_two_dims() -> None:
    codes = np.random.default_rng(0).standard_normal((50, 2))
    fig = build_latent_figure(codes, title="lat")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("z1", "z2", "lat")
    assert len(fig.axes) == 1  # no colour bar without labels


def test_latent_axes_projected_and_colour_bar_labelled(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    codes, labels = rng.standard_normal((60, 5)), rng.integers(0, 10, 60)
    fig = build_latent_figure(codes, labels=labels, title="lat")
    ax, cbar = fig.axes
    assert ax.get_xlabel().startswith("PC1") and ax.get_ylabel().startswith("PC2")
    assert "PCA projection of 5 dims" in ax.get_title()
    assert cbar.get_ylabel() == "label"
    out = plot_latent(codes, tmp_path / "lat.png", labels=labels)
    assert out.read_bytes()[:4] == b"\x89PNG"
