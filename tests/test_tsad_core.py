"""Detector, windows, thresholds, metrics and loaders on small generated series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import ArtifactError, UserError
from tsad import metrics as M
from tsad.config import DetectorConfig, NetworkConfig
from tsad.datasets import fill_gaps, load_table
from tsad.detector import WindowDetector
from tsad.thresholds import TailCalibrator, Threshold
from tsad.windows import Scaler, sliding_windows


def _wave(n: int = 400, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.stack([np.sin(2 * np.pi * t / 25 + c) + 0.05 * rng.standard_normal(n) for c in range(channels)], 1)


_SHORT = {"smooth": "scoring.smooth", "epochs": "training.epochs", "model": "network.kind",
          "denoise": "network.denoise", "window": "window"}


def _small(**kw) -> WindowDetector:
    """A tiny detector; keywords are config paths, or the short names above."""
    config = DetectorConfig(window=16, network=NetworkConfig(channels=(8, 4), kernel_size=3))
    config.training.epochs, config.training.batch_size, config.training.patience = 3, 32, None
    return WindowDetector(config.updated({_SHORT.get(k, k): v for k, v in kw.items()}), device="cpu")


def test_windows_are_views_with_channels_first() -> None:
    x = np.arange(20, dtype=float).reshape(10, 2)
    w = sliding_windows(x, 4, 2)
    assert w.shape == (4, 2, 4)
    assert np.shares_memory(w, x)
    assert w[1, 0].tolist() == [4.0, 6.0, 8.0, 10.0]


def test_scaler_uses_training_statistics_only() -> None:
    train, test = np.ones((10, 1)) * 5 + np.arange(10)[:, None], np.full((3, 1), 1000.0)
    s = Scaler().fit(train)
    np.testing.assert_allclose(s.transform(train).mean(), 0, atol=1e-6)
    assert s.transform(test).min() > 100  # the test data did not move the statistics


@pytest.mark.parametrize("smooth", [1, 7])
def test_causal_scores_never_look_ahead(smooth: int) -> None:
    x = _wave(300)
    det = _small(smooth=smooth).fit(x[:200])
    a = det.score(x, mode="causal").score
    y = x.copy()
    y[250:] += 50.0
    b = det.score(y, mode="causal").score
    np.testing.assert_array_equal(a[:250], b[:250])
    assert np.isnan(a[:15 + smooth - 1]).all() and np.isfinite(a[15 + smooth - 1:]).all()
    assert b[260] > a[260]


def test_smoothing_is_the_trailing_mean_of_raw_scores() -> None:
    x = _wave(300)
    raw = _small().fit(x[:200]).score(x).score
    smoothed = _small(smooth=7).fit(x[:200]).score(x).score
    expected = pd.Series(raw).rolling(7, min_periods=7).mean().to_numpy()
    np.testing.assert_allclose(smoothed, expected, rtol=1e-6, equal_nan=True)


def test_offline_mode_and_contributions_name_the_channel() -> None:
    x = _wave(300, channels=3)
    det = _small().fit(x[:200])
    y = x.copy()
    y[240:250, 2] += 8.0
    r = det.score(y, mode="offline")
    assert np.isfinite(r.score).all()
    assert np.argmax(r.contributions[245]) == 2
    np.testing.assert_allclose(np.nansum(r.contributions[245]), 1.0, rtol=1e-5)


def test_detects_injected_spike_and_round_trips(tmp_path: Path) -> None:
    x = _wave(400)
    det = _small(epochs=8).fit(x[:250])
    y = x.copy()
    y[330:335] += 4.0
    r = det.score(y)
    assert r.is_anomaly[330:350].any()
    assert np.nanmax(r.score[330:350]) > 5 * np.nanmax(r.score[:330])  # the spike outscores every earlier row
    assert r.is_anomaly[:330].mean() <= 0.02  # and normal rows are rarely flagged
    assert 0.0 <= r.score_prob.min() and r.score_prob.max() <= 1.0
    det.save(tmp_path / "m")
    again = WindowDetector.load(tmp_path / "m", device="cpu")
    np.testing.assert_array_equal(again.score(y).score, r.score)
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(ArtifactError):
        WindowDetector.load(tmp_path / "m")


@pytest.mark.parametrize("model,denoise", [("dense", None), ("vae", None), ("conv", "gaussian")])
def test_model_variants_train_and_score(model: str, denoise: str | None) -> None:
    x = _wave(300, channels=2)
    det = _small(model=model, denoise=denoise).fit(x[:200])
    y = x.copy()
    y[250:253, 1] += 3.0  # a short spike on one channel, outside the training rows
    r = det.score(y)
    hit = slice(250, 250 + 16 + 2)  # every causal window (16 rows) that holds a spiked row
    normal = np.r_[r.score[15:250], r.score[hit.stop:]]
    assert np.isfinite(r.score[15:]).all() and np.isnan(r.score[:15]).all()
    assert r.score[hit].max() > 2.5 * normal.max()  # the anomaly stands clearly above every normal row
    assert r.is_anomaly[hit].mean() >= 0.5  # it is flagged...
    assert r.is_anomaly[15:250].mean() <= 0.02 and r.is_anomaly[hit.stop:].mean() <= 0.02  # ...normal rows mostly not


def test_bad_detector_arguments() -> None:
    with pytest.raises(UserError, match="unknown model"):
        _small(model="lstm").fit(_wave())
    with pytest.raises(UserError, match="needs more than the window"):
        _small(window=64).fit(_wave(40))


def test_thresholds_on_known_distributions() -> None:
    rng = np.random.default_rng(0)
    s = rng.exponential(1.0, 20000)
    assert Threshold("max").fit(s).threshold_ == pytest.approx(s.max())
    assert Threshold("percentile", q=99).fit(s).threshold_ == pytest.approx(np.log(100), rel=0.05)
    assert Threshold("contamination", rate=0.05).fit(s).threshold_ == pytest.approx(np.log(20), rel=0.05)
    pot = Threshold("pot", risk=1e-4).fit(s).threshold_
    assert pot == pytest.approx(np.log(1e4), rel=0.15)  # the true 1e-4 tail quantile of Exp(1)
    cal = TailCalibrator().fit(s)
    grid = np.linspace(0, 20, 200)
    p = cal.transform(grid)
    assert (np.diff(p) >= -1e-12).all() and p.min() >= 0 and p.max() <= 1
    assert cal.transform(np.array([np.log(100)]))[0] == pytest.approx(0.99, abs=0.005)
    assert (np.diff(cal.surprise(grid)) >= -1e-9).all()


def test_point_metrics_by_hand() -> None:
    y = np.array([0, 1, 1, 1, 0, 0, 1, 0])
    p = np.array([0, 0, 1, 0, 0, 1, 0, 0])
    assert M.point_prf(y, p) == pytest.approx({"precision": 0.5, "recall": 0.25, "f1": 1 / 3})
    assert M.point_adjust(y, p).tolist() == [0, 1, 1, 1, 0, 1, 0, 0]
    assert M.event_recall(y, p) == 0.5
    far, mar = M.far_mar(y, p)
    assert far == pytest.approx(1 / 4) and mar == pytest.approx(3 / 4)
    assert M.segments(y) == [(1, 3), (6, 6)]
    f1, _ = M.best_f1(y, np.array([0, 0.9, 0.8, 0.7, 0, 0, 0.6, 0]))
    assert f1 == 1.0


def test_nab_score_by_hand() -> None:
    n = 1000  # probation = 150 rows
    window = [(500, 599)]
    prof = M.PROFILES["standard"]
    perfect = M.NabFile(np.where(np.arange(n) == 500, 1.0, 0.0), window)
    late = M.NabFile(np.where(np.arange(n) == 599, 1.0, 0.0), window)
    fp = M.NabFile(np.where(np.isin(np.arange(n), [300, 500]), 1.0, 0.0), window)
    probation_only = M.NabFile(np.where(np.arange(n) == 10, 1.0, 0.0), window)
    null, best = M.nab_bounds([perfect], prof)
    assert (null, best) == (-1.0, 1.0)
    raw = lambda f: float(M.nab_scores_at([f], np.array([0.5]), prof)[0])  # noqa: E731
    assert raw(perfect) == pytest.approx(1.0)  # the window's first row earns the whole TP weight
    assert raw(late) == pytest.approx(float(M.scaled_sigmoid(-0.01)) / 0.98661, rel=1e-4)  # the last row: ~0
    assert raw(fp) == pytest.approx(1.0 - 0.11)  # a lone FP before any window
    assert raw(probation_only) == pytest.approx(-1.0)  # probation detections are ignored; window missed
    assert M.nab_corpus_score([perfect])[0] == pytest.approx(100.0)
    assert M.nab_corpus_score([M.NabFile(np.zeros(n), window)])[0] == pytest.approx(0.0)
    after = M.NabFile(np.where(np.isin(np.arange(n), [500, 650]), 1.0, 0.0), window)
    # an FP 51 rows after a 100-row window sits at 51 / 99 of the width past it
    assert raw(after) == pytest.approx(1.0 + 0.11 * float(M.scaled_sigmoid(51 / 99)))


def test_nab_plateau_threshold_steps_back_from_a_narrow_best_point() -> None:
    """A window detected at 1 − 10^-3.05 and a false alarm at 1 − 10^-3: the single best threshold sits
    in the 0.05-decade gap between them (score 100), the plateau rule in the wide band below where
    both fire (94.5), the threshold a file it did not see is likelier to share."""
    n, window = 3000, [(2000, 2100)]  # probation 450 rows
    scores = np.zeros(n)
    scores[2000], scores[1000] = 1 - 10 ** -3.05, 1 - 10 ** -3.0
    files = [M.NabFile(scores, window)]
    best, argmax = M.nab_corpus_score(files)
    assert best == pytest.approx(100.0) and argmax > 1 - 10 ** -3.0
    plateau = M.nab_plateau_threshold(files, width=0.5)
    assert 1 - 10 ** -2.4 < plateau < 1 - 10 ** -3.0
    assert M.nab_corpus_score(files, thresholds=np.array([plateau]))[0] == pytest.approx(100 * (0.89 + 1) / 2)
    assert M.nab_plateau_threshold(files, width=0.0) > 1 - 10 ** -3.0  # no averaging: the best point again


def test_gap_policy_interpolates_short_and_fills_long() -> None:
    x = np.array([1.0, np.nan, 3.0, np.nan, np.nan, np.nan, 7.0])[:, None]
    filled, report = fill_gaps(x, max_gap=1)
    assert filled[:, 0].tolist() == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 7.0]
    assert report == {"missing": 4, "interpolated": 1, "filled": 3}


@pytest.mark.parametrize("content,message", [
    ("", "empty"),
    ("timestamp,name\n2024-01-01,a\n", "no numeric value column"),
    ("timestamp,value\nyesterday,1\ntoday,2\n", "cannot be parsed"),
    ("timestamp,value\n2024-01-02,1\n2024-01-01,2\n", "not in increasing order"),
])
def test_bad_input_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_table(path)


def test_real_loaders_read_slices(data_dir: Path) -> None:
    from tsad.datasets import iter_msl, iter_skab, load_nab

    s = load_nab(data_dir, "realKnownCause/nyc_taxi.csv")
    assert s.labels.sum() > 0 and len(s.windows) == 5
    skab = next(iter(iter_skab(data_dir)))
    assert skab.values.shape[1] == 8 and skab.labels is not None
    msl = next(iter(iter_msl(data_dir)))
    assert msl.train.values.shape[1] == 55 and msl.test.labels.sum() > 0
    frame = pd.read_csv(data_dir / "nab" / "data" / "realKnownCause" / "nyc_taxi.csv", nrows=5)
    assert list(frame.columns) == ["timestamp", "value"]


def test_nab_post_processing_is_causal_and_level_adds_shifts() -> None:
    from tsad.postprocess import nab_anomaly_score

    rng = np.random.default_rng(0)
    surprise = np.abs(rng.standard_normal(800))
    level = np.zeros(800)
    level[600] = 12.0  # a level shift the reconstruction error did not see
    alone, both = nab_anomaly_score(surprise), nab_anomaly_score(surprise, level=level)
    assert both[600] > alone[600] and both[600] > 0.9
    np.testing.assert_array_equal(alone[:600], both[:600])  # the future shift changes no earlier row
    assert ((0 <= both) & (both < 1)).all()


def test_evaluate_out_writes_each_test_file_as_scored(tmp_path: Path) -> None:
    """`evaluate --out` for labelled benchmarks (SKAB, MSL): one CSV per test file with the rows as
    scored, whose scores and alerts are the ones the metrics were computed from."""
    from tsad.datasets import Series
    from tsad.evaluate import evaluate_split

    pairs = []
    for k in range(2):
        values = _wave(300, channels=2, seed=k)
        labels = np.zeros(200, dtype=int)
        labels[120:130] = 1
        test_values = values[100:].copy()
        test_values[120:130] += 3.0
        stamps = pd.date_range("2024-01-01", periods=200, freq="min")
        pairs.append((Series(values[:100], ["a", "b"], name=f"valve{k}/train.csv"),
                      Series(test_values, ["a", "b"], stamps, labels, name=f"valve{k}/{k}.csv")))
    result = evaluate_split(pairs, lambda: _small(), "skab", baselines=(), out=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["valve0__0.csv", "valve1__1.csv"]
    frames = [pd.read_csv(tmp_path / f) for f in files]
    assert list(frames[0].columns) == ["timestamp", "a", "b", "score", "is_anomaly", "label"]
    assert frames[0]["timestamp"].iloc[0] == "2024-01-01 00:00:00" and len(frames[0]) == 200
    labels = np.concatenate([f["label"].to_numpy() for f in frames])
    pred = np.concatenate([f["is_anomaly"].to_numpy() for f in frames])
    assert M.point_prf(labels, pred)["f1"] == pytest.approx(result.metrics["f1"], abs=1e-4)


def test_nab_halves_alternate_files_within_each_category() -> None:
    from tsad.evaluate import nab_halves

    names = ["b/2.csv", "a/1.csv", "b/1.csv", "a/3.csv", "a/2.csv", "c/1.csv"]
    tuning, evaluation = nab_halves(names)
    assert tuning == ["a/1.csv", "a/3.csv", "b/1.csv", "c/1.csv"] and evaluation == ["a/2.csv", "b/2.csv"]
