"""A detector of several networks trained apart (`network.ensemble`, `train --ensemble N`): its score
is the mean of what its members would score alone, it saves and loads as one model, and it refuses
what it cannot do (online adaptation of one network among N) with a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from core.bundle import ModuleBundle
from tsad.config import DetectorConfig, from_dict, to_dict
from tsad.detector import WindowDetector

runner = CliRunner()


def _series(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.column_stack([np.sin(2 * np.pi * t / 25), np.cos(2 * np.pi * t / 40)]) + 0.05 * rng.normal(size=(n, 2))


def _config(ensemble: int) -> DetectorConfig:
    return DetectorConfig(window=16).updated({"training.epochs": 3, "network.ensemble": ensemble,
                                              "scoring.smooth": 3})


@pytest.fixture(scope="module")
def ensemble() -> WindowDetector:
    return WindowDetector(_config(3), seed=5, device="cpu").fit(_series(300))


def test_the_score_is_the_mean_of_the_members_scored_alone(ensemble: WindowDetector) -> None:
    """Member k is the single network that seed + k trains, and every step after the squared
    errors (tail mean, smoothing, channel mean) is linear, so the scores average too."""
    test = _series(200, seed=1)
    test[120:125] += 3.0
    alone = [WindowDetector(_config(1), seed=5 + k, device="cpu").fit(_series(300)).raw_score(test).score
             for k in range(3)]
    got = ensemble.raw_score(test).score
    np.testing.assert_allclose(got, np.mean(alone, axis=0), rtol=1e-5, atol=1e-7, equal_nan=True)
    assert not np.allclose(alone[0], alone[1], equal_nan=True)  # the members do differ
    assert len(ensemble.history_.train_loss) == 3  # one final loss per member


def test_an_ensemble_saves_and_loads_as_one_model(ensemble: WindowDetector, tmp_path: Path) -> None:
    ensemble.save(tmp_path / "m")
    again = WindowDetector.load(tmp_path / "m", device="cpu")
    assert isinstance(again.module_, ModuleBundle) and len(again.module_.members) == 3
    assert to_dict(again.config)["network"]["ensemble"] == 3
    # one network saves its config as before ensembles existed (earlier releases refuse unknown fields)
    assert "ensemble" not in to_dict(_config(1))["network"] and from_dict(to_dict(_config(1))) == _config(1)
    test = _series(120, seed=2)
    np.testing.assert_array_equal(again.score(test).score, ensemble.score(test).score)
    np.testing.assert_array_equal(again.score(test).is_anomaly, ensemble.score(test).is_anomaly)


def _csv(path: Path, values: np.ndarray) -> Path:
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=len(values), freq="5min"),
                          "v0": values[:, 0], "v1": values[:, 1]})
    frame.to_csv(path, index=False)
    return path


def test_the_cli_trains_an_ensemble_and_refuses_bad_sizes_and_adaptation(tmp_path: Path) -> None:
    data = _csv(tmp_path / "train.csv", _series(300))
    common = ["--window", "16", "--epochs", "2", "--device", "cpu", "--quiet"]
    made = runner.invoke(app, ["tsad", "train", "--data", str(data), "--out", str(tmp_path / "m"), "--ensemble", "2",
                               *common])
    assert made.exit_code == 0, made.output
    assert len(WindowDetector.load(tmp_path / "m", device="cpu").module_.members) == 2

    bad = runner.invoke(app, ["tsad", "train", "--data", str(data), "--out", str(tmp_path / "bad"), "--ensemble", "0",
                              *common])
    assert bad.exit_code == 2 and "--ensemble must be between 1 and 16" in bad.output
    assert not (tmp_path / "bad").exists()

    test = _csv(tmp_path / "test.csv", _series(200, seed=3))
    adapted = runner.invoke(app, ["tsad", "score", "--model", str(tmp_path / "m"), "--input", str(test),
                                  "--out", str(tmp_path / "s.csv"), "--adapt", "--device", "cpu", "--quiet"])
    assert adapted.exit_code == 2 and "--adapt adapts one network" in adapted.output
    assert not (tmp_path / "s.csv").exists()
    watched = runner.invoke(app, ["tsad", "monitor", "--model", str(tmp_path / "m"), "--alerts",
                                  str(tmp_path / "a.jsonl"), "--adapt", "--quiet"], input=test.read_text())
    assert watched.exit_code == 2 and "--adapt adapts one network" in watched.output
    assert not (tmp_path / "a.jsonl").exists()
    scored = runner.invoke(app, ["tsad", "score", "--model", str(tmp_path / "m"), "--input", str(test),
                                 "--out", str(tmp_path / "s.csv"), "--device", "cpu", "--quiet"])
    assert scored.exit_code == 0, scored.output
    assert pd.read_csv(tmp_path / "s.csv")["score"].notna().sum() > 100


def test_evaluate_names_an_ensemble_and_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    values = _series(500, seed=4)
    values[430:440] += 4.0
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=500, freq="5min"),
                          "v0": values[:, 0], "v1": values[:, 1],
                          "label": ((np.arange(500) >= 430) & (np.arange(500) < 440)).astype(int)})
    frame.to_csv(tmp_path / "labelled.csv", index=False)
    base = ["tsad", "evaluate", "--data", str(tmp_path / "labelled.csv"), "--train-rows", "300", "--window", "16",
            "--epochs", "2", "--ensemble", "2", "--device", "cpu", "--quiet"]
    result = runner.invoke(app, [*base, "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["model"].endswith("x2") and doc["ensemble"] == 2

    # refused before any network trains: --adapt adapts one network; the log benchmark picks its own detector
    adapted = runner.invoke(app, [*base, "--adapt"])
    assert adapted.exit_code == 2 and "--adapt adapts one network" in adapted.output
    logs = runner.invoke(app, ["tsad", "evaluate", "--benchmark", "bgl", "--ensemble", "2", "--quiet"])
    assert logs.exit_code == 2 and "--ensemble" in logs.output
