"""Alerting saved with the model: each mode gives the same alerts row for row in `detect`, in
`score --state` run file by file, and in `monitor` stopped and resumed; batches of any size agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from core.errors import UserError
from tsad.alerting import AdaptiveAlerting, AlertingConfig, SpotAlerting, gpd_moments

runner = CliRunner()


def _chunked(alerting, score: np.ndarray, surprise: np.ndarray, values: np.ndarray, sizes: list[int]):  # noqa: ANN001, ANN202
    state, out, flags, start = alerting.fresh_state(), [], [], 0
    for size in sizes:
        a, f, state = alerting.apply(score[start:start + size], surprise[start:start + size],
                                     values[start:start + size], json.loads(json.dumps(state)))  # as saved
        out.append(a)
        flags.append(f)
        start += size
    return np.concatenate(out), np.concatenate(flags)


def test_adaptive_matches_the_nab_pipeline_and_any_batching() -> None:
    from tsad.baselines import RollingZScore
    from tsad.postprocess import nab_anomaly_score

    rng = np.random.default_rng(0)
    n = 2500
    surprise = np.abs(rng.standard_normal(n)) * 2
    surprise[:31] = np.nan
    surprise[1800:1805] += 12
    values = np.cumsum(rng.standard_normal((n, 2)), axis=0)
    level = RollingZScore.surprise(RollingZScore(window=300).score(values))
    expected = nab_anomaly_score(surprise, level=level)
    alerting = AdaptiveAlerting(AlertingConfig(mode="adaptive", level=True), 300)
    score = np.zeros(n)
    whole, flags = _chunked(alerting, score, surprise, values, [n])
    np.testing.assert_allclose(whole, expected, atol=1e-9)
    cuts = np.unique(rng.integers(1, n, size=60))
    sizes = np.diff(np.concatenate([[0], cuts, [n]])).tolist()
    parts, part_flags = _chunked(alerting, score, surprise, values, sizes)
    np.testing.assert_allclose(parts, whole, atol=1e-12)
    assert (part_flags == flags).all() and flags[1800:1806].any()


def test_spot_learns_its_tail_from_normal_errors_only_and_batching_does_not_matter() -> None:
    rng = np.random.default_rng(1)
    train = rng.exponential(1.0, 5000)
    spot = SpotAlerting.fit(AlertingConfig(mode="spot", risk=1e-3), train)
    level = spot.describe()
    assert np.quantile(train, 0.98) < level < 20  # an exponential's 1e-3 quantile is about 6.9
    stream = rng.exponential(1.0, 4000)
    stream[[500, 2500]] = 40.0  # two outliers: alerts, and never learned from
    stream[:5] = np.nan  # rows without a score: skipped
    whole, flags = _chunked(spot, stream, stream, np.zeros((4000, 1)), [4000])
    assert flags[[500, 2500]].all() and flags.sum() < 15 and np.isnan(whole[:5]).all()
    sizes = [7] * 571 + [3]
    parts, part_flags = _chunked(spot, stream, stream, np.zeros((4000, 1)), sizes)
    np.testing.assert_allclose(parts, whole, equal_nan=True)
    assert (part_flags == flags).all()
    shape, scale = gpd_moments(rng.exponential(2.0, 20000))
    assert abs(shape) < 0.05 and abs(scale - 2.0) < 0.1  # an exponential is a GPD with shape 0


def test_alerting_settings_are_checked() -> None:
    for bad in ({"mode": "magic"}, {"cutoff": 1.5}, {"long": 0}, {"risk": 0.5}):
        with pytest.raises(UserError):
            AlertingConfig(**bad).validate()


# -------------------------------------------------------------------------------- the three commands
def _frame(first: int, n: int) -> pd.DataFrame:
    t = np.arange(first, first + n)
    v = np.sin(2 * np.pi * t / 25) + 0.004 * t  # a slow drift the training data never showed
    v[(t >= 330) & (t < 335)] += 5.0
    return pd.DataFrame({"timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(5 * t, unit="min"), "v0": v})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("alerting")
    train = _frame(0, 300)
    train["v0"] = np.sin(2 * np.pi * np.arange(300) / 25)
    train.to_csv(d / "train.csv", index=False)
    models = {}
    for mode, extra in (("threshold", []), ("adaptive", ["--level-check", "--cutoff", "0.6"]),
                        ("spot", ["--spot-risk", "0.001"])):
        out = d / mode
        result = runner.invoke(app, ["tsad", "train", "--data", str(d / "train.csv"), "--out", str(out), "--window",
                                     "16", "--epochs", "3", "--device", "cpu", "--quiet", "--alerting", mode, *extra])
        assert result.exit_code == 0, result.output
        models[mode] = out
    return models


@pytest.mark.parametrize("mode", ["threshold", "adaptive", "spot"])
def test_detect_score_and_monitor_agree_row_for_row(trained: dict[str, Path], mode: str, tmp_path: Path) -> None:
    model = trained[mode]
    whole = _frame(0, 600)
    whole.to_csv(tmp_path / "whole.csv", index=False)
    detect = runner.invoke(app, ["tsad", "detect", "--model", str(model), "--data", str(tmp_path / "whole.csv"),
                                 "--out", str(tmp_path / "d.csv"), "--device", "cpu"])
    assert detect.exit_code == 0, detect.output
    d = pd.read_csv(tmp_path / "d.csv")
    assert ("alert_score" in d) == (mode != "threshold")
    assert d["is_anomaly"][330:360].any()

    # score: one run per file, the history and the alerting state carried by --state
    scored = []
    for i, lo in enumerate(range(0, 600, 75)):
        part = tmp_path / f"part{i}.csv"
        whole.iloc[lo:lo + 75].to_csv(part, index=False)
        out = tmp_path / f"s{i}.csv"
        result = runner.invoke(app, ["tsad", "score", "--model", str(model), "--input", str(part), "--out", str(out),
                                     "--state", str(tmp_path / "score.state"), "--device", "cpu", "--quiet"])
        assert result.exit_code == 0, result.output
        scored.append(pd.read_csv(out))
    s = pd.concat(scored, ignore_index=True)
    assert (s["is_anomaly"].to_numpy() == d["is_anomaly"].to_numpy()).all()
    if mode != "threshold":
        np.testing.assert_allclose(s["alert_score"], d["alert_score"], rtol=1e-6, atol=1e-9, equal_nan=True)

    # monitor: stopped after 280 records, resumed on a replay of the whole stream
    state, alerts, lines = tmp_path / "m.state", tmp_path / "a.jsonl", tmp_path / "sc.jsonl"
    text = (tmp_path / "whole.csv").read_text().splitlines(keepends=True)
    for chunk in ("".join(text[:281]), "".join(text)):
        result = runner.invoke(app, ["tsad", "monitor", "--model", str(model), "--state", str(state), "--alerts",
                                     str(alerts), "--emit-scores", str(lines), "--quiet"], input=chunk)
        assert result.exit_code == 0, result.output
    m = [json.loads(x) for x in lines.read_text().splitlines()]
    assert len(m) == 600
    assert [r["is_anomaly"] for r in m] == d["is_anomaly"].tolist()
    if mode != "threshold":
        got = np.array([np.nan if r["alert_score"] is None else r["alert_score"] for r in m], dtype=float)
        np.testing.assert_allclose(got, d["alert_score"], rtol=1e-6, atol=1e-9, equal_nan=True)
