"""Recommender: id maps, splits, metrics by hand, baselines, models, persistence, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from cli import app
from core.errors import ArtifactError, UserError
from recae.baselines import EASE, BiasBaseline, GlobalMean, Popularity
from recae.datasets import load_ml1m, load_ratings_file
from recae.interactions import IdMap, heldout_users_split, random_split
from recae.metrics import course_rmse, evaluate_topn, mae, rmse, topk_indices
from recae.recommender import AutoencoderRecommender

runner = CliRunner()


def _ratings(n_users: int = 60, n_items: int = 40, seed: int = 0) -> pd.DataFrame:
    """Two taste groups: users like their group's items (4-5) and dislike the others (1-2)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, 15, replace=False):
            liked = (u % 2) == (i % 2)
            rows.append((u + 1, i + 1, float(rng.integers(4, 6) if liked else rng.integers(1, 3)), 1000 + i))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


def test_id_map_round_trip_keeps_int_ids() -> None:
    m = IdMap([30, 10, 20, 10])
    assert m.to_index(10) == 0 and m.to_raw(2) == 30 and m.to_index("20") == 1
    again = IdMap.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again.to_raw(0) == 10 and isinstance(again.to_raw(0).item(), int)
    assert m.index_array(np.array([20, 99])).tolist() == [1, -1]


def test_splits_are_disjoint_and_reproducible() -> None:
    frame = _ratings()
    a_train, a_test = random_split(frame, 0.1, seed=1)
    b_train, b_test = random_split(frame, 0.1, seed=1)
    pd.testing.assert_frame_equal(a_test, b_test)
    keys = lambda f: set(zip(f["user"], f["item"]))  # noqa: E731
    assert not keys(a_train) & keys(a_test) and len(a_train) + len(a_test) == len(frame)
    h = heldout_users_split(frame, n_val_users=5, n_test_users=5, min_positives=3)
    train_users, test_users = set(h.train["user"]), set(h.test_fold_in["user"])
    assert not train_users & test_users and not keys(h.test_fold_in) & keys(h.test_target)


def test_metrics_by_hand() -> None:
    assert rmse(np.array([1.0, 3.0]), np.array([2.0, 3.0])) == pytest.approx(np.sqrt(0.5))
    assert mae(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(1.5)
    # user 1: errors 1, 1 -> rmse 1; user 2: error 3 -> 3; course = mean of 1 and 3
    assert course_rmse(np.array([1, 1, 2]), np.array([1.0, 2.0, 5.0]), np.array([2.0, 3.0, 2.0])) == 2.0
    scores = np.array([[0.9, 0.8, 0.1, 0.7]])
    assert topk_indices(scores, 2).tolist() == [[0, 1]]
    target = sp.csr_matrix(np.array([[0, 1, 1, 0]]))
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0]]))
    m = evaluate_topn(scores, target, ks=(2,), seen=seen)
    # ranking without the seen item 0: [1, 3, 2]; top-2 = [1, 3]: one hit at rank 1
    assert m["recall@2"] == 0.5 and m["mrr@2"] == 1.0 and m["hit@2"] == 1.0
    assert m["ndcg@2"] == pytest.approx(1.0 / (1.0 + 1.0 / np.log2(3)))


