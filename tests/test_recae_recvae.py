"""RecVAE (recae.recvae): its loop trains through the registry's `trainer` hook, the composite prior
is finite and its old encoder frozen, and the model saves, loads, seeds and serves like the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from typer.testing import CliRunner

from cli import app
from core.train import TrainConfig
from recae.interactions import heldout_users_split
from recae.models import SparseRows, get_model, positive_inputs
from recae.recommender import AutoencoderRecommender
from recae.recvae import AlternatingTrainer, CompositePrior, RecVAEConfig, RecVAENet, RecVAEObjective

runner = CliRunner()
SMALL = dict(epochs=4, hidden=16, device="cpu")  # latent stays the entry's; tiny widths keep each test < 1 s


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny matrices: a second thread only adds hand-offs (conftest restores the count after)."""
    torch.set_num_threads(1)


def _ratings(n_users: int = 60, n_items: int = 40, seed: int = 0) -> pd.DataFrame:
    """Two taste groups: users rate their group's items 4-5 and the others 1-2."""
    rng = np.random.default_rng(seed)
    rows = [(u + 1, i + 1, float(rng.integers(4, 6) if u % 2 == i % 2 else rng.integers(1, 3)))
            for u in range(n_users) for i in rng.choice(n_items, 14, replace=False)]
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def _net(n_items: int = 30) -> RecVAENet:
    torch.manual_seed(0)
    return RecVAENet(RecVAEConfig(input_dim=n_items, hidden=16, latent_size=4))


def test_recvae_is_a_registered_implicit_model_with_its_own_loop() -> None:
    spec = get_model("recvae")
    assert spec.implicit and spec.trainer is not None
    loop = spec.trainer(TrainConfig(epochs=1), spec.objective(0.0, 1))
    assert isinstance(loop, AlternatingTrainer) and (loop.encoder_passes, loop.decoder_passes) == (3, 1)


def test_the_loop_lowers_the_loss_on_a_toy_matrix() -> None:
    rng = np.random.default_rng(0)
    block = np.kron(np.eye(3), np.ones((20, 10)))  # three groups of users, each likes its own 10 items
    matrix = np.where(rng.random(block.shape) < 0.7, block, 0.0).astype(np.float32)
    net = _net(30)
    cfg = TrainConfig(epochs=8, batch_size=16, lr=1e-2, device="cpu", seed=0)
    history = AlternatingTrainer(cfg, RecVAEObjective(gamma=0.005)).fit(net, SparseRows(sp.csr_matrix(matrix),
                                                                                         positive_inputs))
    assert len(history.train_loss) == 8 and history.best_epoch >= 0
    assert history.train_loss[-1] < 0.9 * history.train_loss[0]
    assert {"recon", "kl", "encoder_loss"} <= set(history.parts[0])
    # what it learned: each group's unseen items rank above the other groups'
    scores = net.reconstruct(torch.from_numpy(block[:1].astype(np.float32))).detach().numpy()[0]
    assert scores[:10].min() > scores[10:].max()


def test_composite_prior_is_finite_and_its_old_encoder_frozen() -> None:
    net = _net()
    prior = CompositePrior(net.encoder)
    assert all(not p.requires_grad for p in prior.parameters())
    x = (torch.rand(5, 30) < 0.3).float()
    x[0] = 0.0  # a user with no positives must not give NaN
    z = torch.randn(5, 4, requires_grad=True)
    z_far = torch.full((5, 4), 50.0)  # far in every tail: the wide component keeps it finite
    for point in (z, z_far):
        assert torch.isfinite(prior.log_density(x, point)).all()
    loss, parts = RecVAEObjective(gamma=0.01)(net.train(), (x, x), 0.0, True, prior=prior)
    loss.backward()
    assert torch.isfinite(loss) and parts["kl"] == parts["kl"]
    assert all(p.grad is None for p in prior.parameters())  # gradients reach the live encoder only
    assert net.encoder.mu.weight.grad is not None
    # the copy follows the live encoder only when told to
    with torch.no_grad():
        net.encoder.mu.weight.add_(1.0)
    assert not torch.equal(prior.old_encoder.mu.weight, net.encoder.mu.weight)
    prior.update(net.encoder)
    assert torch.equal(prior.old_encoder.mu.weight, net.encoder.mu.weight)
    assert all(not p.requires_grad for p in prior.parameters())


