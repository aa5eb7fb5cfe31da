"""The top-N protocol with power: user folds, baselines tuned on validation users, paired test, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

import recae.protocol as protocol
from cli import app
from core.errors import UserError
from recae.baselines import EASE, TOPN_BASELINES, BaselineSpec, ItemKNN, Popularity, RP3beta
from recae.evaluate import check_protocol, models_for
from recae.interactions import heldout_users_split
from recae.metrics import evaluate_topn, topn_per_user
from recae.models import REGISTRY
from recae.protocol import FoldData, Run, paired_comparison, run_protocol, tune, user_folds

runner = CliRunner()


def _ratings(n_users: int = 80, n_items: int = 40, per_user: int = 15, seed: int = 0) -> pd.DataFrame:
    """Seeded ratings with structure: two taste groups that like different halves of the items."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        liked = np.arange(n_items // 2) if u % 2 else np.arange(n_items // 2, n_items)
        for i in rng.choice(n_items, per_user, replace=False):
            rating = rng.integers(4, 6) if i in liked else rng.integers(1, 4)
            rows.append((u + 1, int(i) + 100, float(rating)))
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


# ------------------------------------------------------------------------------------------- folds
def test_folds_partition_the_users_and_validation_never_holds_test_users() -> None:
    frame = _ratings()
    folds = user_folds(frame, n_folds=5, n_val_users=10, seed=3)
    pos = frame[frame["rating"] >= 4].groupby("user").size()
    eligible = set(pos[pos >= 5].index)
    tests = [set(f.test_fold_in["user"]) | set(f.test_target["user"]) for f in folds]
    assert set().union(*tests) == eligible and sum(map(len, tests)) == len(eligible)  # a partition
    assert max(map(len, tests)) - min(map(len, tests)) <= 1
    for f, test in zip(folds, tests):
        val = set(f.val_fold_in["user"]) | set(f.val_target["user"])
        train = set(f.train["user"])
        assert len(val) == 10 and not val & test and not train & (val | test)
        assert set(f.test_fold_in["item"]) | set(f.val_fold_in["item"]) <= set(f.train["item"])
        # fold-in and target are disjoint parts of each user's positives, about 80/20
        both = f.test_fold_in.merge(f.test_target, on=["user", "item"])
        assert both.empty and 0.7 < len(f.test_fold_in) / (len(f.test_fold_in) + len(f.test_target)) < 0.9
    again = user_folds(frame, n_folds=5, n_val_users=10, seed=3)
    assert all(a.test_target.equals(b.test_target) for a, b in zip(folds, again))  # seeded
    other = user_folds(frame, n_folds=5, n_val_users=10, seed=4)
    assert not all(a.test_target.equals(b.test_target) for a, b in zip(folds, other))


def test_folds_refuse_too_few_users() -> None:
    with pytest.raises(UserError, match="user folds need"):
        user_folds(_ratings(n_users=12))


# --------------------------------------------------------------------------------------- baselines
def _x(rows: list[list[float]]) -> sp.csr_matrix:
    return sp.csr_matrix(np.array(rows, dtype=np.float64))