def test_bias_baseline_learns_generous_users_and_good_items() -> None:
    """Ratings = 3 + user offset (±1) + item offset (±0.5): the biases must recover both signs, and
    beat the global mean; an unknown user (index -1) gets the item's bias only."""
    users, items = np.meshgrid(np.arange(20), np.arange(10), indexing="ij")
    users, items = users.ravel(), items.ravel()
    ratings = 3.0 + np.where(users < 10, 1.0, -1.0) + np.where(items < 5, 0.5, -0.5)
    bias = BiasBaseline(reg_user=1.0, reg_item=1.0).fit(users, items, ratings)
    assert (bias.bu_[:10] > 0.7).all() and (bias.bu_[10:] < -0.7).all()
    assert (bias.bi_[:5] > 0.35).all() and (bias.bi_[5:] < -0.35).all()
    pred = bias.predict(users, items)
    assert rmse(pred, ratings) < 0.2 * rmse(GlobalMean().fit(users, items, ratings).predict(users, items), ratings)
    generous, harsh, good, bad = 0, 15, 1, 8
    p = bias.predict(np.array([generous, harsh, generous, -1, -1]), np.array([good, good, bad, good, bad]))
    assert p[0] > p[1] and p[0] > p[2] and p[3] > p[4]
    assert p[3] == pytest.approx(bias.mu_ + bias.bi_[good])


def test_popularity_ranks_the_most_rated_unseen_item_first() -> None:
    # item 2: 4 users, item 0: 3, item 3: 2, item 1: 1 (a rating of 1 still counts as an interaction)
    train = sp.csr_matrix(np.array([[5, 0, 4, 0],
                                    [1, 0, 5, 0],
                                    [4, 2, 4, 3],
                                    [0, 0, 1, 5]], dtype=np.float32))
    pop = Popularity().fit(train)
    assert pop.counts_.tolist() == [3.0, 1.0, 4.0, 2.0]
    user = sp.csr_matrix(np.array([[0, 0, 5, 0]], dtype=np.float32))  # has seen the most popular item
    scores = pop.scores(user)
    scores[user.nonzero()] = -np.inf
    assert topk_indices(scores, 3).tolist() == [[0, 3, 1]]


def test_ease_recovers_co_occurring_items() -> None:
    """A and B always come together, as do C and D; A-B are the most popular pair. A user holding only
    C must get D first (popularity alone would say A or B), a user holding only A must get B."""
    A, B, C, D, E = range(5)
    baskets = [[A, B], [A, B], [A, B, E], [A, B], [C, D], [C, D, E], [C, D], [E]]
    rows = np.zeros((len(baskets), 5), dtype=np.float32)
    for r, basket in enumerate(baskets):
        rows[r, basket] = 1.0
    ease = EASE(reg=1.0).fit(sp.csr_matrix(rows))
    for given, expected in ((C, D), (A, B), (D, C)):
        user = np.zeros((1, 5), dtype=np.float32)
        user[0, given] = 1.0
        scores = ease.scores(sp.csr_matrix(user))
        scores[0, given] = -np.inf
        assert int(np.argmax(scores[0])) == expected
        assert scores[0, expected] > 2 * max(scores[0, i] for i in range(5) if i not in (given, expected))


@pytest.fixture(scope="module")
def fitted() -> AutoencoderRecommender:
    return AutoencoderRecommender(model="deeprec", epochs=40, device="cpu", hidden=32).fit(_ratings())


def test_recommendations_exclude_rated_items_and_learn_tastes(fitted: AutoencoderRecommender) -> None:
    frame = _ratings()
    rated = set(frame[frame["user"] == 2]["item"])
    recs = fitted.recommend(2, 10)
    assert not rated & set(recs["item"]) and len(recs) == 10
    assert list(recs.columns) == ["rank", "item", "score"] and recs["score"].between(1, 5).all()
    pred = fitted.predict([2, 2], [2, 3])  # user 2 (even) likes even items
    assert pred[0] > pred[1]


def test_implicit_models_never_recommend_low_rated_items(tmp_path: Path) -> None:
    frame = _ratings()  # every user also has 1-2 ratings on the other group's items
    rec = AutoencoderRecommender(model="multdae", epochs=3, device="cpu").fit(frame)
    rec.save(tmp_path / "m")
    again = AutoencoderRecommender.load(tmp_path / "m", device="cpu")
    n_items = frame["item"].nunique()
    for model in (rec, again):
        for user in (2, 3):
            rated = set(frame[frame["user"] == user]["item"])
            assert not rated & set(model.recommend(user, n_items)["item"])
        top, vals = model.score_users(np.array([model.user_map_.to_index(2)]), n_items)
        offered = model.item_map_.to_raw(top[0][np.isfinite(vals[0])]).tolist()  # excluded items score -inf
        assert offered and not set(frame[frame["user"] == 2]["item"]) & set(offered)
    assert 2 not in set(rec.fold_in({2: 1.0, 4: 5.0}, n_items)["item"])  # a low rating given at fold-in


