"""The detector's estimator contract, nested config, presets, variant registry and model-dir versions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from core.errors import ArtifactError, UserError
from tsad.config import (
    BENCHMARKS,
    PRESETS,
    DetectorConfig,
    NetworkConfig,
    from_dict,
    preset,
    to_dict,
)
from tsad.detector import WindowDetector
from tsad.variants import VARIANTS


def _wave(n: int = 240, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.stack([np.sin(t / 5) + 0.05 * rng.standard_normal(n), np.cos(t / 9)], 1)


def _config(**changes: object) -> DetectorConfig:
    config = DetectorConfig(window=12, network=NetworkConfig(channels=(4, 4), kernel_size=3, hidden=(16, 4),
                                                             latent_size=3))
    config.training.epochs, config.training.batch_size, config.training.patience = 2, 32, None
    return config.updated(changes)


def test_get_params_are_the_init_arguments_and_set_params_checks_names() -> None:
    config = _config()
    det = WindowDetector(config, seed=7, device="cpu")
    assert det.get_params() == {"config": config, "seed": 7}  # device is runtime, not a model parameter
    assert det.set_params(seed=3).seed == 3
    with pytest.raises(UserError, match="no parameter"):
        det.set_params(windw=3)


def test_unfitted_detector_says_so() -> None:
    with pytest.raises(UserError, match="not fitted"):
        WindowDetector(_config()).score(_wave())
    with pytest.raises(UserError, match="not fitted"):
        WindowDetector(_config()).save("unused")


def test_config_round_trips_through_its_dict_form() -> None:
    config = _config(**{"scoring.score_channels": (0,), "threshold.rule": "pot", "network.denoise": "mask"})
    again = from_dict(json.loads(json.dumps(to_dict(config))))
    assert again == config
    assert "device" not in to_dict(config)["training"]  # runtime settings are not stored


def test_updated_copies_and_rejects_unknown_settings() -> None:
    base = _config()
    changed = base.updated({"training.epochs": 9, "window": 20})
    assert (changed.training.epochs, changed.window) == (9, 20)
    assert (base.training.epochs, base.window) == (2, 12)  # the original is untouched
    with pytest.raises(UserError, match="unknown detector setting 'training.epoch'"):
        base.updated({"training.epoch": 3})


def test_presets_are_valid_configs_and_copies() -> None:
    assert set(BENCHMARKS) == {"nab", "skab", "msl"}
    for name in PRESETS:
        preset(name).validate()
    nab = preset("nab")
    nab.training.epochs = 1
    assert PRESETS["nab"].training.epochs == 60  # a preset handed out cannot be changed by its user
    assert preset("msl").scoring.smooth == 40 and preset("msl").scoring.score_channels == (0,)
    with pytest.raises(UserError, match="unknown preset"):
        preset("yahoo")


@pytest.mark.parametrize("kind", sorted(VARIANTS))
def test_every_variant_fits_and_round_trips(kind: str, tmp_path: Path) -> None:
    x = _wave()
    det = WindowDetector(_config(**{"network.kind": kind}), device="cpu").fit(x)
    det.save(tmp_path / kind)
    again = WindowDetector.load(tmp_path / kind, device="cpu")
    assert again.config == det.config
    np.testing.assert_array_equal(again.score(x).score, det.score(x).score)
    assert np.isfinite(det.score(x).score[det.window - 1:]).all()


def test_same_seed_same_scores_other_seed_other_weights() -> None:
    x = _wave()
    a = WindowDetector(_config(), seed=1, device="cpu").fit(x).score(x).score
    b = WindowDetector(_config(), seed=1, device="cpu").fit(x).score(x).score
    c = WindowDetector(_config(), seed=2, device="cpu").fit(x).score(x).score
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[11:], c[11:])


def _rewrite_extras(path: Path, change) -> None:  # noqa: ANN001 - a function of the extras dict
    cfg_file = path / "config.json"
    doc = json.loads(cfg_file.read_text())
    doc.pop("config_sha256", None)  # as a directory written before configs were hashed
    change(doc["extras"])
    cfg_file.write_text(json.dumps(doc))


def test_a_version_1_model_directory_loads_with_the_same_scores(tmp_path: Path) -> None:
    x = _wave()
    # what version 1 could express: plain windows and the fixed threshold
    config = _config(**{"scoring.smooth": 3, "threshold.rule": "percentile", "threshold.q": 97.0,
                        "network.center": False, "alerting.mode": "threshold", "alerting.risk": 1e-4})
    det = WindowDetector(config, seed=4, device="cpu").fit(x)
    det.save(tmp_path / "m")

    def to_v1(extras: dict) -> None:  # the flat keywords that version 1 saved
        c = extras["params"]["config"]
        extras["params"] = {"window": c["window"], "stride": c["stride"], "model": c["network"]["kind"],
                            "channels": c["network"]["channels"], "kernel_size": c["network"]["kernel_size"],
                            "dropout": c["network"]["dropout"], "latent_size": c["network"]["latent_size"],
                            "hidden": c["network"]["hidden"], "denoise": None, "noise_level": 0.1,
                            "epochs": 2, "batch_size": 32, "lr": 1e-3, "val_fraction": 0.1, "patience": None,
                            "threshold": "percentile", "threshold_q": 97.0, "contamination": 0.01,
                            "risk": 1e-3, "threshold_margin": 1.0, "causal_tail": None, "score_channels": None,
                            "smooth": 3, "seed": 4}
        del extras["config_version"]

    _rewrite_extras(tmp_path / "m", to_v1)
    old = WindowDetector.load(tmp_path / "m", device="cpu")
    assert old.config == config and old.seed == 4
    np.testing.assert_array_equal(old.score(x).score, det.score(x).score)


@pytest.mark.parametrize("without_alerting", [False, True])
def test_a_version_2_model_keeps_plain_windows_and_its_alerting(tmp_path: Path, without_alerting: bool) -> None:
    """Version 2 predates centred windows and spot as the default: its absent fields mean what they
    meant then (plain windows; the fixed threshold when it had no alerting section), so it scores
    and alerts exactly as before."""
    x = _wave()
    config = _config(**{"network.center": False, "alerting.mode": "threshold", "alerting.risk": 1e-4})
    det = WindowDetector(config, seed=1, device="cpu").fit(x)
    det.save(tmp_path / "m")

    def to_v2(extras: dict) -> None:
        extras["config_version"] = 2
        del extras["params"]["config"]["network"]["center"]
        if without_alerting:
            del extras["params"]["config"]["alerting"]

    _rewrite_extras(tmp_path / "m", to_v2)
    old = WindowDetector.load(tmp_path / "m", device="cpu")
    assert old.config == config
    np.testing.assert_array_equal(old.score(x).score, det.score(x).score)
    np.testing.assert_array_equal(old.score(x).is_anomaly, det.score(x).is_anomaly)
    old.save(tmp_path / "again")  # saved again, it is a version-3 model with the same settings
    assert WindowDetector.load(tmp_path / "again", device="cpu").config == config


def test_a_newer_config_version_is_refused_naming_the_version(tmp_path: Path) -> None:
    WindowDetector(_config(), device="cpu").fit(_wave()).save(tmp_path / "m")
    _rewrite_extras(tmp_path / "m", lambda extras: extras.update(config_version=99))
    with pytest.raises(ArtifactError, match="config version 99"):
        WindowDetector.load(tmp_path / "m")


def test_cli_lists_the_registered_variants() -> None:
    result = CliRunner().invoke(app, ["tsad", "train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in VARIANTS:
        assert name in result.output
