"""GLocal-K (recae.glocalk) through the recommender: fits, predicts within the scale, beats the
global mean on low-rank data, saves and loads to the same predictions, scores the same whatever
rows it is fed, and is one of `ae recae evaluate --model all`'s explicit models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from cli import app
from recae.glocalk import (
    GlobalKernelBank,
    GLocalKConfig,
    GLocalKNet,
    GLocalKObjective,
    GLocalKTrainer,
    ObservedBatch,
    shifted_correlation,
)
from recae.models import get_model
from recae.recommender import AutoencoderRecommender

runner = CliRunner()
SMALL = dict(model="glocalk", epochs=6, hidden=24, device="cpu", seed=0)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _low_rank(n_users: int = 80, n_items: int = 50, density: float = 0.35, seed: int = 0) -> pd.DataFrame:
    """Ratings 1-5 from a rank-2 taste model plus a little noise, a seeded share of cells observed."""
    rng = np.random.default_rng(seed)
    users, items = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    scores = 3.0 + 0.9 * users @ items.T + 0.2 * rng.normal(size=(n_users, n_items))
    seen = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(seen)
    return pd.DataFrame({"user": u + 1, "item": i + 1, "rating": np.clip(np.rint(scores[u, i]), 1, 5)})


def _split(frame: pd.DataFrame, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    test = np.random.default_rng(seed).random(len(frame)) < 0.15
    return frame[~test], frame[test]


@pytest.mark.parametrize("shape", [(1, 3), (3, 3), (1, 5), (1, 1)])
def test_the_global_convolution_is_conv2d_in_values_and_gradients(shape: tuple[int, int]) -> None:
    """The fine-tuning convolution is written as shifted sums (fast on CPU); it must be the zero-padded
    cross-correlation F.conv2d computes, for the input and for the kernel's gradient."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(17, 23, generator=gen) * (torch.rand(17, 23, generator=gen) < 0.3)
    k1 = torch.randn(shape, generator=gen, requires_grad=True)
    k2 = k1.detach().clone().requires_grad_(True)
    ours = shifted_correlation(x, k1)
    ref = F.conv2d(x[None, None], k2[None, None], padding=(shape[0] // 2, shape[1] // 2))[0, 0]
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    weights = torch.randn(17, 23, generator=gen)
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(k1.grad, k2.grad, rtol=1e-5, atol=1e-5)


def test_glocalk_is_an_explicit_item_based_model_with_its_own_loop() -> None:
    spec = get_model("glocalk")
    assert not spec.implicit and spec.item_based and spec.trainer is not None
    from core.train import TrainConfig

    loop = spec.trainer(TrainConfig(epochs=spec.recipe.epochs, optimizer="lbfgs"), spec.objective(0.0, 1))
    assert isinstance(loop, GLocalKTrainer)
    pre, fine = loop.split_epochs(spec.recipe.epochs)
    assert pre >= 1 and pre + fine == spec.recipe.epochs


def test_fit_predicts_within_scale_and_beats_the_global_mean() -> None:
    train, test = _split(_low_rank())
    rec = AutoencoderRecommender(**SMALL).fit(train)
    pred = rec.predict(test["user"].to_numpy(), test["item"].to_numpy())
    assert np.isfinite(pred).all() and pred.min() >= 1.0 and pred.max() <= 5.0
    rmse = float(np.sqrt(np.mean((pred - test["rating"].to_numpy()) ** 2)))
    baseline = float(np.sqrt(np.mean((train["rating"].mean() - test["rating"].to_numpy()) ** 2)))
    assert rmse < 0.9 * baseline
    # both phases ran: the module convolves with its frozen global kernel
    assert [p["phase"] for p in rec.history_.parts] == [1.0] * 4 + [2.0] * 2
    # what it was trained with, and nothing it was not: I-AutoRec's l2 does not apply to GLocal-K
    assert rec.settings_["epochs"] == 6 and "l2" not in rec.settings_
    assert bool(rec.module_.finetuned)


def test_scoring_is_the_same_for_any_rows_fed() -> None:
    """The recommender feeds item rows in batches: one row at a time must give the full pass."""
    rec = AutoencoderRecommender(**SMALL).fit(_low_rank())
    items = rec.train_.T.tocsr()
    whole = rec._forward_rows(items)
    one_by_one = np.vstack([rec._forward_rows(items[i:i + 1]) for i in range(items.shape[0])])
    np.testing.assert_allclose(one_by_one, whole, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip_gives_the_same_predictions(tmp_path) -> None:  # noqa: ANN001
    train, test = _split(_low_rank())
    rec = AutoencoderRecommender(**SMALL).fit(train)
    before = rec.predict(test["user"].to_numpy(), test["item"].to_numpy())
    rec.save(tmp_path / "gk")
    loaded = AutoencoderRecommender.load(tmp_path / "gk")
    after = loaded.predict(test["user"].to_numpy(), test["item"].to_numpy())
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
    assert bool(loaded.module_.finetuned)


def test_training_is_seeded() -> None:
    frame = _low_rank(n_users=40, n_items=30)
    a = AutoencoderRecommender(**{**SMALL, "epochs": 3}).fit(frame).history_.train_loss
    b = AutoencoderRecommender(**{**SMALL, "epochs": 3}).fit(frame).history_.train_loss
    assert a == b


def test_glocalk_is_among_evaluate_all_models(flat) -> None:  # noqa: ANN001
    from recae.evaluate import models_for

    assert "glocalk" in models_for("all", "u1")
    assert "glocalk" not in models_for("all", "users")
    result = runner.invoke(app, ["recae", "evaluate", "--help"])
    assert result.exit_code == 0 and "glocalk" in flat(result.output)


@pytest.mark.parametrize("dense_only", [False, True], ids=["sparse", "dense-only device"])
@pytest.mark.parametrize(("phase", "conv_axes", "density"), [("pre-train", "users", 0.35), ("fine-tune", "users", 0.35),
                                                          ("fine-tune", "both", 0.35), ("fine-tune", "users", 0.08)])
def test_the_observed_entry_loss_is_the_dense_masked_loss_in_values_and_gradients(
        phase: str, conv_axes: str, density: float, dense_only: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training computes the outputs at the observed ratings only (sparse input rows, the convolution
    only where it can be non-zero, a sampled output layer, the bank's pooling through the output
    layer's column mean, each local kernel built once): the loss and every gradient, the kernel
    bank's included, must be those of the dense masked loss. On a device without sparse kernels
    (MPS; forced here on the CPU) core.sampled builds the same products densely: same numbers."""
    if dense_only:
        monkeypatch.setattr("core.sampled.dense_only", lambda device: True)
    torch.manual_seed(0)
    frame = _low_rank(n_users=30, n_items=20, density=density)
    x = torch.zeros(20, 30)
    x[frame["item"].to_numpy() - 1, frame["user"].to_numpy() - 1] = torch.tensor(frame["rating"].to_numpy()).float()
    net = GLocalKNet(GLocalKConfig(input_dim=30, hidden=8, conv_axes=conv_axes))
    bank = GlobalKernelBank(20, net.config.conv_shape)
    objective = GLocalKObjective(l2=1e-2, sparsity=1e-3)
    observed = ObservedBatch.of(x, x, net.config.conv_shape)
    assert observed.conv is not None and observed.conv.pattern.nnz < x.numel()  # the sparse path runs
    assert (observed.sparse.layout == torch.strided) == dense_only
    params = [*net.parameters(), *bank.parameters()]

    def grads(batch: object, kernel: object) -> list[torch.Tensor]:
        loss, _ = objective(net, batch, 0.0, True, kernel=kernel())
        return [loss.detach(), *torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)]

    fine = phase == "fine-tune"
    dense = grads((x, x), lambda: bank(net.local(x).mean(dim=1)) if fine else None)
    with net.sharing_kernels():
        ours = grads(observed, lambda: bank(net.pooled(observed)) if fine else None)
    assert float(dense[0]) > 0 and (dense[-1].abs().sum() > 0) == fine  # the bank moves only when fine-tuning
    for got, want in zip(ours, dense):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