def _clusters(n_users: int = 90, n_items: int = 30, seed: int = 0) -> pd.DataFrame:
    """Three taste clusters of 10 items each (1-10, 11-20, 21-30); every user likes 6 items of theirs."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        group = u % 3
        for i in group * 10 + rng.choice(10, 6, replace=False) + 1:
            rows.append((u + 1, int(i), float(rng.integers(4, 6))))
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def test_fold_in_ranks_the_new_users_cluster_first() -> None:
    rec = AutoencoderRecommender(model="multdae", epochs=8, device="cpu", seed=0).fit(_clusters())
    for given, cluster in (({11: 5.0, 12: 5.0, 13: 4.0}, range(11, 21)), ({22: 5.0, 25: 4.0, 29: 5.0}, range(21, 31))):
        recs = rec.fold_in(given, k=30)
        assert len(recs) == 27 and not set(given) & set(recs["item"])  # every unrated item, the rated ones left out
        top = recs["item"].tolist()[:7]
        assert set(top) == set(cluster) - set(given)  # the cluster's other 7 items outrank every other item


def test_fold_in_with_one_rating(fitted: AutoencoderRecommender) -> None:
    recs = fitted.fold_in({2: 5.0}, k=5)
    assert 2 not in set(recs["item"]) and len(recs) == 5
    with pytest.raises(UserError, match="outside the scale"):
        fitted.fold_in({2: 9.0})
    with pytest.raises(UserError, match="none of the rated items"):
        fitted.fold_in({999: 4.0})


def test_unknown_user_and_unknown_item(fitted: AutoencoderRecommender) -> None:
    with pytest.raises(UserError, match="unknown user"):
        fitted.recommend(12345)
    # an item never seen in training gets the user's own baseline level: global mean + their bias
    bias = BiasBaseline().fit(fitted.user_map_.index_array(_ratings()["user"].to_numpy()),
                              fitted.item_map_.index_array(_ratings()["item"].to_numpy()),
                              _ratings()["rating"].to_numpy(), len(fitted.user_map_), len(fitted.item_map_))
    level = bias.mu_ + bias.bu_[fitted.user_map_.to_index(2)]
    assert fitted.predict([2], [99999])[0] == pytest.approx(level)


def test_a_new_user_with_one_rating_is_mostly_the_bias_baseline() -> None:
    """One rating says little: the fold-in stays near the bias baseline's prediction for that user
    (the user's bias from one rating, shrunk), instead of moving every item by the rating's residual."""
    frame = _ratings()
    rec = AutoencoderRecommender(model="autorec", epochs=3, device="cpu").fit(frame)
    users = rec.user_map_.index_array(frame["user"].to_numpy())
    items = rec.item_map_.index_array(frame["item"].to_numpy())
    bias = BiasBaseline().fit(users, items, frame["rating"].to_numpy(), len(rec.user_map_), len(rec.item_map_))
    item = 1
    i = rec.item_map_.to_index(item)
    row = sp.csr_matrix(([1.0], ([0], [i])), shape=(1, len(rec.item_map_)))
    got = rec.score_rows(rows=row)[0]
    bu = (1.0 - bias.mu_ - bias.bi_[i]) / (1 + bias.reg_user)
    baseline = bias.mu_ + bu + bias.bi_
    # at most a quarter (1 / (1 + NEW_USER_PRIOR)) of the model's deviation from the baseline remains
    assert np.abs(got - baseline).max() <= 0.25 * 4 + 1e-6
    assert np.abs(got - baseline).mean() < 0.5


@pytest.mark.parametrize("model", ["course", "autorec", "multdae", "multvae"])
def test_every_model_trains_and_round_trips(model: str, tmp_path: Path) -> None:
    rec = AutoencoderRecommender(model=model, epochs=2, device="cpu").fit(_ratings())
    rec.save(tmp_path / "m")
    again = AutoencoderRecommender.load(tmp_path / "m", device="cpu")
    pd.testing.assert_frame_equal(rec.recommend(3, 5), again.recommend(3, 5))
    folded = rec.fold_in({1: 5.0, 3: 4.0}, 3)
    assert folded["rank"].tolist() == [1, 2, 3] and not {1, 3} & set(folded["item"])
    assert folded["item"].isin(_ratings()["item"]).all()
    pd.testing.assert_frame_equal(folded, again.fold_in({1: 5.0, 3: 4.0}, 3))  # fold-in survives the round trip
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="checksum"):
        AutoencoderRecommender.load(tmp_path / "m")


def test_validation_users_pick_the_epoch_kept() -> None:
    frame = _ratings(n_users=80)
    train = frame[frame["user"] <= 60]
    held = frame[(frame["user"] > 60) & (frame["rating"] >= 4)].assign(rating=1.0)
    fold_in, target = held.iloc[::2], held.iloc[1::2]
    rec = AutoencoderRecommender(model="multdae", epochs=6, device="cpu").fit(train, validation=(fold_in, target))
    h = rec.history_
    assert len(h.val_loss) == 6 and all(-1.0 <= v <= 0.0 for v in h.val_loss)  # minus NDCG@100
    assert h.val_loss[h.best_epoch] == min(h.val_loss)
    again = AutoencoderRecommender(model="multdae", epochs=h.best_epoch + 1, device="cpu").fit(train)
    np.testing.assert_allclose(rec.score_rows(np.arange(5)), again.score_rows(np.arange(5)), rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="top-N"):
        AutoencoderRecommender(model="course", epochs=1, device="cpu").fit(train, validation=(fold_in, target))


def test_ratings_file_loader_errors_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("u,i,r,t\n1,10,4,5\n1,10,2,9\n2,10,3,1\n")
    frame = load_ratings_file(path, "u", "i", "r", "t")
    assert len(frame) == 2 and frame.attrs["duplicates_dropped"] == 1
    assert frame[frame["user"] == 1]["rating"].item() == 2.0  # the latest wins
    path.write_text("u,i,r\n1,10,good\n")
    with pytest.raises(UserError, match="not a number"):
        load_ratings_file(path, "u", "i", "r")
    with pytest.raises(UserError, match="missing column"):
        load_ratings_file(path, "user", "i", "r")
    path.write_text("")
    with pytest.raises(UserError, match="empty"):
        load_ratings_file(path)


def test_ml1m_format(tmp_path: Path) -> None:
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ratings.dat").write_text("1::1193::5::978300760\n2::661::3::978302109\n",
                                                    encoding="latin-1")
    frame = load_ml1m(tmp_path)
    assert frame["rating"].tolist() == [5.0, 3.0] and frame["item"].tolist() == [1193, 661]
    (tmp_path / "ml-1m" / "ratings.dat").unlink()
    with pytest.raises(UserError, match="ml-1m.zip"):
        load_ml1m(tmp_path)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_train_recommend_score_evaluate(tmp_path: Path) -> None:
    data = tmp_path / "ratings.csv"
    _ratings().to_csv(data, index=False)
    model = tmp_path / "model"
    result = runner.invoke(app, ["recae", "train", "--dataset", str(data), "--model", "deeprec", "--epochs", "3",
                                 "--out", str(model), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["recae", "recommend", "--model", str(model), "--user", "2", "-k", "3"])
    assert result.exit_code == 0 and "score" in result.output and "predicted_rating" not in result.output
    result = runner.invoke(app, ["recae", "recommend", "--model", str(model), "--rate", "1:5,2:4"])
    assert result.exit_code == 0 and "new user" in result.output
    out = tmp_path / "recs.parquet"
    result = runner.invoke(app, ["recae", "score", "--model", str(model), "--out", str(out), "-k", "5", "--quiet"])
    assert result.exit_code == 0, result.output
    recs = pd.read_parquet(out)
    assert len(recs) == 60 * 5 and list(recs.columns) == ["user", "item", "rank", "score"]
    assert json.loads((tmp_path / "recs.parquet.manifest.json").read_text())["status"] == "ok"
    users = tmp_path / "users.txt"
    users.write_text("1\n2\n999\n")
    result = runner.invoke(app, ["recae", "score", "--model", str(model), "--out", str(tmp_path / "some.csv"),
                                 "--users", str(users), "--quiet"])
    assert result.exit_code == 3 and len(pd.read_csv(tmp_path / "some.csv")) == 2 * 20
    result = runner.invoke(app, ["recae", "evaluate", "--dataset", str(data), "--split", "random", "--model",
                                 "deeprec", "--epochs", "2", "--json", str(tmp_path / "e.json"), "--quiet",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "e.json").read_text())
    assert {"rmse", "mae", "course_rmse"} <= set(doc["metrics"]) and "bias" in doc["baselines"]


@pytest.mark.parametrize("args,message", [
    (["recae", "train", "--dataset", "nope.csv", "--out", "OUT"], "does not exist"),
    (["recae", "train", "--dataset", "DATA", "--model", "svd", "--out", "OUT"], "unknown model"),
    (["recae", "train", "--dataset", "DATA", "--epochs", "-2", "--out", "OUT"], "epochs"),
    (["recae", "train", "--dataset", "DATA", "--rating-col", "stars", "--out", "OUT"], "missing column"),
    (["recae", "evaluate", "--dataset", "DATA", "--split", "users", "--model", "course"], "predicts ratings"),
])
def test_cli_bad_inputs(tmp_path: Path, args: list[str], message: str, flat) -> None:  # noqa: ANN001
    data = tmp_path / "ratings.csv"
    _ratings().to_csv(data, index=False)
    args = [str(data) if a == "DATA" else str(tmp_path / "out") if a == "OUT" else a for a in args]
    result = runner.invoke(app, [*args, "--quiet"])
    assert result.exit_code == 2, result.output
    assert message in flat(result.output) and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_cli_unknown_user_and_bad_model_dir(tmp_path: Path, flat) -> None:  # noqa: ANN001
    model = tmp_path / "model"
    AutoencoderRecommender(model="deeprec", epochs=1, device="cpu").fit(_ratings()).save(model)
    result = runner.invoke(app, ["recae", "recommend", "--model", str(model), "--user", "2", "-k", "3"])
    assert result.exit_code == 0, result.output  # a known user of the same model is fine
    for user, shown in (("12345", "unknown user 12345"), ("alice", "unknown user 'alice'")):
        result = runner.invoke(app, ["recae", "recommend", "--model", str(model), "--user", user])
        assert result.exit_code == 2, result.output
        assert shown in flat(result.output) and "--rate" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["recae", "recommend", "--model", str(tmp_path / "none"), "--user", "1"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_real_ml100k_loaders(data_dir: Path) -> None:
    from recae.datasets import load_ml100k, load_ml100k_fold, load_ml100k_items

    assert len(load_ml100k(data_dir)) == 100_000
    train, test = load_ml100k_fold(data_dir, "u1")
    assert (len(train), len(test)) == (80_000, 20_000)
    assert load_ml100k_items(data_dir).set_index("item").loc[50, "title"] == "Star Wars (1977)"
