"""NAB's windowedGaussian baseline (tsad.baselines.WindowedGaussian) on hand-made series, and the
NAB threshold choice it is scored with."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tsad import metrics as M
from tsad.baselines import WindowedGaussian


def reference(x: np.ndarray, window: int, step: int) -> np.ndarray:
    """NAB's detector written row by row, the obvious way: score, then append and refresh."""
    out, data, waiting, mean, std = [], [], [], 0.0, 1.0
    for v in x:
        out.append(1.0 - 0.5 * math.erfc(abs(v - mean) / std / math.sqrt(2.0)) if data else 0.0)
        if len(data) < window:
            data.append(v)
        else:
            waiting.append(v)
            if len(waiting) < step:
                continue
            data, waiting = data[step:] + waiting, []
        mean, std = float(np.mean(data)), float(np.std(data)) or 1e-6
    return np.array(out)


def test_window_fills_row_by_row_then_refreshes_every_step() -> None:
    x = np.arange(12, dtype=float)
    mean, _ = WindowedGaussian(window=4, step=2).moments(x)
    # rows 1..4 see every row before them; from row 4 on the window (rows s..s+3) moves every 2 rows
    expected = [np.nan, 0.0, 0.5, 1.0, 1.5, 1.5, 3.5, 3.5, 5.5, 5.5, 7.5, 7.5]
    np.testing.assert_allclose(mean, expected)
    # a spike only reaches the statistics when its block is taken in: at row 6, not at row 5 or 4
    spiked = x.copy()
    spiked[4] = 1000.0
    _, std = WindowedGaussian(window=4, step=2).moments(spiked)
    _, plain = WindowedGaussian(window=4, step=2).moments(x)
    np.testing.assert_array_equal(std[:6], plain[:6])
    assert (std[6:10] > 100).all() and std[10] == plain[10]  # rows 2..5 then rows 4..7 hold it, rows 6..9 not


@pytest.mark.parametrize(("n", "window", "step"), [(0, 5, 2), (1, 5, 2), (2, 5, 2), (5, 5, 2), (6, 5, 2),
                                                   (300, 50, 7), (301, 50, 1), (240, 40, 40), (200, 300, 10)])
def test_matches_the_row_by_row_detector(n: int, window: int, step: int) -> None:
    rng = np.random.default_rng(n + window)
    x = rng.normal(10.0, 3.0, n) + np.where(np.arange(n) % 37 == 0, 25.0, 0.0)
    ours = WindowedGaussian(window=window, step=step, significant_digits=None).score(x)
    np.testing.assert_allclose(ours, reference(x, window, step), rtol=0, atol=1e-12)


def test_score_is_one_minus_the_gaussian_tail() -> None:
    det = WindowedGaussian(window=4, step=100)
    base = [-1.0, 1.0, -1.0, 1.0]  # mean 0, population std 1
    at = lambda v: float(det.score(np.array(base + [v]))[-1])  # noqa: E731
    assert at(0.0) == 0.5
    assert at(1.0) == pytest.approx(0.841344746069, abs=1e-12)
    assert at(-3.0) == at(3.0) == pytest.approx(0.998650101968, abs=1e-12)  # both tails alike
    assert at(50.0) == 1.0  # far outside the window
    # z = 7.5: Q = 3.2e-14, so 1 - Q is below 1 in full precision but ties at 1.0 to 12 digits
    assert at(7.5) == 1.0
    assert 1.0 - 1e-13 < WindowedGaussian(window=4, significant_digits=None).score(np.array(base + [7.5]))[-1] < 1.0
    # the first row has no window yet; a constant window's std of 0 is taken as 1e-6
    assert det.score(np.array([3.0]))[0] == 0.0
    flat = det.score(np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.000001]))  # 1e-6 above: z ≈ 1
    np.testing.assert_array_equal(flat[:5], [0.0, 0.5, 0.5, 0.5, 0.5])
    assert flat[5] == pytest.approx(0.841344746069, abs=1e-9)


def test_worst_channel_wins() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=200), rng.normal(size=200)
    b[150] = 40.0
    both = WindowedGaussian().score(np.column_stack([a, b]))
    np.testing.assert_array_equal(both, np.maximum(WindowedGaussian().score(a), WindowedGaussian().score(b)))
    assert both[150] == 1.0


def test_probationary_period() -> None:
    n = 1000  # NAB's probation: min(floor(0.15 n), 750) rows, here 150
    assert M.probation_rows(n) == 150 and M.probation_rows(20000) == 750
    rng = np.random.default_rng(2)
    x = rng.normal(size=n)
    x[100] = 60.0  # in probation: scored 1.0 by the detector but never by NAB
    x[505] = 60.0  # inside the labelled window
    scores = WindowedGaussian().score(x)
    assert scores[100] == scores[505] == 1.0
    # the detector does not train on the probation rows: it scores them, causally, from row 1
    assert scores[0] == 0.0 and (scores[1:150] >= 0.5).all()
    window = [(500, 599)]
    prof = M.PROFILES["standard"]
    raw = float(M.nab_scores_at([M.NabFile(scores, window)], np.array([1.0]), prof)[0])
    alone = np.zeros(n)
    alone[505] = 1.0
    assert raw == pytest.approx(float(M.nab_scores_at([M.NabFile(alone, window)], np.array([1.0]), prof)[0]))
    after = scores.copy()
    after[200] = 1.0  # the same detection after probation, before any window: a full false positive
    raw_after = float(M.nab_scores_at([M.NabFile(after, window)], np.array([1.0]), prof)[0])
    assert raw_after == pytest.approx(raw - 0.11)


def test_corpus_threshold_is_the_best_of_all_thresholds() -> None:
    """NAB's optimiser tries every distinct score; no other threshold may do better than ours."""
    rng = np.random.default_rng(3)
    files = []
    for k in range(6):
        n = 600 + 50 * k
        s = 1.0 - rng.random(n) ** 3 * 1e-3  # crowded just below 1, where a fixed grid is coarse
        lo = 300 + 10 * k
        s[lo + rng.integers(0, 40)] = 1.0 - rng.random() * 1e-7
        files.append(M.NabFile(s, [(lo, lo + 59)]))
    alls = np.concatenate([f.scores for f in files])
    probe = np.unique(np.concatenate([alls, (alls[1:] + alls[:-1]) / 2, np.linspace(0.99, 1.0, 20001)]))
    for profile in M.PROFILES:
        best, threshold = M.nab_corpus_score(files, profile)
        null, perfect = M.nab_bounds(files, M.PROFILES[profile])
        others = 100 * (M.nab_scores_at(files, probe, M.PROFILES[profile]) - null) / (perfect - null)
        assert best >= others.max() - 1e-9
        assert best == pytest.approx(M.nab_corpus_score(files, profile, np.array([threshold]))[0])


def test_whole_nab_corpus_matches_the_published_detector(data_dir: Path) -> None:
    from tsad.datasets import iter_nab

    files = [M.NabFile(WindowedGaussian().score(s.values), s.windows) for s in iter_nab(data_dir)]
    assert len(files) == 58
    published = {"standard": 39.6495, "reward_low_FP_rate": 20.8680, "reward_low_FN_rate": 47.4100}
    for profile, value in published.items():
        score, threshold = M.nab_corpus_score(files, profile)
        assert score == pytest.approx(value, abs=0.01) and threshold == 1.0
