"""Residual autorec: the network learns what the user+item bias baseline misses, trained on the
observed entries only (recae.models.ObservedEntries), and predicts baseline + its output through
every path (predict, recommend, fold-in, batch scoring, save/load)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from core.dense import DenseAE, DenseConfig
from core.errors import UserError
from core.losses import masked_mse
from core.train import TrainConfig, Trainer
from recae.models import L2Objective, ObservedEntries, SparseRows, observed_outputs, rating_inputs
from recae.recommender import AutoencoderRecommender
from recae.selection import fit_bias


def _ratings(n_users: int = 30, n_items: int = 25, per_user: int = 12, seed: int = 0) -> pd.DataFrame:
    """Two taste groups plus user and item biases, ratings 1-5."""
    rng = np.random.default_rng(seed)
    bu, bi = rng.normal(0, 0.5, n_users), rng.normal(0, 0.5, n_items)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, per_user, replace=False):
            r = 3 + (1.2 if u % 2 == i % 2 else -1.2) + bu[u] + bi[i] + rng.normal(0, 0.3)
            rows.append((u + 1, int(i) + 1, float(np.clip(np.round(r), 1, 5))))
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def _net(n: int, activation: str = "sigmoid") -> DenseAE:
    torch.manual_seed(0)
    return DenseAE(DenseConfig(input_dim=n, hidden=[], code_size=7, code_activation=activation, out_activation=None))


@pytest.mark.parametrize("dense_only", [False, True], ids=["sparse", "dense-only device"])
@pytest.mark.parametrize("activation", ["sigmoid", "identity"])
def test_observed_entry_loss_and_gradients_equal_the_dense_masked_ones(activation: str, dense_only: bool,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Also where core.sampled computes densely (MPS, which lacks its sparse kernels; forced here)."""
    if dense_only:
        monkeypatch.setattr("core.sampled.dense_only", lambda device: True)
    rng = np.random.default_rng(1)
    dense = np.where(rng.random((9, 12)) < 0.3, rng.integers(1, 6, (9, 12)), 0).astype(np.float32)
    matrix = sp.csr_matrix(dense)
    model = _net(12, activation)
    objective = L2Objective(0.05)
    batch = next(iter(ObservedEntries(matrix).batches(1, False, torch.Generator())))
    sparse_loss, _ = objective(model, batch, 0.0, True)
    sparse_grads = torch.autograd.grad(sparse_loss, list(model.parameters()), retain_graph=True)
    x = torch.from_numpy(dense)
    dense_loss, _ = objective(model, (x, x), 0.0, True)
    dense_grads = torch.autograd.grad(dense_loss, list(model.parameters()), retain_graph=True)
    assert sparse_loss.item() == pytest.approx(dense_loss.item(), rel=1e-5)
    for a, b in zip(sparse_grads, dense_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # the outputs at the observed entries are the dense network's, in csr order
    rows, cols = matrix.nonzero()
    with torch.no_grad():
        torch.testing.assert_close(observed_outputs(model, batch), model(x)[rows, cols], rtol=1e-5, atol=1e-6)


def test_a_stored_zero_counts_as_observed() -> None:
    """A residual of exactly 0 is a rating the baseline predicted perfectly: the loss must still pull
    the output there, where a dense row's 0 would read as unrated."""
    matrix = sp.csr_matrix((np.array([0.0, 1.0], dtype=np.float32), (np.array([0, 1]), np.array([0, 1]))),
                           shape=(2, 2))
    assert matrix.nnz == 2  # scipy keeps the explicit zero
    batch = next(iter(ObservedEntries(matrix).batches(1, False, torch.Generator())))
    model = _net(2)
    out = observed_outputs(model, batch)
    assert out.shape == (2,)
    loss, _ = L2Objective(0.0)(model, batch, 0.0, True)
    assert loss.item() == pytest.approx(((out - batch["values"]) ** 2).mean().item())
    x = torch.from_numpy(matrix.toarray())
    assert masked_mse(model(x), x).item() != pytest.approx(loss.item())  # the dense mask drops the zero


def test_plain_autorec_trains_on_its_observed_entries_as_it_did_on_dense_rows() -> None:
    """The plain (non-residual) autorec also trains full-batch on its observed entries, for speed:
    the network it learns is the one the dense masked rows give, to float32 rounding. One epoch (its
    L-BFGS iterations): a second amplifies rounding differences between CPUs to 4e-4 (seen on the
    lent H100 machine's host), where this one stays near 1e-6."""
    ratings = _ratings()
    rec = AutoencoderRecommender(model="autorec", hidden=7, epochs=1, l2=0.05, seed=0, device="cpu").fit(ratings)
    assert not rec.residual_
    items = rec.train_.T.tocsr()
    torch.manual_seed(0)
    dense_net = _net(items.shape[1])
    initial = {name: value.clone() for name, value in dense_net.state_dict().items()}
    cfg = TrainConfig(epochs=1, optimizer="lbfgs", lr=1.0, seed=0, device="cpu")
    Trainer(cfg, L2Objective(0.05)).fit(dense_net, SparseRows(items, rating_inputs))
    for name, value in dense_net.state_dict().items():
        assert (value - initial[name]).abs().max() > 1e-2  # the epoch did train
        torch.testing.assert_close(rec.module_.state_dict()[name], value, rtol=1e-3, atol=1e-4)
    # over several epochs (L-BFGS's state carried between them) the losses still agree: near a minimum
    # the loss barely feels the rounding that moves the weights
    longer = AutoencoderRecommender(model="autorec", hidden=7, epochs=3, l2=0.05, seed=0, device="cpu").fit(ratings)
    torch.manual_seed(0)
    dense_net = _net(items.shape[1])
    dense = Trainer(dataclasses.replace(cfg, epochs=3), L2Objective(0.05)).fit(dense_net,
                                                                                  SparseRows(items, rating_inputs))
    assert len(dense.train_loss) == 3 and dense.train_loss[-1] < 0.5 * dense.train_loss[0]
    np.testing.assert_allclose(longer.history_.train_loss, dense.train_loss, rtol=1e-4)


def test_residual_autorec_predicts_the_baseline_plus_its_output_everywhere(tmp_path: Path) -> None:
    frame = _ratings()
    rec = AutoencoderRecommender(model="autorec", residual=True, activation="identity", l2=0.01, epochs=3,
                                 hidden=16, device="cpu").fit(frame)
    assert rec.residual_ and rec.settings_["residual"] is True and rec.settings_["activation"] == "identity"
    # predictions = bias + the network's residual; the residual part is learned, not zero
    bias = fit_bias(frame, rec.user_map_, rec.item_map_)
    u, i = np.array([1, 2, 3, 4]), np.array([1, 2, 3, 4])
    base = bias.predict(rec.user_map_.index_array(u.astype(object)), rec.item_map_.index_array(i.astype(object)))
    pred = rec.predict(u, i)
    assert np.abs(pred - base).max() > 1e-3
    items = rec._network_rows()
    with torch.no_grad():
        net = rec.module_(torch.from_numpy(items.toarray())).numpy().T  # users x items residuals
    ui, ii = rec.user_map_.index_array(u.astype(object)), rec.item_map_.index_array(i.astype(object))
    np.testing.assert_allclose(pred, np.clip(rec._bias_at(ui, ii) + net[ui, ii], 1, 5), rtol=1e-5)
    # the network's input rows are residuals of the stored structure (every training rating)
    assert items.nnz == len(frame)
    # every path agrees after a save and load
    rec.save(tmp_path / "m")
    again = AutoencoderRecommender.load(tmp_path / "m", device="cpu")
    assert again.residual_
    np.testing.assert_allclose(again.predict(u, i), pred, rtol=1e-6)
    seen = set(frame.loc[frame["user"] == 1, "item"])
    top = again.recommend(1, k=5)
    assert len(top) == 5 and not seen & set(top["item"])
    pd.testing.assert_frame_equal(rec.fold_in({1: 5.0, 2: 1.0}, 4), again.fold_in({1: 5.0, 2: 1.0}, 4))
    idx, scores = again.score_users(np.arange(3), k=4)
    np.testing.assert_array_equal(idx, rec.score_users(np.arange(3), k=4)[0])


def test_residual_beats_the_plain_network_on_sparse_items() -> None:
    """On a catalogue where most items have few ratings, the residual network falls back to the
    item's bias; the plain one reconstructs from almost nothing (held-out RMSE, same fit budget)."""
    from recae.evaluate import evaluate_explicit
    from recae.interactions import random_split

    frame = _ratings(n_users=24, n_items=120, per_user=20, seed=3)
    train, test = random_split(frame, 0.15, seed=0)
    plain = evaluate_explicit(AutoencoderRecommender(l2=0.01, epochs=10, hidden=32, device="cpu"), train, test)
    resid = evaluate_explicit(AutoencoderRecommender(residual=True, l2=0.01, epochs=10, hidden=32, device="cpu"),
                              train, test)
    assert resid["metrics"]["rmse"] < plain["metrics"]["rmse"]
    assert resid["metrics"]["rmse"] < resid["baselines"]["bias"]["rmse"]


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "deeprec", "residual": True}, "cannot learn the bias baseline's residuals"),
    ({"model": "autorec", "activation": "relu"}, "not one of autorec's"),
    ({"model": "deeprec", "activation": "sigmoid"}, "activations are fixed"),
])
def test_residual_settings_are_refused_where_they_do_not_apply(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        AutoencoderRecommender(device="cpu", epochs=1, **kwargs).fit(_ratings())
