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
    history = Trainer(TrainConfig(**{"device": "cpu", **kw})).fit(model, x)
    return model, history


def test_same_seed_gives_identical_training_on_cpu() -> None:
    _, h1 = _fit(epochs=5, seed=3)
    _, h2 = _fit(epochs=5, seed=3)
    assert h1.train_loss == h2.train_loss


class _ScriptedMonitor:
    """A validation monitor that returns a fixed sequence of losses and records the weights it saw."""

    def __init__(self, losses: list[float]) -> None:
        self.losses, self.states = losses, []

    def __call__(self, model: torch.nn.Module) -> float:
        self.states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return self.losses[len(self.states) - 1]


def _same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def _scripted_fit(losses: list[float], **kw) -> tuple[torch.nn.Module, object, _ScriptedMonitor]:
    torch.manual_seed(0)
    x = torch.rand(40, 12)
    model = DenseAE(DenseConfig(input_dim=12, hidden=[8], code_size=3))
    monitor = _ScriptedMonitor(losses)
    history = Trainer(TrainConfig(device="cpu", lr=0.05, **kw)).fit(model, x, monitor)
    return model, history, monitor


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch() -> None:
    # best at epoch index 2; two epochs without improvement (patience 2) end training after index 4
    model, history, monitor = _scripted_fit([3.0, 2.0, 1.0, 1.5, 1.2, 0.1, 0.0], epochs=7, patience=2)
    assert history.stopped_early
    assert len(history.train_loss) == len(history.val_loss) == 5 == len(monitor.states)
    assert history.val_loss == [3.0, 2.0, 1.0, 1.5, 1.2] and history.best_epoch == 2
    assert _same_weights(model, monitor.states[2])  # the best epoch's weights, not the last ones
    assert not _same_weights(model, monitor.states[4])


def test_min_delta_counts_small_gains_as_no_improvement() -> None:
    _, history, _ = _scripted_fit([1.0, 0.95, 0.9, 0.5], epochs=4, patience=2, min_delta=0.1)
    assert history.stopped_early and history.best_epoch == 0 and len(history.val_loss) == 3


def test_restore_best_without_patience_runs_every_epoch() -> None:
    model, history, monitor = _scripted_fit([2.0, 0.5, 1.0, 3.0], epochs=4, restore_best=True)
    assert not history.stopped_early and len(history.val_loss) == 4 and history.best_epoch == 1
    assert _same_weights(model, monitor.states[1])


def test_without_patience_or_restore_the_last_weights_are_kept() -> None:
    model, history, monitor = _scripted_fit([2.0, 0.5, 1.0, 3.0], epochs=4)
    assert history.best_epoch == 1 and not history.stopped_early
    assert _same_weights(model, monitor.states[3]) and not _same_weights(model, monitor.states[1])


def test_validation_data_the_model_cannot_fit_stops_early_with_best_weights() -> None:
    """Eight rows of noise to memorise: validation noise gets worse as training overfits, so training
    stops early, and after fit the model scores the validation set exactly as at its best epoch."""
    gen = torch.Generator().manual_seed(0)
    train, val = torch.randn(8, 16, generator=gen), torch.randn(32, 16, generator=gen)
    torch.manual_seed(0)
    model = DenseAE(DenseConfig(input_dim=16, hidden=[64], code_size=8))
    trainer = Trainer(TrainConfig(device="cpu", epochs=300, lr=0.03, batch_size=8, patience=3, seed=0))
    history = trainer.fit(model, train, val)
    assert history.stopped_early and len(history.val_loss) < 300
    assert len(history.train_loss) == history.best_epoch + 1 + 3
    assert history.val_loss[history.best_epoch] == min(history.val_loss)
    assert history.val_loss[-1] > min(history.val_loss)
    after = trainer.evaluate(model, val)
    assert after == pytest.approx(min(history.val_loss), rel=1e-6)
    assert after != pytest.approx(history.val_loss[-1], rel=1e-6)


def test_val_fraction_split_is_monitored() -> None:
    model, history = _fit(epochs=5, val_fraction=0.2, restore_best=True)
    assert len(history.val_loss) == 5 and history.val_loss[history.best_epoch] == min(history.val_loss)


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


def _fake_accelerators(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda,mps,expected", [
    (True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu"),
])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool,
                                             expected: str) -> None:
    _fake_accelerators(monkeypatch, cuda, mps)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device(" AUTO ") == torch.device(expected)


def test_explicit_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_accelerators(monkeypatch, cuda=True, mps=True)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("mps") == torch.device("mps")
    assert resolve_device("cpu") == torch.device("cpu")  # cpu even when accelerators exist
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_unavailable_accelerators_are_user_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_accelerators(monkeypatch, cuda=False, mps=False)
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda:0")
    with pytest.raises(UserError, match="MPS is not available"):
        resolve_device("mps")
    with pytest.raises(UserError, match="CUDA is not available"):  # the trainer reports it, not torch
        _fit(epochs=1, device="cuda")
