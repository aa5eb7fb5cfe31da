"""Centred windows (network.center, `train --center`): the network judges a window's shape, not its
level, through training, scoring, --adapt and a save/load alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from core.variational import VAEOutput
from tsad.batch import stream_score
from tsad.config import DetectorConfig
from tsad.detector import CenteredWindows, WindowDetector

runner = CliRunner()


def _sine(n: int, start: int = 0) -> np.ndarray:
    t = np.arange(start, start + n)
    return np.sin(2 * np.pi * t / 25) + 0.05 * np.cos(2 * np.pi * t / 7)


def _fit(center: bool | None, kind: str = "conv", **changes: object) -> WindowDetector:
    """center None: the default detector's own choice."""
    cfg = DetectorConfig(window=16).updated({"training.epochs": 3, "network.center": center, "network.kind": kind,
                                             **changes})
    return WindowDetector(cfg, seed=0, device="cpu").fit(_sine(600)[:, None])


class _Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


class _VAELike(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> VAEOutput:
        return VAEOutput(x, x, x)


def test_the_inner_network_sees_each_window_minus_its_mean() -> None:
    x = torch.tensor([[[1.0, 2.0, 3.0], [10.0, 10.0, 13.0]]])  # (batch, channels, window)
    out = CenteredWindows(_Doubler()).reconstruct(x)
    level = x.mean(dim=2, keepdim=True)
    torch.testing.assert_close(out, 2 * (x - level) + level)
    res = CenteredWindows(_VAELike())(x)  # a VAE's forward: only the reconstruction gets the level back
    torch.testing.assert_close(res.recon, x)
    torch.testing.assert_close(res.mu, x - level)


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_a_level_offset_changes_nothing_when_centred_and_everything_when_not(kind: str) -> None:
    values = _sine(200, start=300)[:, None]
    centred, plain = _fit(True, kind), _fit(False, kind)
    for det, same in ((centred, True), (plain, False)):
        base, shifted = det.score(values).score, det.score(values + 3.0).score
        ok = np.isfinite(base)
        if same:
            np.testing.assert_allclose(shifted[ok], base[ok], rtol=1e-4, atol=1e-6)
        else:
            assert np.nanmean(shifted) > 10 * np.nanmean(base)


def test_the_default_detector_alerts_on_a_spike_not_on_a_slow_drift() -> None:
    """bench/tsad_drift.py in small: a noisy sine, then a 3 sigma drift with one spike."""
    rng = np.random.default_rng(0)
    train = _sine(1000) + 0.1 * rng.standard_normal(1000)
    values = _sine(3000, start=1000) + 0.1 * rng.standard_normal(3000) + np.linspace(0, 2.0, 3000)
    values[2000:2003] += 3.0
    cfg = DetectorConfig(window=16).updated({"training.epochs": 5})
    default = WindowDetector(cfg, seed=0, device="cpu").fit(train[:, None])
    assert default.config.network.center and default.config.alerting.mode == "spot"
    flagged = np.flatnonzero(default.score(values[:, None]).is_anomaly)
    assert len(flagged) and flagged.min() >= 2000 and flagged.max() < 2000 + 16 + 3
    # plain windows with the fixed threshold flag most of the drifted stream
    plain = WindowDetector(cfg.updated({"network.center": False, "alerting.mode": "threshold"}), seed=0,
                           device="cpu").fit(train[:, None])
    assert plain.score(values[:, None]).is_anomaly.sum() > 1000


def test_centring_is_saved_and_adapt_uses_it(tmp_path: Path) -> None:
    det = _fit(True)
    det.save(tmp_path / "m")
    again = WindowDetector.load(tmp_path / "m", device="cpu")
    assert again.config.network.center is True
    values = (_sine(400, start=300) + np.linspace(0, 2, 400))[:, None]
    np.testing.assert_array_equal(again.score(values).score, det.score(values).score)
    adapted = stream_score(again, values, adapt=True).score
    np.testing.assert_array_equal(adapted, stream_score(det, values, adapt=True).score)


def test_cli_train_center(tmp_path: Path) -> None:
    data = tmp_path / "normal.csv"
    pd.DataFrame({"v0": _sine(300)}).to_csv(data, index=False)
    result = runner.invoke(app, ["tsad", "train", "--data", str(data), "--out", str(tmp_path / "m"), "--window", "16",
                                 "--epochs", "2", "--center", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert WindowDetector.load(tmp_path / "m", device="cpu").config.network.center is True
