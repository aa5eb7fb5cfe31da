"""Range-based precision/recall/F1 and VUS-PR (tsad.range_metrics) on hand-made cases."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from tsad import range_metrics as R


def _labels(n: int, *ranges: tuple[int, int]) -> np.ndarray:
    y = np.zeros(n, dtype=int)
    for lo, hi in ranges:
        y[lo:hi + 1] = 1
    return y


# ------------------------------------------------------------------------------- range-based P/R/F1
def test_perfect_prediction_scores_one() -> None:
    y = _labels(30, (3, 7), (15, 15), (20, 25))
    assert R.range_prf(y, y) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_no_prediction_scores_zero() -> None:
    y = _labels(20, (5, 9))
    assert R.range_prf(y, np.zeros(20)) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_prediction_overlapping_half_of_a_range() -> None:
    # range rows 2..5, prediction rows 4..7: 2 of the range's 4 rows, 2 of the prediction's 4 rows
    # recall = 0.2·1 + 0.8·(2/4) = 0.6; precision = 2/4 = 0.5; F1 = 2·0.6·0.5/1.1 = 6/11
    r = R.range_prf(_labels(12, (2, 5)), _labels(12, (4, 7)))
    assert r["recall"] == pytest.approx(0.6)
    assert r["precision"] == pytest.approx(0.5)
    assert r["f1"] == pytest.approx(6 / 11)


def test_one_of_two_ranges_detected() -> None:
    # range 2..4 fully predicted (recall 1), range 10..12 missed (0): recall 1/2, precision 1, F1 2/3
    r = R.range_prf(_labels(15, (2, 4), (10, 12)), _labels(15, (2, 4)))
    assert r == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3})


@pytest.mark.parametrize("alpha,expected", [(0.0, 0.2), (0.2, 0.36), (0.5, 0.6), (1.0, 1.0)])
def test_existence_reward_weight(alpha: float, expected: float) -> None:
    # one predicted row in a 5-row range: recall = α·1 + (1 − α)·1/5
    r = R.range_prf(_labels(10, (2, 6)), _labels(10, (4, 4)), alpha=alpha)
    assert r["recall"] == pytest.approx(expected)
    assert r["precision"] == 1.0  # the predicted row lies inside the range


def test_cardinality_factor_splits_the_overlap_reward() -> None:
    # range 0..9 met by two predicted ranges (1..2, 5..6): ω = 4/10, γ = 1/2
    # recall = 0.2 + 0.8·0.5·0.4 = 0.36; each predicted range lies fully inside the range: precision 1
    r = R.range_prf(_labels(12, (0, 9)), _labels(12, (1, 2), (5, 6)))
    assert r["recall"] == pytest.approx(0.36) and r["precision"] == 1.0
    # one predicted range 8..11 meets the ranges 7..8 and 10..10: γ = 1/2, ω = 2/4 (rows 8, 10), precision 1/4
    r = R.range_prf(_labels(14, (7, 8), (10, 10)), _labels(14, (8, 11)))
    assert r["precision"] == pytest.approx(0.25)


# ------------------------------------------------------------------------------------------ VUS-PR
def _vus_by_definition(y: np.ndarray, s: np.ndarray, max_window: int, k: int = R.N_THRESHOLDS) -> float:
    """The module docstring's definition, written out loop by loop."""
    n = len(y)
    y = y.astype(bool)
    runs = []
    i = 0
    while i < n:
        if y[i]:
            j = i
            while j + 1 < n and y[j + 1]:
                j += 1
            runs.append((i, j))
            i = j + 1
        else:
            i += 1
    thresholds = np.sort(s)[::-1][np.linspace(0, n - 1, k).astype(int)]
    aps = []
    for w in range(max_window + 1):
        h = w // 2
        label = y.astype(float)
        for lo, hi in runs:
            for d in range(1, h + 1):
                for row in (lo - d, hi + d):
                    if 0 <= row < n and not y[row]:
                        label[row] += np.sqrt(1 - d / w)
        label = np.minimum(label, 1.0)
        extended = []  # (lo, hi) with h rows each side, merged where they meet
        for lo, hi in runs:
            lo, hi = max(lo - h, 0), min(hi + h, n - 1)
            if extended and lo <= extended[-1][1]:
                extended[-1] = (extended[-1][0], hi)
            else:
                extended.append((lo, hi))
        ap, previous = 0.0, 0.0
        for t in thresholds:
            pred = s >= t
            buffer = float(np.sum(label[pred & ~y]))
            tp = float(np.sum(pred & y)) + buffer
            recall = min(tp / (y.sum() + buffer / 2), 1.0)
            found = sum(pred[lo:hi + 1].any() for lo, hi in extended) / len(extended)
            tpr = recall * found
            ap += (tpr - previous) * tp / pred.sum()
            previous = tpr
        aps.append(ap)
    return float(np.mean(aps))


def test_vus_perfect_detector_is_one() -> None:
    y = _labels(300, (40, 60), (150, 152), (250, 290))
    assert R.vus_pr(y, y.astype(float)) == pytest.approx(1.0)
    assert R.vus_pr(y, y * 5.0 + 1.0) == pytest.approx(1.0)


