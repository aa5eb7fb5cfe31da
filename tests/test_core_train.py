"""The Trainer: determinism, validation and early stopping, bad configs, devices."""

from __future__ import annotations

import pytest
import torch

from core.dense import DenseAE, DenseConfig
from core.device import resolve_device
from core.errors import UserError
from core.train import TrainConfig, Trainer


def _fit(**kw):
    torch.manual_seed(0)
    x = torch.rand(50, 12)
    model = DenseAE(DenseConfig(input_dim=12, hidden=[8], code_size=3))
    history = Trainer(TrainConfig(device="cpu", **kw)).fit(model, x)
    return model, history


def test_same_seed_gives_identical_training_on_cpu() -> None:
    _, h1 = _fit(epochs=5, seed=3)
    _, h2 = _fit(epochs=5, seed=3)
    assert h1.train_loss == h2.train_loss


def test_validation_split_and_early_stopping_restore_best() -> None:
    model, history = _fit(epochs=200, val_fraction=0.2, patience=3, lr=0.05, optimizer="sgd")
    assert len(history.val_loss) == len(history.train_loss)
    if history.stopped_early:
        assert len(history.train_loss) == history.best_epoch + 1 + 3
    assert min(history.val_loss) == history.val_loss[history.best_epoch]


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop", "sgd"])
def test_every_optimizer_reduces_loss(optimizer: str) -> None:
    _, history = _fit(epochs=30, optimizer=optimizer, lr=0.01, clip_grad_norm=1.0)
    assert history.train_loss[-1] < history.train_loss[0]


def test_lbfgs_runs_full_batch_and_beats_sgd() -> None:
    _, lbfgs = _fit(epochs=5, optimizer="lbfgs", lr=1.0, batch_size=7)
    _, sgd = _fit(epochs=5, optimizer="sgd", lr=0.01, batch_size=7)
    assert lbfgs.train_loss == sorted(lbfgs.train_loss, reverse=True)  # the full objective never rises
    assert lbfgs.train_loss[-1] < sgd.train_loss[-1]


def test_lbfgs_weight_decay_shrinks_weights() -> None:
    plain, _ = _fit(epochs=5, optimizer="lbfgs", lr=1.0)
    decayed, _ = _fit(epochs=5, optimizer="lbfgs", lr=1.0, weight_decay=1.0)
    norm = lambda m: sum(float((p.detach() ** 2).sum()) for p in m.parameters())  # noqa: E731
    assert norm(decayed) < norm(plain)


@pytest.mark.parametrize("kw,message", [
    ({"optimizer": "lbfgs", "lbfgs_iterations": 0}, "lbfgs_iterations"),
    ({"epochs": -1}, "epochs"),
    ({"batch_size": 0}, "batch size"),
    ({"lr": 0}, "learning rate"),
    ({"optimizer": "adagrad"}, "unknown optimizer"),
    ({"val_fraction": 1.5}, "val_fraction"),
])
def test_bad_training_config_is_a_user_error(kw, message) -> None:
    with pytest.raises(UserError, match=message):
        _fit(**kw)


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")