def test_itemknn_ranks_the_co_occurring_item_first() -> None:
    # item 0 always comes with item 1; item 2 with item 3; item 4 is popular but with everyone
    train = _x([[1, 1, 0, 0, 1], [1, 1, 0, 0, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [1, 1, 0, 0, 1]])
    for k, shrink in ((2, 0.0), (4, 10.0)):
        scores = ItemKNN(k=k, shrink=shrink).fit(train).scores(_x([[1, 0, 0, 0, 0]]))
        scores[0, 0] = -np.inf
        assert scores.argmax() == 1
    w = ItemKNN(k=1).fit(train).W_
    assert np.all(np.diag(w) == 0) and np.all((w > 0).sum(axis=0) <= 1)  # one neighbour per item


def test_rp3beta_with_beta_zero_is_the_three_step_walk() -> None:
    x = _x([[1, 1, 0], [1, 0, 1], [0, 1, 1]])
    # by hand: P_ui rows 1/2 on each user's two items; P_iu rows 1/2 on each item's two users;
    # W = P_iu P_ui: W_01 = P(0→u0)·P(u0→1) = 1/2·1/2 = 1/4, likewise every off-diagonal pair
    expected = np.full((3, 3), 0.25)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(RP3beta(alpha=1.0, beta=0.0).fit(x).W_, expected)
    # a lopsided matrix, against the explicit formula with α and β
    x = _x([[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    p_ui = x.toarray() / x.toarray().sum(1, keepdims=True)
    p_iu = x.toarray().T / x.toarray().T.sum(1, keepdims=True)
    pop = x.toarray().sum(0)
    w = (p_iu ** 0.5) @ (p_ui ** 0.5) / pop[None, :] ** 0.3
    np.fill_diagonal(w, 0.0)
    np.testing.assert_allclose(RP3beta(alpha=0.5, beta=0.3).fit(x).W_, w)
    kept = RP3beta(alpha=1.0, beta=0.0, k=1).fit(x).W_
    assert np.all((kept > 0).sum(axis=1) <= 1)


def test_ease_has_a_zero_diagonal_and_popularity_ranks_by_count() -> None:
    train = _x([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 0, 1]])
    for reg in (1.0, 100.0):
        assert np.all(np.diag(EASE(reg).fit(train).B_) == 0)
    scores = Popularity().fit(train).scores(_x([[0, 0, 0, 1], [1, 0, 0, 0]]))
    assert scores.shape == (2, 4) and list(np.argsort(-scores[0], kind="stable")[:2]) == [0, 1]


def test_every_baseline_has_a_grid_and_beats_chance_on_grouped_data() -> None:
    data = FoldData.from_split(heldout_users_split(_ratings(n_users=120), n_val_users=20, n_test_users=20))
    rng = np.random.default_rng(0)
    chance = evaluate_topn(rng.random(data.test_fold.shape), data.test_target, (10,), seen=data.test_fold)
    for name, spec in TOPN_BASELINES.items():
        assert spec.grid and all(isinstance(s, dict) for s in spec.grid)
        if name == "popularity":
            continue
        model = spec.build(**spec.grid[0]).fit(data.train)
        m = evaluate_topn(model.scores(data.test_fold), data.test_target, (10,), seen=data.test_fold)
        assert m["ndcg@10"] > chance["ndcg@10"], name


# ------------------------------------------------------------------------------------------ tuning
class _Fixed:
    """A fake baseline whose scores put item `good` first when `setting` is the good one."""

    def __init__(self, setting: int) -> None:
        self.setting = setting

    def fit(self, train: sp.csr_matrix) -> _Fixed:
        self.n_items = train.shape[1]
        return self

    def scores(self, fold_in: sp.csr_matrix) -> np.ndarray:
        s = np.tile(-np.arange(self.n_items, dtype=float), (fold_in.shape[0], 1))  # item 0 first
        if self.setting == 7:
            s = -s  # the last item first: the validation users' target
        return s


def test_tuning_picks_the_setting_with_the_best_validation_ndcg() -> None:
    data = FoldData.from_split(heldout_users_split(_ratings(n_users=120), n_val_users=20, n_test_users=20))
    last = data.train.shape[1] - 1
    target = np.zeros(data.val_target.shape)
    target[:, last] = 1
    data.val_target = sp.csr_matrix(target)
    data.val_fold = sp.csr_matrix(data.val_fold.multiply(np.arange(data.train.shape[1]) != last))
    spec = BaselineSpec("fixed", _Fixed, tuple({"setting": s} for s in (1, 7, 3)))
    chosen, scores = tune(spec, data)
    assert chosen == {"setting": 7} and scores["setting=7"] == 1.0 == max(scores.values())
    assert set(scores) == {"setting=1", "setting=7", "setting=3"}


def test_tuning_uses_validation_users_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The baselines are tuned before they see the test users: the setting chosen does not change
    when the test users' targets are scrambled."""
    split = heldout_users_split(_ratings(n_users=120), n_val_users=20, n_test_users=20)
    monkeypatch.setattr(protocol, "TOPN_BASELINES", {"ease": TOPN_BASELINES["ease"]})
    a = run_protocol([split], [], lambda _n: None, baselines=("ease",))
    scrambled = split.test_target.assign(item=np.random.default_rng(1).permutation(split.test_target["item"]))
    split.test_target = scrambled
    b = run_protocol([split], [], lambda _n: None, baselines=("ease",))
    assert a.tuning()["ease"]["chosen"] == b.tuning()["ease"]["chosen"]
    assert a.tuning()["ease"]["validation"] == b.tuning()["ease"]["validation"]


# ------------------------------------------------------------------------------------ paired test
def test_paired_comparison_pools_per_user_differences_over_folds() -> None:
    users = [np.arange(30), np.arange(30, 60)]
    rng = np.random.default_rng(0)
    a = [Run({}, rng.random(30) * 0.5 + 0.3, u, {}, {}, 0.0) for u in users]
    b = [Run({}, r.per_user - 0.2, r.users, {}, {}, 0.0) for r in a]
    p = paired_comparison(a, b)
    assert p["users"] == 60 and p["mean_difference"] == pytest.approx(0.2)
    assert p["p_value"] < 1e-6 and p["ci95"][0] <= 0.2 <= p["ci95"][1]
    same = paired_comparison(a, a)
    assert same["mean_difference"] == 0 and same["p_value"] == 1.0
    with pytest.raises(RuntimeError, match="different users"):
        paired_comparison(a, list(reversed(b)))


def test_per_user_metrics_average_to_evaluate_topn() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((6, 12))
    target = sp.csr_matrix((rng.random((6, 12)) > 0.7).astype(float))
    seen = sp.csr_matrix((rng.random((6, 12)) > 0.8).astype(float))
    seen = sp.csr_matrix(seen.multiply(target.toarray() == 0))
    per_user, has, _ = topn_per_user(scores, target, (3, 5), seen=seen)
    means = evaluate_topn(scores, target, (3, 5), seen=seen)
    assert len(per_user["ndcg@5"]) == has.sum()
    for k, v in per_user.items():
        assert means[k] == pytest.approx(float(np.mean(v)))


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_folds_all_writes_the_documented_json(tmp_path: Path) -> None:
    data = tmp_path / "ratings.csv"
    _ratings().to_csv(data, index=False)
    out = tmp_path / "folds.json"
    result = runner.invoke(app, ["recae", "evaluate", "--dataset", str(data), "--split", "folds", "--model", "all",
                                 "--epochs", "1", "--json", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    implicit = [n for n, s in REGISTRY.items() if s.implicit]
    assert set(doc["results"]) == {*implicit, *TOPN_BASELINES}
    for name, metrics in doc["results"].items():
        for key in ("recall@20", "recall@50", "ndcg@100"):
            assert set(metrics[key]) == {"mean", "std"} and 0 <= metrics[key]["mean"] <= 1, (name, key)
    assert {"model", "baseline", "mean_difference", "p_value"} <= set(doc["paired"])
    assert doc["paired"]["model"] in implicit and doc["paired"]["baseline"] in TOPN_BASELINES
    for name, t in doc["tuning"].items():
        assert {"grid", "chosen", "validation"} <= set(t) and len(t["chosen"]) == 5
        assert all(c in t["grid"] for c in t["chosen"]) or name in implicit
    assert doc["tuning"]["ease"]["grid"] == [{"reg": r} for r in (50.0, 100.0, 200.0, 500.0, 1000.0)]
    assert "± " in result.output and "paired ndcg@100" in result.output


@pytest.mark.parametrize("args,message", [
    (["--split", "folds", "--model", "course"], "predicts ratings"),
    (["--split", "u1", "--model", "multvae"], "ranks items"),
    (["--split", "nope", "--model", "all"], "unknown split"),
    (["--split", "folds", "--model", "svd"], "unknown model"),
])
def test_cli_bad_model_split_combinations_exit_2(tmp_path: Path, args: list[str], message: str, flat) -> None:  # noqa: ANN001
    data = tmp_path / "ratings.csv"
    _ratings().to_csv(data, index=False)
    out = tmp_path / "e.json"
    result = runner.invoke(app, ["recae", "evaluate", "--dataset", str(data), *args, "--json", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    assert message in flat(result.output) and "Traceback" not in result.output
    assert not out.exists()


def test_model_all_names_the_models_of_the_split_kind() -> None:
    assert models_for("all", "folds") == [n for n, s in REGISTRY.items() if s.implicit]
    assert models_for("all", "users") == models_for("all", "folds")
    assert models_for("all", "u1") == [n for n, s in REGISTRY.items() if not s.implicit]
    assert models_for("multvae", "folds") == ["multvae"]
    check_protocol("all", "random")
    with pytest.raises(UserError, match="unknown split"):
        models_for("all", "none")


def test_cli_users_all_is_the_quick_single_split(tmp_path: Path) -> None:
    data = tmp_path / "ratings.csv"
    _ratings(n_users=240, per_user=16).to_csv(data, index=False)
    out = tmp_path / "users.json"
    result = runner.invoke(app, ["recae", "evaluate", "--dataset", str(data), "--split", "users", "--model", "all",
                                 "--epochs", "1", "--json", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["protocol"]["folds"] == 1 and doc["test_users"] <= 100
    assert all(isinstance(v, float) for m in doc["results"].values() for v in m.values())  # no mean/std
    assert all(len(t["chosen"]) == 1 for t in doc["tuning"].values()) and "paired" in doc
    # one model keeps the old document: metrics beside baselines, now with the baselines' tuning
    result = runner.invoke(app, ["recae", "evaluate", "--dataset", str(data), "--split", "users", "--model",
                                 "multdae", "--epochs", "1", "--json", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert "ndcg@100" in doc["metrics"] and set(doc["baselines"]) == set(TOPN_BASELINES)
    assert doc["tuning"]["ease"]["chosen"][0] in doc["tuning"]["ease"]["grid"]


def test_cli_explicit_split_all_runs_every_explicit_model(tmp_path: Path) -> None:
    data = tmp_path / "ratings.csv"
    _ratings(n_users=40).to_csv(data, index=False)
    out = tmp_path / "explicit.json"
    result = runner.invoke(app, ["recae", "evaluate", "--dataset", str(data), "--split", "random", "--model", "all",
                                 "--epochs", "1", "--json", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    explicit = [n for n, s in REGISTRY.items() if not s.implicit]
    assert set(doc["results"]) == {*explicit, "global_mean", "bias"} and set(doc["seconds"]) == set(explicit)
    assert all({"rmse", "mae", "course_rmse"} <= set(m) for m in doc["results"].values())
