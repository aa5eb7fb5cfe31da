"""Every autoencoder kind: shapes, learning on a fixed batch, VAE specifics, corruptions, sparsity."""

from __future__ import annotations

import pytest
import torch

from core.conv1d import Conv1dAE, Conv1dConfig
from core.corruption import Corruption
from core.dense import DenseAE, DenseConfig
from core.errors import UserError
from core.losses import BetaSchedule, kl_divergence, masked_mse, multinomial_nll
from core.models import conv1d_vae, dense_vae
from core.objective import ReconstructionObjective
from core.train import TrainConfig, Trainer
from core.variational import VAEOutput


@pytest.mark.parametrize("dim,hidden", [(5, []), (64, [32, 16]), (300, [128])])
def test_dense_output_shape_matches_input(dim: int, hidden: list[int]) -> None:
    model = DenseAE(DenseConfig(input_dim=dim, hidden=hidden, code_size=3))
    x = torch.randn(7, dim)
    assert model(x).shape == x.shape
    assert model.encode(x).shape == (7, 3)


@pytest.mark.parametrize("length", [7, 16, 33, 64, 101, 288])
@pytest.mark.parametrize("channels,kernel", [(1, 7), (3, 4), (2, 3)])
def test_conv_output_length_equals_input_length(length: int, channels: int, kernel: int) -> None:
    model = Conv1dAE(Conv1dConfig(in_channels=channels, length=length, kernel_size=kernel))
    x = torch.randn(2, channels, length)
    assert model(x).shape == x.shape


def test_conv_rejects_wrong_window_shape() -> None:
    model = Conv1dAE(Conv1dConfig(in_channels=2, length=32))
    with pytest.raises(UserError, match="expected windows shaped"):
        model(torch.randn(4, 3, 32))


@pytest.mark.parametrize("config", [
    {"in_channels": 1, "length": 288},
    {"in_channels": 3, "length": 33, "kernel_size": 4, "channels": [16, 8, 4]},
    {"in_channels": 2, "length": 50, "kernel_size": 5, "code_size": 6, "activation": "tanh"},
    {"in_channels": 25, "length": 101, "kernel_size": 3, "stride": 3},
])
def test_conv_eval_path_matches_the_training_layers(config: dict) -> None:
    """Eval mode on CPU runs the layers as 2-D channels-last convolutions (for speed); it must give
    what the 1-D layers give in training mode (no dropout), leave the input alone, and keep gradients."""
    torch.manual_seed(0)
    model = Conv1dAE(Conv1dConfig(dropout=0.0, **config))
    x = torch.randn(9, config["in_channels"], config["length"])
    kept = x.clone()
    with torch.no_grad():
        reference = model.train()(x)
        fast = model.eval().reconstruct(x)
    assert fast.shape == x.shape
    assert torch.allclose(fast, reference, atol=1e-5, rtol=1e-5)
    assert torch.equal(x, kept)
    xg = x.clone().requires_grad_(True)
    model(xg).pow(2).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0


def test_conv_vae_eval_reconstruction_matches_training_layers() -> None:
    torch.manual_seed(0)
    vae = conv1d_vae(in_channels=2, length=40, latent_size=4, channels=[8, 4], dropout=0.0)
    x = torch.randn(5, 2, 40)
    with torch.no_grad():
        reference = vae.train().decode(vae.encode_stats(x)[0])
        assert torch.allclose(vae.eval().reconstruct(x), reference, atol=1e-5, rtol=1e-5)


def _overfit(model: torch.nn.Module, x: torch.Tensor, objective=None, epochs: int = 300) -> list[float]:
    cfg = TrainConfig(epochs=epochs, batch_size=len(x), lr=3e-3, device="cpu", seed=0)
    return Trainer(cfg, objective or ReconstructionObjective()).fit(model, x).train_loss


@pytest.mark.parametrize("build,shape", [
    (lambda: DenseAE(DenseConfig(input_dim=20, hidden=[32], code_size=4)), (16, 20)),
    (lambda: Conv1dAE(Conv1dConfig(in_channels=1, length=32, channels=[8, 8], dropout=0.0)), (16, 1, 32)),
    (lambda: dense_vae(20, [32, 16], 4), (16, 20)),
])
def test_every_model_overfits_a_small_batch(build, shape) -> None:
    torch.manual_seed(1)
    t = torch.linspace(0, 6.28, shape[-1])
    x = torch.stack([torch.sin(t * (1 + i % 4)) for i in range(shape[0])]).reshape(shape)
    objective = ReconstructionObjective(beta=BetaSchedule(beta=1e-3))
    losses = _overfit(build(), x, objective)
    assert losses[-1] < losses[0] / 10


