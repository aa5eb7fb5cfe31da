"""Model directories: identical outputs after a round trip, clear errors for damaged ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.artifact import CONFIG_NAME, WEIGHTS_NAME, directory_hash, load_artifact, save_artifact
from core.conv1d import Conv1dAE, Conv1dConfig
from core.dense import DenseAE, DenseConfig
from core.errors import ArtifactError, UserError
from core.jobs.atomic import atomic_dir, atomic_path, atomic_write_text
from core.models import conv1d_vae


@pytest.mark.parametrize("build,shape", [
    (lambda: DenseAE(DenseConfig(input_dim=10, hidden=[6], code_size=2, dropout=0.1)), (3, 10)),
    (lambda: Conv1dAE(Conv1dConfig(in_channels=2, length=20, channels=[4, 3])), (3, 2, 20)),
    (lambda: conv1d_vae(1, 16, 3, channels=[4]), (3, 1, 16)),
])
def test_round_trip_gives_identical_outputs(tmp_path: Path, build, shape) -> None:
    model = build().eval()
    x = torch.randn(shape)
    save_artifact(tmp_path / "m", model, kind="test", extras={"ids": [1, 2]}, metrics={"mse": 0.1},
                  tensors={"scale": torch.tensor([2.0])})
    art = load_artifact(tmp_path / "m", expected_kind="test")
    assert torch.equal(model.reconstruct(x), art.model.reconstruct(x))
    assert art.extras == {"ids": [1, 2]} and art.metrics == {"mse": 0.1}
    assert torch.equal(art.tensors["scale"], torch.tensor([2.0]))
    assert "torch" in art.meta["versions"]


def _saved(tmp_path: Path) -> Path:
    return save_artifact(tmp_path / "m", DenseAE(DenseConfig(input_dim=4, code_size=2)), kind="test")


def test_missing_directory_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifact(tmp_path / "nope")


def test_missing_weights_is_clear(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    (path / WEIGHTS_NAME).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_artifact(path)


def test_truncated_weights_are_caught_by_checksum(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    data = (path / WEIGHTS_NAME).read_bytes()
    (path / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(path)


def test_tampered_config_is_clear(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    (path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_artifact(path)
    cfg = json.loads(json.dumps({"format": "ae-model-dir", "schema_version": 99}))
    (path / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="schema version"):
        load_artifact(path)


def test_wrong_kind_is_clear(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    with pytest.raises(ArtifactError, match="not a 'recommender'"):
        load_artifact(path, expected_kind="recommender")


def test_directory_hash_changes_with_weights(tmp_path: Path) -> None:
    a = save_artifact(tmp_path / "a", DenseAE(DenseConfig(input_dim=4, code_size=2)), kind="t")
    torch.manual_seed(9)
    b = save_artifact(tmp_path / "b", DenseAE(DenseConfig(input_dim=4, code_size=2)), kind="t")
    assert directory_hash(a) != directory_hash(b)


def test_failed_atomic_dir_leaves_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target / "old.txt").read_text() == "old"


def test_failed_atomic_file_write_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_writing_under_a_file_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        atomic_write_text(tmp_path / "file" / "out.txt", "y")


def test_atomic_outputs_get_ordinary_permissions(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "f.txt", "x")
    (tmp_path / "plain.txt").write_text("x")  # what open() gives under this umask
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777