def test_kl_weight_grows_with_the_users_positives() -> None:
    """β(x) = γ·|x|: with the decoder's term removed (γ large vs a fixed KL), a user with twice the
    positives pays twice the KL."""
    net = _net().eval()
    x = torch.zeros(2, 30)
    x[0, :3] = 1.0
    x[1, :6] = 1.0
    obj = RecVAEObjective(gamma=1.0)
    one, _ = obj(net, (x[:1], x[:1]), 0.0, False)
    mu, logvar = net.encode_stats(x[:1])
    nll = -(torch.log_softmax(net.decode(mu), 1) * x[:1]).sum()
    kl = one - nll
    assert kl.item() > 0
    two, _ = RecVAEObjective(gamma=2.0)(net, (x[:1], x[:1]), 0.0, False)
    assert torch.isclose(two - nll, 2 * kl, rtol=1e-4)


def test_save_load_round_trip_and_same_seed_same_scores(tmp_path: Path) -> None:
    frame = _ratings()
    rec = AutoencoderRecommender(model="recvae", seed=3, **SMALL).fit(frame)
    assert len(rec.history_.train_loss) == 4
    rec.save(tmp_path / "m")
    again = AutoencoderRecommender.load(tmp_path / "m", device="cpu")
    assert isinstance(again.module_, RecVAENet)
    users = np.arange(10)
    np.testing.assert_array_equal(rec.score_rows(users), again.score_rows(users))
    np.testing.assert_array_equal(again.history_.train_loss, rec.history_.train_loss)
    twin = AutoencoderRecommender(model="recvae", seed=3, **SMALL).fit(frame)
    np.testing.assert_array_equal(rec.score_rows(users), twin.score_rows(users))
    other = AutoencoderRecommender(model="recvae", seed=4, **SMALL).fit(frame)
    assert not np.array_equal(rec.score_rows(users), other.score_rows(users))


def test_validation_users_keep_the_best_epoch(caplog) -> None:  # noqa: ANN001
    frame = _ratings(n_users=260)
    split = heldout_users_split(frame, n_val_users=30, n_test_users=30, seed=0)
    rec = AutoencoderRecommender(model="recvae", **SMALL)
    with caplog.at_level("INFO", logger="core.train"):  # the shared BestEpoch says which epoch was kept
        rec.fit(split.train.assign(rating=5.0), validation=(split.val_fold_in, split.val_target))
    h = rec.history_
    assert len(h.val_loss) == 4 and h.best_epoch == int(np.argmin(h.val_loss))
    assert f"kept epoch {h.best_epoch + 1} of 4 (val ndcg@100" in caplog.text
    # the weights kept are the best epoch's: scoring the validation users again gives its NDCG
    monitor = rec._validation_monitor(split.val_fold_in, split.val_target)
    assert abs(monitor(rec.module_) - min(h.val_loss)) < 1e-9


def test_cli_trains_recvae_and_recommends_unseen_items(tmp_path: Path) -> None:
    frame = _ratings()
    path = tmp_path / "ratings.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "model"
    res = runner.invoke(app, ["recae", "train", "--dataset", str(path), "--model", "recvae", "--epochs", "2",
                              "--device", "cpu", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "trained recvae" in res.output
    config = json.loads((out / "config.json").read_text())
    assert "RecVAENet" in json.dumps(config)
    n_items = frame["item"].nunique()
    res = runner.invoke(app, ["recae", "recommend", "--model", str(out), "--user", "1", "-k", str(n_items)])
    assert res.exit_code == 0, res.output
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in res.output.splitlines()
             if line.strip().startswith("|")]
    recommended = {int(float(row[1])) for row in cells[1:] if row[0][0].isdigit()}  # rank | item | score
    rated = set(frame[frame["user"] == 1]["item"])
    assert recommended and not rated & recommended
    assert len(recommended) == n_items - len(rated)
