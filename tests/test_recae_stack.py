"""The stack (recae.stack): item- and user-based explicit members blended by held-out least squares."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from core.errors import UserError
from recae.models import RecModel, get_model, register
from recae.recommender import AutoencoderRecommender
from recae.stack import VALIDATION_SHARE, StackWeights, least_squares_weights

runner = CliRunner()


def test_least_squares_weights_recover_an_exact_blend() -> None:
    rng = np.random.default_rng(0)
    preds = rng.uniform(1, 5, size=(50, 3))
    truth = 0.5 + preds @ np.array([0.2, 0.7, -0.1])
    weights, intercept = least_squares_weights(preds, truth)
    np.testing.assert_allclose(weights, [0.2, 0.7, -0.1], atol=1e-9)
    assert intercept == pytest.approx(0.5)


def test_the_stack_predicts_its_blend_of_members_and_beats_each_on_the_held_out_ratings(tmp_path: Path,
                                                                                       taste_ratings) -> None:
    frame = taste_ratings(60, 40, 15)
    rec = AutoencoderRecommender(model="stack", epochs=3, device="cpu").fit(frame)
    spec = get_model("stack")
    assert [m.model for m in rec.members_] == list(spec.members) == rec.stack_.members
    assert any(not get_model(m).item_based for m in spec.members) and any(get_model(m).item_based for m in spec.members)
    st = rec.stack_
    assert st.validation_ratings + st.fit_ratings == len(frame)
    assert st.validation_ratings == pytest.approx(VALIDATION_SHARE * len(frame), rel=0.5)
    # least squares over the members (each alone is a candidate blend): never worse than the best one
    assert st.validation_rmse <= min(st.member_validation_rmse) + 1e-9
    # every prediction is intercept + Σ weight·member, members refit on all the ratings
    users, items = np.array([1, 2, 3, 60]), np.array([1, 2, 40, 7])
    expected = st.intercept + sum(w * m.predict(users, items) for w, m in zip(st.weights, rec.members_))
    np.testing.assert_allclose(rec.predict(users, items), np.clip(expected, 1, 5), rtol=1e-6)
    assert all(m.train_.nnz == len(frame) for m in rec.members_)
    # a new user's fold-in blends the members' fold-ins the same way
    given = {1: 5.0, 3: 5.0, 2: 1.0}
    top = rec.fold_in(given, 5)
    assert len(top) == 5 and not set(given) & set(top["item"])
    rec.save(tmp_path / "m")
    again = AutoencoderRecommender.load(tmp_path / "m", device="cpu")
    assert again.stack_ == rec.stack_ and again.get_params() == rec.get_params()
    np.testing.assert_array_equal(again.predict(users, items), rec.predict(users, items))
    pd.testing.assert_frame_equal(again.fold_in(given, 5), top)
    # refit as a single model, the stack is gone: it predicts what that model alone predicts
    single = again.set_params(model="autorec").fit(frame)
    alone = AutoencoderRecommender(model="autorec", epochs=3, device="cpu").fit(frame)
    np.testing.assert_allclose(single.predict(users, items), alone.predict(users, items), rtol=1e-5)


def test_stack_refuses_its_members_own_settings_and_workers(taste_ratings) -> None:
    with pytest.raises(UserError, match="residual and activation are its members' own"):
        AutoencoderRecommender(model="stack", residual=True, device="cpu").fit(taste_ratings(60, 40, 15))
    with pytest.raises(UserError, match="use --workers 1"):
        AutoencoderRecommender(model="stack", workers=2, device="cpu").check_workers()
    with pytest.raises(UserError, match="a stack needs more ratings"):
        AutoencoderRecommender(model="stack", epochs=1, device="cpu").fit(taste_ratings(3, 40, 15))


def test_a_stack_names_registered_explicit_members_only() -> None:
    entry = get_model("stack")
    with pytest.raises(ValueError, match="not a registered explicit model"):
        register(RecModel(name="stack-of-implicit", build=entry.build, objective=entry.objective,
                          recipe=entry.recipe, members=("glocalk", "multvae")))
    with pytest.raises(ValueError, match="weights for"):
        StackWeights.from_dict({**StackWeights(["a"], [1.0], 0.0, 1.0, [1.0], 9, 1, 1.0).to_dict(), "weights": []})


def test_cli_trains_a_stack_and_info_shows_its_held_out_record(tmp_path: Path, taste_ratings) -> None:
    data, out = tmp_path / "ratings.csv", tmp_path / "stack"
    taste_ratings(60, 40, 15).to_csv(data, index=False)
    result = runner.invoke(app, ["recae", "train", "--dataset", str(data), "--model", "stack", "--epochs", "2",
                                 "--out", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "bias baseline (user+item)" in result.output and "glocalk-users" in result.output
    info = runner.invoke(app, ["recae", "info", "--model", str(out), "--json"])
    assert info.exit_code == 0, info.output
    doc = json.loads(info.stdout)
    assert doc["model"] == "stack" and doc["stack"]["members"] == ["glocalk", "autorec", "glocalk-users"]
    assert len(doc["stack"]["weights"]) == 3 and doc["stack"]["baseline_rmse"] > 0
    evaluated = runner.invoke(app, ["recae", "evaluate", "--dataset", str(data), "--split", "random", "--model",
                                    "stack", "--epochs", "2", "--device", "cpu", "--quiet", "--json",
                                    str(tmp_path / "e.json")])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads((tmp_path / "e.json").read_text())["stack"]["stack"]["members"] == doc["stack"]["members"]
    rec = runner.invoke(app, ["recae", "recommend", "--model", str(out), "--user", "1", "-k", "3"])
    assert rec.exit_code == 0, rec.output
    bad = runner.invoke(app, ["recae", "train", "--dataset", str(data), "--model", "stack", "--workers", "2",
                              "--out", str(tmp_path / "x"), "--device", "cpu", "--quiet"])
    assert bad.exit_code == 2 and "use --workers 1" in bad.output and not (tmp_path / "x").exists()
