"""Model directories edited or swapped by hand are refused with a clear error (CLI exit 2)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from core.artifact import (
    CONFIG_NAME,
    HASH_FIELD,
    WEIGHTS_NAME,
    config_digest,
    load_artifact,
    read_config,
    save_artifact,
)
from core.dense import DenseAE, DenseConfig
from core.errors import ArtifactError
from core.jobs.hashing import file_digest

runner = CliRunner()


def _series(path: Path, n: int = 200) -> Path:
    t = np.arange(n)
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="5min"),
                          "v0": np.sin(2 * np.pi * t / 25)})
    frame.to_csv(path, index=False)
    return path


def _edit(path: Path, change) -> None:  # noqa: ANN001 - change(config dict)
    cfg_file = path / CONFIG_NAME
    doc = json.loads(cfg_file.read_text())
    change(doc)
    cfg_file.write_text(json.dumps(doc, indent=2))


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    _series(d / "train.csv")
    out = d / "model"
    result = runner.invoke(app, ["tsad", "train", "--data", str(d / "train.csv"), "--out", str(out),
                                 "--window", "16", "--epochs", "2", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_an_edited_threshold_is_refused_by_the_cli(detector_dir: Path, tmp_path: Path) -> None:
    data = _series(tmp_path / "d.csv")
    args = ["tsad", "detect", "--model", str(detector_dir), "--data", str(data), "--out", str(tmp_path / "s.csv"),
            "--device", "cpu"]
    assert runner.invoke(app, args).exit_code == 0
    original = (detector_dir / CONFIG_NAME).read_text()
    try:
        _edit(detector_dir, lambda doc: doc["extras"]["threshold"].update(threshold_=1e9))
        result = runner.invoke(app, [*args[:-4], "--out", str(tmp_path / "s2.csv"), "--device", "cpu"])
        assert result.exit_code == 2, result.output
        assert CONFIG_NAME in result.output and HASH_FIELD in result.output and "Traceback" not in result.output
        assert not (tmp_path / "s2.csv").exists()
    finally:
        (detector_dir / CONFIG_NAME).write_text(original)


def _saved(tmp_path: Path, name: str = "m", input_dim: int = 4) -> Path:
    return save_artifact(tmp_path / name, DenseAE(DenseConfig(input_dim=input_dim, code_size=2)), kind="test",
                         extras={"threshold": 0.5, "ids": [1, 2]})


@pytest.mark.parametrize("change", [
    lambda doc: doc["extras"].update(threshold=1e9),
    lambda doc: doc["metrics"].update(mse=0.0),
    lambda doc: doc.update(kind="test", data_fingerprint="forged"),
    lambda doc: doc.update({HASH_FIELD: "0" * 64}),
])
def test_any_edit_of_the_config_is_refused(tmp_path: Path, change) -> None:  # noqa: ANN001
    path = _saved(tmp_path)
    _edit(path, change)
    with pytest.raises(ArtifactError, match=f"{CONFIG_NAME} does not match its recorded {HASH_FIELD}"):
        read_config(path)
    with pytest.raises(ArtifactError, match=str(path / CONFIG_NAME)):
        load_artifact(path)


def test_reformatting_the_config_is_not_an_edit(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    doc = json.loads((path / CONFIG_NAME).read_text())
    (path / CONFIG_NAME).write_text(json.dumps(dict(reversed(list(doc.items())))))  # other key order, no indent
    assert load_artifact(path).extras["threshold"] == 0.5


def test_a_directory_from_before_the_config_hash_loads_with_a_warning(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = _saved(tmp_path)
    _edit(path, lambda doc: doc.pop(HASH_FIELD))
    with caplog.at_level(logging.WARNING, logger="core.artifact"):
        art = load_artifact(path)
    assert art.extras["threshold"] == 0.5
    assert "unverified" in caplog.text and str(path / CONFIG_NAME) in caplog.text


def test_swapped_weights_with_forged_checksums_fail_the_shape_check(tmp_path: Path) -> None:
    path = _saved(tmp_path, "m", input_dim=4)
    other = _saved(tmp_path, "other", input_dim=6)
    (path / WEIGHTS_NAME).write_bytes((other / WEIGHTS_NAME).read_bytes())

    def forge(doc: dict) -> None:
        doc["weights_sha256"] = file_digest(path / WEIGHTS_NAME)
        doc[HASH_FIELD] = config_digest(doc)

    _edit(path, forge)
    read_config(path)  # both checksums match now...
    with pytest.raises(ArtifactError, match="does not fit the model"):
        load_artifact(path)  # ...but the weights do not fit the recorded model


# ------------------------------------------------------------------ every field edited, checksum forged
def _leaves(obj, path=()):  # noqa: ANN001, ANN202 - (path, value) of every scalar or short list in a config
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list) and 0 < len(obj) <= 4:
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    else:
        yield path, obj


def _mutations(value):  # noqa: ANN001, ANN202 - hand edits a user might make to one value
    if isinstance(value, bool):
        return [not value, "x"]
    if isinstance(value, (int, float)):
        return [-1, 0, 1e9, "x", None, [1]]
    if isinstance(value, str):
        return ["x", 1, None]
    if isinstance(value, list):
        return [value[:1], [], value + value[:1], "x"]
    return [1, "x"]


def _forged_variants(model_dir: Path):  # noqa: ANN202 - (label, config text) with a matching checksum
    doc = json.loads((model_dir / CONFIG_NAME).read_text())
    for path, value in _leaves(doc):
        if path[0] in (HASH_FIELD, "weights_sha256", "created", "versions"):
            continue
        for new in _mutations(value):
            edited = json.loads(json.dumps(doc))
            target = edited
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = new
            edited[HASH_FIELD] = config_digest(edited)
            yield f"{'.'.join(map(str, path))}={new!r:.20}", json.dumps(edited)


@pytest.fixture(scope="module")
def recommender_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hostile_rec")
    rng = np.random.default_rng(0)
    rows = [(u, int(i), int(rng.integers(1, 6))) for u in range(1, 25) for i in rng.choice(np.arange(1, 30), 6,
                                                                                          replace=False)]
    pd.DataFrame(rows, columns=["user", "item", "rating"]).to_csv(d / "r.csv", index=False)
    result = runner.invoke(app, ["recae", "train", "--dataset", str(d / "r.csv"), "--out", str(d / "m"),
                                 "--model", "autorec", "--epochs", "1", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return d / "m"


def _use_detector(model_dir: Path):  # noqa: ANN202
    from tsad.detector import WindowDetector

    values = np.sin(np.arange(64) / 5.0)[:, None]
    return lambda: WindowDetector.load(model_dir, device="cpu"), lambda det: det.score(values)


def _use_recommender(model_dir: Path):  # noqa: ANN202
    from recae.recommender import AutoencoderRecommender

    return (lambda: AutoencoderRecommender.load(model_dir, device="cpu"),
            lambda rec: (rec.recommend(1, k=5), rec.predict([1, 2], [3, 4]), rec.fold_in({3: 5.0, 4: 1.0}, k=5)))


@pytest.mark.parametrize("which", ["detector", "recommender"])
def test_no_forged_edit_gets_past_load_unless_the_model_still_works(which: str, request: pytest.FixtureRequest,
                                                                    tmp_path: Path) -> None:
    """Every value of config.json changed by hand, checksum forged to match: `load` refuses it with an
    ArtifactError (CLI exit 2), or the model still works; nothing else escapes (exit 1)."""
    import shutil

    source = request.getfixturevalue(f"{which}_dir")
    copy = tmp_path / "copy"
    shutil.copytree(source.resolve(), copy)
    load, use = (_use_detector if which == "detector" else _use_recommender)(copy)
    refused = 0
    for label, text in _forged_variants(copy):
        (copy / CONFIG_NAME).write_text(text)
        try:
            model = load()
        except ArtifactError:
            refused += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{label}: load raised {type(exc).__name__}: {exc}")
        try:
            use(model)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"{label}: loaded, then using it raised {type(exc).__name__}: {exc}")
    assert refused > 30  # most edits are caught at load