def test_vae_kl_non_negative_and_sampling_shape() -> None:
    vae = conv1d_vae(in_channels=2, length=24, latent_size=5, channels=[4, 4])
    vae.train()
    out = vae(torch.randn(6, 2, 24))
    assert isinstance(out, VAEOutput)
    assert out.recon.shape == (6, 2, 24) and out.mu.shape == (6, 5)
    assert float(kl_divergence(out.mu, out.logvar).detach()) >= 0.0
    assert float(kl_divergence(torch.zeros(3, 5), torch.zeros(3, 5))) == pytest.approx(0.0)
    assert vae.sample(4).shape == (4, 2, 24)


def test_beta_schedule_warms_up_linearly() -> None:
    sched = BetaSchedule(beta=0.5, warmup_epochs=10)
    assert sched(0) == 0.0 and sched(5) == pytest.approx(0.25) and sched(20) == 0.5


def test_gaussian_corruption_has_requested_std() -> None:
    x = torch.zeros(200, 500)
    noisy = Corruption("gaussian", 0.3)(x, torch.Generator().manual_seed(0))
    assert noisy.mean().abs() < 0.01
    assert noisy.std() == pytest.approx(0.3, rel=0.02)


def test_mask_corruption_drops_requested_fraction() -> None:
    x = torch.ones(200, 500)
    dropped = (Corruption("mask", 0.25)(x, torch.Generator().manual_seed(0)) == 0).float().mean()
    assert float(dropped) == pytest.approx(0.25, abs=0.01)


def test_salt_pepper_sets_fraction_to_extremes() -> None:
    x = torch.full((200, 500), 0.5)
    out = Corruption("salt_pepper", 0.2)(x, torch.Generator().manual_seed(0))
    changed = out != 0.5
    assert float(changed.float().mean()) == pytest.approx(0.2, abs=0.01)
    assert set(out[changed].unique().tolist()) == {0.0, 1.0}


def test_unknown_corruption_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown corruption"):
        Corruption("blur", 0.1)


def test_masked_mse_ignores_unrated_entries() -> None:
    target = torch.tensor([[5.0, 0.0, 3.0]])
    a = torch.tensor([[4.0, 100.0, 3.0]])
    b = torch.tensor([[4.0, -7.0, 3.0]])
    assert float(masked_mse(a, target)) == pytest.approx(0.5)
    assert float(masked_mse(a, target)) == float(masked_mse(b, target))


def test_multinomial_nll_matches_hand_computation() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    target = torch.tensor([[1.0, 0.0, 1.0]])
    expected = -(torch.log(torch.tensor(0.5)) + torch.log(torch.tensor(0.25)))
    assert float(multinomial_nll(logits, target)) == pytest.approx(float(expected), rel=1e-5)


def test_sparse_penalty_shrinks_code_activity() -> None:
    x = torch.rand(64, 30)

    def code_activity(l1: float) -> float:
        torch.manual_seed(0)
        model = DenseAE(DenseConfig(input_dim=30, hidden=[32], code_size=16))
        _overfit(model, x, ReconstructionObjective(l1_code=l1), epochs=150)
        with torch.no_grad():
            return float(model.encode(x).abs().mean())

    assert code_activity(0.5) < 0.5 * code_activity(0.0)


def test_denoising_training_beats_plain_on_noisy_inputs() -> None:
    torch.manual_seed(0)
    t = torch.linspace(0, 6.28, 40)
    clean = torch.stack([torch.sin(t + p) for p in torch.linspace(0, 3, 64)])
    noise = Corruption("gaussian", 0.4)

    def noisy_error(objective: ReconstructionObjective) -> float:
        torch.manual_seed(0)
        model = DenseAE(DenseConfig(input_dim=40, hidden=[32], code_size=2))
        _overfit(model, clean, objective, epochs=300)
        with torch.no_grad():
            noisy = noise(clean, torch.Generator().manual_seed(5))
            return float(((model(noisy) - clean) ** 2).mean())

    assert noisy_error(ReconstructionObjective(corruption=noise)) < noisy_error(ReconstructionObjective())
