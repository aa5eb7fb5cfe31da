"""core.estimator: the one contract both apps' estimators inherit, tested on a minimal estimator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.artifact import Artifact
from core.dense import DenseAE, DenseConfig
from core.errors import ArtifactError, UserError
from core.estimator import Estimator, FittedState


class TinyEstimator(Estimator):
    kind = "tests.TinyEstimator"

    def __init__(self, width: int = 3, scale: float = 1.0, tags: tuple[str, ...] = ("a",), device: str = "auto",
                 progress: bool = False) -> None:
        self.width, self.scale, self.tags, self.device, self.progress = width, scale, tags, device, progress

    def fit(self) -> TinyEstimator:
        torch.manual_seed(0)
        self.module_ = DenseAE(DenseConfig(input_dim=4, hidden=[], code_size=self.width))
        self.offset_ = 0.5 * self.scale
        return self

    def _fitted_state(self) -> FittedState:
        return FittedState(self.module_, {"offset": self.offset_}, {"lookup": torch.arange(3.0)})

    def _restore(self, artifact: Artifact) -> None:
        self.module_ = artifact.model
        self.offset_ = artifact.extras["offset"]
        self.lookup_ = artifact.tensors["lookup"]


def test_params_come_from_the_signature_without_runtime_settings() -> None:
    est = TinyEstimator(width=5, scale=0.0, device="cpu")
    assert est.get_params() == {"width": 5, "scale": 0.0, "tags": ("a",)}
    assert repr(est) == "TinyEstimator(width=5, scale=0.0, tags=('a',))"


def test_set_params_refuses_unknown_names() -> None:
    est = TinyEstimator()
    assert est.set_params(width=2).width == 2
    with pytest.raises(UserError, match="no parameter"):
        est.set_params(depth=2)


def test_one_fitted_check() -> None:
    est = TinyEstimator()
    assert not est.is_fitted
    with pytest.raises(UserError, match="TinyEstimator is not fitted"):
        est.check_fitted()
    assert est.fit().is_fitted


def test_save_load_round_trip_keeps_params_state_and_tensors(tmp_path: Path) -> None:
    est = TinyEstimator(width=2, scale=0.0, tags=("x", "y")).fit()
    est.save(tmp_path / "m", metrics={"loss": 1.0})
    again = TinyEstimator.load(tmp_path / "m", device="cpu")
    assert again.get_params() == {"width": 2, "scale": 0.0, "tags": ["x", "y"]}  # JSON has no tuples
    assert again.scale == 0.0  # zero is a value, not "unset"
    assert again.offset_ == 0.0 and again.device == "cpu"
    assert torch.equal(again.lookup_, torch.arange(3.0))
    x = torch.rand(2, 4)
    assert torch.equal(again.module_.reconstruct(x), est.module_.reconstruct(x))


def test_load_refuses_another_kind_and_incomplete_state(tmp_path: Path) -> None:
    est = TinyEstimator().fit()
    est.save(tmp_path / "m")

    class Other(TinyEstimator):
        kind = "tests.Other"

    with pytest.raises(ArtifactError, match="not a 'tests.Other' model"):
        Other.load(tmp_path / "m")

    class Stricter(TinyEstimator):
        def _restore(self, artifact: Artifact) -> None:
            self.missing_ = artifact.extras["not_saved"]

    with pytest.raises(ArtifactError, match="not a valid Stricter"):
        Stricter.load(tmp_path / "m")
