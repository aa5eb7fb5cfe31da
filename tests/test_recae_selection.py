"""Settings chosen on the user's own ratings (recae.selection): the validation split rule, the
record kept in the model, the choice beating the bias baseline on rating sets of other shapes than
MovieLens-100K, and `ae recae train` printing, saving and warning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from recae.interactions import random_split
from recae.models import REGISTRY, get_model
from recae.recommender import AutoencoderRecommender
from recae.selection import MAX_FITS, SETTINGS, SelectionPlan, blend_weight, fit_bias

runner = CliRunner()


def _tastes(n_users: int, n_items: int, per_user: int, seed: int, half_stars: bool = False,
            singletons: int = 0) -> pd.DataFrame:
    """Two taste groups (a user likes the items of its parity: ~4.5 vs ~1.5) plus user and item
    biases and noise; `half_stars` rounds to 0.5-5 by halves, else 1-5; `singletons` extra items
    get exactly one rating each (a long tail)."""
    rng = np.random.default_rng(seed)
    bu, bi = rng.normal(0, 0.3, n_users), rng.normal(0, 0.3, n_items + singletons)
    users, items = [], []
    for u in range(n_users):
        chosen = rng.choice(n_items, per_user, replace=False)
        users += [u] * per_user
        items += chosen.tolist()
    tail = n_items + np.arange(singletons)
    users += rng.integers(0, n_users, singletons).tolist()
    items += tail.tolist()
    users, items = np.array(users), np.array(items)
    liked = (users % 2) == (items % 2)
    r = 3.0 + np.where(liked, 1.4, -1.4) + bu[users] + bi[items] + rng.normal(0, 0.4, len(users))
    r = np.clip(np.round(r * 2) / 2, 0.5, 5.0) if half_stars else np.clip(np.round(r), 1, 5)
    return pd.DataFrame({"user": users + 1, "item": items + 1, "rating": r.astype(float)})


SHAPES = {
    # many items, few users (ML-100K: 943 users, 1682 items; here 6 times more items than users)
    "many_items_few_users": lambda: _tastes(24, 140, 30, seed=1),
    # half-star ratings on a 0.5-5 scale
    "half_stars": lambda: _tastes(40, 60, 20, seed=2, half_stars=True),
    # a long tail: 80 of 140 items rated once
    "long_tail": lambda: _tastes(30, 60, 20, seed=3, singletons=80),
}


def test_validation_split_holds_out_a_tenth_of_each_user_seeded() -> None:
    frame = _tastes(30, 50, 20, seed=0)
    frame = pd.concat([frame, pd.DataFrame({"user": [999] * 3, "item": [1, 2, 3], "rating": [3.0] * 3})])
    plan = SelectionPlan(seed=4)
    fit, val = plan.split(frame)
    again_fit, again_val = plan.split(frame)
    pd.testing.assert_frame_equal(val, again_val)
    assert len(fit) + len(val) == len(frame) and not set(zip(fit.user, fit.item)) & set(zip(val.user, val.item))
    per_user = val.groupby("user").size()
    assert (per_user == 2).all() and len(per_user) == 30  # 10 % of 20; the 3-rating user keeps all theirs
    assert 999 not in set(val["user"])
    assert not plan.split(frame)[1].equals(SelectionPlan(seed=5).split(frame)[1])


def test_grids_are_data_small_and_set_only_settings() -> None:
    searched = [spec for spec in REGISTRY.values() if spec.grid]
    assert searched and all(not spec.implicit for spec in searched)
    for spec in searched:
        assert {} in spec.grid and len(spec.grid) <= MAX_FITS  # the recipe itself is always a candidate
        assert all(set(c) <= set(SETTINGS) for c in spec.grid)
    # pinned settings stay in every candidate; duplicates collapse
    cands = SelectionPlan().candidates(get_model("autorec"), {"epochs": 5})
    assert all(c["epochs"] == 5 for c in cands) and len(cands) == len({json.dumps(c, sort_keys=True) for c in cands})
    assert SelectionPlan(max_fits=2).candidates(get_model("autorec"), {}) == list(get_model("autorec").grid[:2])


def test_blend_weight_is_least_squares_in_0_1() -> None:
    base, true = np.array([3.0, 3.0, 3.0]), np.array([4.0, 2.0, 3.0])
    assert blend_weight(np.array([4.0, 2.0, 3.0]), base, true) == pytest.approx(1.0)
    assert blend_weight(np.array([5.0, 1.0, 3.0]), base, true) == pytest.approx(0.5)
    assert blend_weight(np.array([2.0, 4.0, 3.0]), base, true) == 0.0  # anti-correlated: the baseline alone


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_chosen_model_beats_the_bias_baseline_on_held_out_ratings(shape: str) -> None:
    """What `train` ships (default model, tuned) against the bias baseline on a test split it never
    saw: at least 2 % lower RMSE on every shape."""
    from recae.evaluate import evaluate_explicit

    frame = SHAPES[shape]()
    train, test = random_split(frame, 0.1, seed=0)
    rec = AutoencoderRecommender(device="cpu", tune=True)
    result = evaluate_explicit(rec, train, test)
    ours, bias = result["metrics"]["rmse"], result["baselines"]["bias"]["rmse"]
    assert ours <= 0.98 * bias, (shape, ours, bias, rec.selection_.describe())
    sel = rec.selection_
    assert sel.val_ratings > 0 and sel.fit_ratings + sel.val_ratings == len(train)
    assert 1 <= len(sel.trials) <= MAX_FITS and sel.chosen in [t.settings for t in sel.trials]
    assert {k: rec.settings_[k] for k in sel.chosen} == sel.chosen  # the refit used the choice


def _noise(n_users: int = 30, n_items: int = 40, seed: int = 0) -> pd.DataFrame:
    """Ratings with no structure at all: nothing beats the global mean, the autoencoder overfits."""
    rng = np.random.default_rng(seed)
    rows = [(u, i, float(rng.integers(1, 6))) for u in range(1, n_users + 1)
            for i in rng.choice(n_items, 20, replace=False) + 1]
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def test_cli_train_reports_saves_and_warns_when_the_model_loses(tmp_path: Path, flat) -> None:  # noqa: ANN001
    data = tmp_path / "noise.csv"
    _noise().to_csv(data, index=False)
    out = tmp_path / "m"
    result = runner.invoke(app, ["recae", "train", "--dataset", str(data), "--model", "autorec", "--out", str(out),
                                 "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "validation RMSE" in text and "bias baseline" in text and "refit on all given ratings" in text
    assert "autorec loses to the user+item bias baseline" in flat(result.stderr)
    info = runner.invoke(app, ["recae", "info", "--model", str(out), "--json"])
    assert info.exit_code == 0, info.output
    doc = json.loads(info.stdout)
    sel = doc["selection"]
    assert sel["model_rmse"] > sel["baseline_rmse"] and sel["blend_weight"] < 1.0
    assert sel["blended_rmse"] <= sel["baseline_rmse"] + 1e-4  # the fallback ships nothing worse on validation
    assert doc["settings"]["l2"] == sel["chosen"].get("l2", 0.003)
    # the loaded model predicts with the blend, as the trained one did
    rec = AutoencoderRecommender.load(out, device="cpu")
    assert rec.blend_weight_ == sel["blend_weight"] and rec.selection_.trials
    again = runner.invoke(app, ["recae", "info", "--model", str(out)])
    assert again.exit_code == 0 and "bias baseline" in flat(again.output)


def test_pinned_epochs_skip_the_search_and_no_tune_too(tmp_path: Path) -> None:
    data = tmp_path / "r.csv"
    _noise(20, 30).to_csv(data, index=False)
    for extra in (["--epochs", "2"], ["--no-tune"]):
        result = runner.invoke(app, ["recae", "train", "--dataset", str(data), "--model", "autorec", "--out",
                                     str(tmp_path / "m"), "--device", "cpu", "--quiet", *extra])
        assert result.exit_code == 0, result.output
        assert "validation RMSE" not in result.output
        assert AutoencoderRecommender.load(tmp_path / "m", device="cpu").selection_ is None


def test_blended_model_round_trips_and_folds_in(tmp_path: Path) -> None:
    rec = AutoencoderRecommender(model="autorec", epochs=3, device="cpu", tune=SelectionPlan(max_fits=1))
    rec.fit(_noise())
    rec._set_blend(0.5, fit_bias(_noise(), rec.user_map_, rec.item_map_))  # force a blend whatever the search found
    rec.save(tmp_path / "m")
    again = AutoencoderRecommender.load(tmp_path / "m", device="cpu")
    np.testing.assert_allclose(rec.predict([1, 2], [3, 4]), again.predict([1, 2], [3, 4]), rtol=1e-6)
    pd.testing.assert_frame_equal(rec.fold_in({1: 5.0, 2: 1.0}, 3), again.fold_in({1: 5.0, 2: 1.0}, 3))