def test_vus_all_zero_scores() -> None:
    # constant scores: one threshold, every row predicted, TPR 1, so Range-AUC-PR(w) = precision = (P + B)/n
    # rows 4..5 labelled of 10 (P = 2); B = the buffer's label summed over both sides:
    # w = 0, 1: h = 0, B = 0                        → 2/10 = 0.2 (twice)
    # w = 2: h = 1, d = 1: sqrt(1 − 1/2) = 0.70711   → (2 + 1.41421)/10 = 0.341421
    # w = 3: h = 1, d = 1: sqrt(1 − 1/3) = 0.81650   → (2 + 1.63299)/10 = 0.363299
    # w = 4: h = 2, sqrt(3/4) + sqrt(1/2) = 1.57313  → (2 + 3.14626)/10 = 0.514626
    # mean over the 5 windows = 1.619346/5 = 0.323869
    y = _labels(10, (4, 5))
    assert R.range_pr_auc(y, np.zeros(10), window=0) == pytest.approx(0.2)
    assert R.vus_pr(y, np.zeros(10), max_window=4) == pytest.approx(0.323869, abs=1e-6)
    assert R.range_prf(y, np.zeros(10))["f1"] == 0.0


def test_vus_window_zero_is_average_precision_for_one_range() -> None:
    # with no buffer and one range, existence is 1 whenever a labelled row is predicted, TP is the
    # point-wise count and recall TP/P: Range-AUC-PR(0) is the step-wise average precision; n ≤ 250
    # makes every distinct score a threshold, so it equals sklearn's average_precision_score exactly
    rng = np.random.default_rng(0)
    y = _labels(200, (50, 69))
    s = rng.random(200) + 0.5 * y
    s[::7] = np.round(s[::7], 1)  # some ties
    assert R.range_pr_auc(y, s, window=0) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert R.vus_pr(y, s, max_window=1) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    # with two ranges the recall is weighted by the share of ranges found (rows 2..3 and 10..11, P = 4)
    y2 = _labels(20, (2, 3), (10, 11))
    s2 = np.zeros(20)
    s2[2] = 1.0
    # threshold 1: TP 1, recall 1/4, found 1/2 → TPR 1/8, precision 1/1
    # threshold 0: every row, TP 4 → TPR 1, precision 4/20;  AP = 1/8·1 + 7/8·0.2 = 0.3
    assert R.range_pr_auc(y2, s2, window=0) == pytest.approx(0.3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vus_matches_the_definition_loop_by_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # ranges close enough for their buffers to overlap and merge, one at each edge of the series
    y = _labels(400, (0, 3), (30, 40), (46, 46), (52, 60), (200, 260), (395, 399))
    s = rng.random(400) + 0.8 * np.convolve(y, np.ones(9) / 9, mode="same")
    s[rng.integers(0, 400, 20)] = np.nan  # NaN ranks lowest in both
    fast = R.vus_pr(y, s, max_window=24, n_thresholds=60)
    slow = _vus_by_definition(y, np.nan_to_num(s, nan=-np.inf), max_window=24, k=60)
    assert fast == pytest.approx(slow, abs=1e-12)


def test_vus_rises_as_a_detection_moves_towards_the_range() -> None:
    y = _labels(400, (200, 219))
    values = []
    for start in (20, 120, 160, 175, 185, 192, 196, 200):
        s = np.zeros(400)
        s[start:start + 5] = 1.0
        values.append(R.vus_pr(y, s))
    assert all(b >= a for a, b in zip(values, values[1:])), values
    assert values[-1] > values[0]


def test_vus_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        R.vus_pr(np.zeros(5), np.zeros(6))
    with pytest.raises(ValueError, match="differ in length"):
        R.range_prf(np.zeros(5), np.zeros(4))
    with pytest.raises(ValueError, match="0 or 1"):
        R.vus_pr(np.array([0, 2, 1]), np.zeros(3))
    with pytest.raises(ValueError, match="no rows"):
        R.vus_pr(np.zeros(0), np.zeros(0))
    # no labelled row: undefined, NaN (as point PR-AUC)
    assert np.isnan(R.vus_pr(np.zeros(50), np.random.default_rng(0).random(50)))
    r = R.range_prf(np.zeros(10), _labels(10, (2, 3)))
    assert np.isnan(r["recall"]) and np.isnan(r["f1"]) and r["precision"] == 0.0


def test_vus_is_fast_on_100k_rows() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    y = np.zeros(n, dtype=int)
    for start in rng.integers(0, n - 100, 300):
        y[start:start + rng.integers(1, 80)] = 1
    s = rng.random(n) + y
    t0 = time.perf_counter()
    v = R.vus_pr(y, s)
    R.range_prf(y, s > 1.2)
    assert time.perf_counter() - t0 < 2.0  # about 0.1 s here; the bound leaves room for a busy machine
    assert 0.9 < v <= 1.0


# ------------------------------------------------------------------------------------------- CLI
def test_evaluate_own_file_reports_range_metrics(tmp_path) -> None:  # noqa: ANN001
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from cli import app

    n = 400
    t = np.arange(n)
    v = np.sin(2 * np.pi * t / 25) + 0.05 * np.random.default_rng(0).standard_normal(n)
    v[300:304] += 5.0
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="5min"), "v0": v,
                          "label": _labels(n, (300, 303))})
    frame.to_csv(tmp_path / "l.csv", index=False)
    result = CliRunner().invoke(app, ["tsad", "evaluate", "--data", str(tmp_path / "l.csv"), "--train-rows", "200",
                                      "--window", "16", "--epochs", "1", "--json", str(tmp_path / "e.json"),
                                      "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "vus_pr" in result.output
    doc = json.loads((tmp_path / "e.json").read_text())
    new = {"vus_pr", "range_precision", "range_recall", "range_f1"}
    for m in (doc["metrics"], doc["baselines"]["rolling_zscore"]):
        assert new <= set(m) and {"f1", "pr_auc"} <= set(m)
        assert all(0.0 <= m[k] <= 1.0 for k in new)
        # a user's file: its training rows are labelled rows too, so SKAB's whole-file convention applies
        assert all(0.0 <= m[k] <= 1.0 for k in ("f1_whole_file", "far_whole_file", "mar_whole_file"))
