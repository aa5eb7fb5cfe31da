"""The recommender's registry of models and its estimator contract (params, fitted check, save/load)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from core.artifact import save_artifact
from core.dense import DenseAE, DenseConfig
from core.errors import UserError
from core.objective import ReconstructionObjective
from core.train import History
from recae.evaluate import check_protocol, evaluate_explicit, evaluate_users, training_ratings
from recae.interactions import IdMap
from recae.models import REGISTRY, Recipe, RecModel, get_model, model_names, register
from recae.recommender import KIND, AutoencoderRecommender

runner = CliRunner()
WIDE = {"COLUMNS": "250"}  # no wrapping inside the help table


def test_registry_lists_every_model_and_get_model_names_the_choices() -> None:
    assert set(model_names()) >= {"course", "autorec", "deeprec", "multdae", "multvae"}
    assert all(get_model(name).name == name for name in model_names())
    with pytest.raises(UserError, match="unknown model 'svd'; choose one of course, autorec"):
        get_model("svd")
    with pytest.raises(ValueError, match="already registered"):
        register(get_model("course"))


@pytest.mark.parametrize("model", model_names())
def test_every_registered_model_fits_and_round_trips(model: str, tmp_path: Path, taste_ratings) -> None:
    frame = taste_ratings(40, 30, 12)
    rec = AutoencoderRecommender(model=model, epochs=2, hidden=8, device="cpu").fit(frame)
    trained = rec.members_ if get_model(model).members else [rec]  # a stack trains each member
    assert rec.is_fitted and all(len(r.history_.train_loss) == 2 for r in trained)
    rec.save(tmp_path / "m", dataset="ml-100k")
    again = AutoencoderRecommender.load(tmp_path / "m", device="cpu")
    assert again.get_params() == rec.get_params() and again.dataset_ == "ml-100k"
    for user in (1, 2, 17):
        pd.testing.assert_frame_equal(rec.recommend(user, 5), again.recommend(user, 5))
    pd.testing.assert_frame_equal(rec.fold_in({1: 5.0, 3: 4.0}, 4), again.fold_in({1: 5.0, 3: 4.0}, 4))
    np.testing.assert_array_equal(rec.score_rows(np.arange(4)), again.score_rows(np.arange(4)))
    # asked for more than the unrated items: every rated item stays out (explicit models once offered
    # them with the lowest rating), in recommend, fold-in and batch scoring alike
    everything = frame["item"].nunique()
    rated = set(frame[frame["user"] == 1]["item"])
    assert not rated & set(again.recommend(1, everything)["item"])
    assert not {1, 3} & set(again.fold_in({1: 5.0, 3: 4.0}, everything)["item"])
    top, vals = again.score_users(np.array([again.user_map_.to_index(1)]), everything)
    assert not rated & set(again.item_map_.to_raw(top[0][np.isfinite(vals[0])]).tolist())
    if not get_model(model).implicit:
        np.testing.assert_array_equal(rec.predict([1, 2], [3, 4]), again.predict([1, 2], [3, 4]))


def test_get_params_are_the_init_arguments_and_set_params_checks_names(tmp_path: Path, taste_ratings) -> None:
    given = dict(model="multdae", epochs=2, batch_size=16, lr=0.01, weight_decay=0.0, l2=0.0, hidden=8,
                 positive_threshold=3.5, seed=7, residual=None, activation=None)
    rec = AutoencoderRecommender(**given, device="cpu", progress=False)
    assert rec.get_params() == given  # device and progress are where it runs, not the model
    assert "hidden=8" in repr(rec)
    rec.fit(taste_ratings(40, 30, 12)).save(tmp_path / "m")
    assert AutoencoderRecommender.load(tmp_path / "m", device="cpu").get_params() == given
    assert rec.set_params(lr=0.1, epochs=3) is rec and rec.lr == 0.1 and rec.epochs == 3
    with pytest.raises(UserError, match="no parameter.*learning_rate"):
        rec.set_params(learning_rate=0.1)


def test_unfitted_use_raises_the_clear_error(tmp_path: Path) -> None:
    rec = AutoencoderRecommender(model="deeprec", device="cpu")
    calls = [lambda: rec.recommend(1), lambda: rec.predict([1], [1]), lambda: rec.fold_in({1: 4.0}),
             lambda: rec.score_rows(np.arange(2)), lambda: rec.score_users(np.arange(2), 3),
             lambda: rec.save(tmp_path / "m"), lambda: rec.save(tmp_path / "m", dataset="ml-100k")]
    for call in calls:
        with pytest.raises(UserError, match="not fitted yet"):
            call()
    assert not (tmp_path / "m").exists()


def test_zero_is_a_setting_not_unset(taste_ratings) -> None:
    """lr=0 or hidden=0 used to fall back to the recipe (`x or default`); now they are checked."""
    frame = taste_ratings(40, 30, 12)
    rec = AutoencoderRecommender(model="deeprec", epochs=1, lr=0.0, device="cpu")
    with pytest.raises(UserError, match="learning rate must be positive"):
        rec.fit(frame)
    assert not rec.is_fitted  # refused before any fitted state was set
    with pytest.raises(UserError, match="batch size"):
        AutoencoderRecommender(model="deeprec", epochs=1, batch_size=0, device="cpu").fit(frame)
    with pytest.raises(UserError, match="hidden"):
        AutoencoderRecommender(model="deeprec", epochs=1, hidden=0, device="cpu").fit(frame)
    # weight_decay=0 overrides the course recipe's 0.5: a different model from the recipe's
    base = AutoencoderRecommender(model="course", epochs=2, device="cpu").fit(frame)
    no_decay = AutoencoderRecommender(model="course", epochs=2, weight_decay=0.0, device="cpu").fit(frame)
    assert not np.allclose(base.score_rows(np.arange(3)), no_decay.score_rows(np.arange(3)))


def test_a_new_entry_is_all_a_new_model_needs(taste_ratings) -> None:
    entry = RecModel(
        name="tiny-test", implicit=True, hidden=4,
        build=lambda n, hidden: DenseAE(DenseConfig(input_dim=n, hidden=[], code_size=hidden)),
        objective=lambda l2, epochs: ReconstructionObjective(loss="multinomial"),
        recipe=Recipe(epochs=2, batch_size=8, optimizer="adam", lr=1e-2))
    register(entry)
    try:
        rec = AutoencoderRecommender(model="tiny-test", device="cpu").fit(taste_ratings(40, 30, 12))
        assert rec.module_.config.code_size == 4 and len(rec.history_.train_loss) == 2
        assert "score" in rec.recommend(2, 3).columns  # implicit: ranks, does not predict ratings
        with pytest.raises(UserError, match="does not predict ratings"):
            rec.predict([2], [3])
        check_protocol("tiny-test", "users")
    finally:
        del REGISTRY["tiny-test"]


def test_split_rules_live_in_the_library(tmp_path: Path, taste_ratings) -> None:
    with pytest.raises(UserError, match="predicts ratings.*multdae/multvae"):
        check_protocol("course", "users")
    with pytest.raises(UserError, match="ranks items"):
        check_protocol("multvae", "u1")
    with pytest.raises(UserError, match="unknown split 'none'"):
        check_protocol("autorec", "none")
    with pytest.raises(UserError, match="unknown model"):
        check_protocol("svd", "u1")
    data = tmp_path / "r.csv"
    taste_ratings(40, 30, 12).to_csv(data, index=False)
    with pytest.raises(UserError, match="evaluation protocol"):
        training_ratings(str(data), "users")
    with pytest.raises(UserError, match="exists only for ml-100k"):
        training_ratings(str(data), "u1")
    train = training_ratings(str(data), "random", seed=1)
    assert 0.8 * len(taste_ratings(40, 30, 12)) < len(train) < len(taste_ratings(40, 30, 12))
    frame = taste_ratings(40, 30, 12)
    # refused before any training
    with pytest.raises(UserError, match="predicts ratings"):
        evaluate_users(AutoencoderRecommender(model="course", device="cpu"), frame)
    rec = AutoencoderRecommender(model="multdae", device="cpu")
    with pytest.raises(UserError, match="ranks items"):
        evaluate_explicit(rec, frame, frame)
    assert not rec.is_fitted


def test_cli_model_choices_come_from_the_registry(tmp_path: Path, flat) -> None:  # noqa: ANN001
    for command in ("train", "evaluate"):
        result = runner.invoke(app, ["recae", command, "--help"], env=WIDE)
        assert result.exit_code == 0
        assert "[" + "|".join(model_names()) + "]" in result.output
    result = runner.invoke(app, ["recae", "train", "--model", "svd", "--out", str(tmp_path / "out")], env=WIDE)
    assert result.exit_code == 2 and "unknown model 'svd'" in flat(result.output)
    assert all(name in result.output for name in model_names())
    assert not (tmp_path / "out").exists()


def test_a_model_dir_in_the_pre_registry_layout_loads(tmp_path: Path) -> None:
    """The layout written before the estimator base class, built by hand: params with exactly these
    keys, id maps, scale, dataset, history and the training matrix as coordinate tensors."""
    torch.manual_seed(0)
    module = DenseAE(DenseConfig(input_dim=4, hidden=[20], code_size=10, activation="sigmoid",
                                 code_activation="sigmoid", out_activation=None))
    row, col, val = np.array([0, 0, 1, 2]), np.array([0, 2, 1, 3]), np.array([5.0, 3.0, 4.0, 1.0])
    extras = {"params": {"model": "course", "epochs": 3, "batch_size": None, "lr": None, "weight_decay": None,
                         "l2": 0.003, "hidden": None, "positive_threshold": 4.0, "seed": 0},
              "user_map": IdMap([10, 20, 30]).to_dict(), "item_map": IdMap(["a", "b", "c", "d"]).to_dict(),
              "global_mean": 3.25, "scale": [1.0, 5.0], "dataset": "ml-100k",
              "history": History(train_loss=[2.0, 1.0, 0.5]).to_dict(), "shape": [3, 4]}
    tensors = {"train_row": torch.from_numpy(row), "train_col": torch.from_numpy(col),
               "train_val": torch.from_numpy(val.astype(np.float32))}
    save_artifact(tmp_path / "old", module, kind=KIND, extras=extras, tensors=tensors)
    rec = AutoencoderRecommender.load(tmp_path / "old", device="cpu")
    # parameters added since take their defaults
    assert rec.get_params() == {**extras["params"], "residual": None, "activation": None}
    assert rec.dataset_ == "ml-100k" and rec.scale_ == (1.0, 5.0) and not rec.residual_
    assert rec.train_.toarray().tolist() == [[5, 0, 3, 0], [0, 4, 0, 0], [0, 0, 0, 1]]
    assert rec.history_.train_loss == [2.0, 1.0, 0.5]
    recs = rec.recommend(10, 5)
    assert set(recs["item"]) == {"b", "d"}  # a and c are rated
    with torch.no_grad():
        expected = module(torch.tensor([[5.0, 0, 3, 0]]))[0].numpy()
    np.testing.assert_allclose(rec.predict([10, 10], ["b", "d"]), np.clip(expected[[1, 3]], 1, 5), rtol=1e-6)
    # re-saving keeps the layout and the recorded dataset
    rec.save(tmp_path / "new")
    assert AutoencoderRecommender.load(tmp_path / "new", device="cpu").dataset_ == "ml-100k"
