"""Querying the recommender by title: `recae items --search`, `recommend --rate TITLE:RATING`, the echo
of what was understood, one `score` column across commands, rejected users' line numbers, and the
epoch the trainer kept."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from recae.recommender import AutoencoderRecommender

runner = CliRunner()
TRAIN = ["--model", "deeprec", "--epochs", "3", "--device", "cpu", "--quiet"]

# titles with ':' and ',' (as MovieLens writes them), a title twice (as ML-100K has), a title that is
# also the start of another one
TITLES = {1: "Star Wars (1977)", 2: "Star Trek: First Contact (1996)", 3: "Good, the Bad and the Ugly, The (1966)",
          4: "Godfather, The (1972)", 5: "Godfather: Part II, The (1974)", 6: "Chasing Amy (1997)",
          7: "Chasing Amy (1997)", 8: "Fargo (1996)", 9: "Toy Story (1995)", 10: "Heat (1995)",
          11: "Heat (1995), Director's Cut"}
N_ITEMS = 20


def _ratings(n_users: int = 40, seed: int = 0) -> pd.DataFrame:
    """Two taste groups over 20 items; item i is rated by more users the lower its id (popularity)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        p = np.linspace(2.0, 1.0, N_ITEMS)
        for i in rng.choice(N_ITEMS, 10, replace=False, p=p / p.sum()) + 1:
            rows.append((u, int(i), float(rng.integers(4, 6) if u % 2 == i % 2 else rng.integers(1, 3))))
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def _titles_frame() -> pd.DataFrame:
    titles = {i: TITLES.get(i, f"Movie {i} (2000)") for i in range(1, N_ITEMS + 1)}
    return pd.DataFrame({"item": list(titles), "title": list(titles.values())})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("titled")
    _ratings().to_csv(d / "ratings.csv", index=False)
    _titles_frame().to_csv(d / "movies.csv", index=False)
    return d


@pytest.fixture(scope="module")
def model(data: Path) -> Path:
    result = runner.invoke(app, ["recae", "train", "--dataset", str(data / "ratings.csv"), "--items",
                                 str(data / "movies.csv"), "--out", str(data / "m"), *TRAIN])
    assert result.exit_code == 0, result.output
    assert f"{N_ITEMS} with titles" in result.output
    return data / "m"


def _rows(output: str) -> list[list[str]]:
    """The body rows of the markdown table `echo_table` prints."""
    lines = [line for line in output.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def _header(output: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith("|"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _popularity(item: int) -> int:
    return int((_ratings()["item"] == item).sum())


# ------------------------------------------------------------------------------------------ items
def test_items_search_is_case_insensitive_and_shows_popularity(model: Path) -> None:
    result = runner.invoke(app, ["recae", "items", "--model", str(model), "--search", "STAR"])
    assert result.exit_code == 0, result.output
    assert _header(result.stdout) == ["item", "title", "popularity"]
    rows = _rows(result.stdout)
    assert {r[0] for r in rows} == {"1", "2"}
    assert {(r[1], int(r[2])) for r in rows} == {(TITLES[1], _popularity(1)), (TITLES[2], _popularity(2))}
    assert [int(r[2]) for r in rows] == sorted((int(r[2]) for r in rows), reverse=True)  # most rated first


def test_items_search_matches_the_article_first_form_and_exact_titles_first(model: Path) -> None:
    result = runner.invoke(app, ["recae", "items", "--model", str(model), "--search", "the godfather"])
    assert result.exit_code == 0, result.output
    assert {r[0] for r in _rows(result.stdout)} == {"4", "5"}  # "Godfather, The (1972)" and "...: Part II, The"
    result = runner.invoke(app, ["recae", "items", "--model", str(model), "--search", "heat (1995)", "--limit", "1"])
    assert result.exit_code == 0, result.output
    assert [r[:2] for r in _rows(result.stdout)] == [["10", "Heat (1995)"]] and "1 of 2 items" in result.stdout


def test_items_without_a_match_says_so_and_exits_0(model: Path) -> None:
    result = runner.invoke(app, ["recae", "items", "--model", str(model), "--search", "casablanca"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "no item title contains 'casablanca'" in result.stderr


def test_items_of_a_model_without_titles_exits_2(tmp_path: Path, flat) -> None:  # noqa: ANN001
    AutoencoderRecommender(model="deeprec", epochs=1, device="cpu").fit(_ratings()).save(tmp_path / "m")
    result = runner.invoke(app, ["recae", "items", "--model", str(tmp_path / "m"), "--search", "star"])
    assert result.exit_code == 2 and "holds no titles" in flat(result.output)
    result = runner.invoke(app, ["recae", "recommend", "--model", str(tmp_path / "m"), "--rate", "Fargo:4"])
    assert result.exit_code == 2 and "unknown item 'Fargo'" in flat(result.output)
    result = runner.invoke(app, ["recae", "items", "--model", str(tmp_path / "m"), "--limit", "3"])
    assert result.exit_code == 0 and _header(result.stdout) == ["item", "popularity"] and len(_rows(result.stdout)) == 3


def test_a_bad_items_file_fails_before_training(data: Path, tmp_path: Path, flat) -> None:  # noqa: ANN001
    bad = tmp_path / "movies.csv"
    bad.write_text("item,name\n1,Star Wars (1977)\n")
    result = runner.invoke(app, ["recae", "train", "--dataset", str(data / "ratings.csv"), "--items", str(bad),
                                 "--out", str(tmp_path / "m"), *TRAIN])
    assert result.exit_code == 2 and "missing column(s) title" in flat(result.output)
    assert not (tmp_path / "m").exists()


# -------------------------------------------------------------------------------------- --rate
def _recommend(model: Path, rate: str, *extra: str):  # noqa: ANN202
    return runner.invoke(app, ["recae", "recommend", "--model", str(model), "--rate", rate, "-k", "5", *extra])


def test_rate_by_exact_title_with_colons_and_commas_echoes_what_was_understood(model: Path) -> None:
    rate = "Star Trek: First Contact (1996):5,good, the bad and the ugly, the (1966):4,toy story:2,8:3"
    result = _recommend(model, rate)
    assert result.exit_code == 0, result.output
    echoed = result.stderr.splitlines()
    assert echoed[0] == "rated (as understood):"
    assert [line.split(None, 2) for line in echoed[1:]] == [["2", "5", TITLES[2]], ["3", "4", TITLES[3]],
                                                           ["9", "2", TITLES[9]], ["8", "3", TITLES[8]]]
    assert "rated" not in result.stdout  # stdout holds the recommendations only
    rows = _rows(result.stdout)
    assert len(rows) == 5 and not {"2", "3", "8", "9"} & {r[1] for r in rows}
    again = AutoencoderRecommender.load(model, device="cpu").fold_in({2: 5.0, 3: 4.0, 9: 2.0, 8: 3.0}, 5)
    assert [r[1] for r in rows] == [str(i) for i in again["item"]]  # the same as rating by id
    assert [r[2] for r in rows] == [TITLES.get(int(i), f"Movie {i} (2000)") for i in again["item"]]
    quiet = _recommend(model, rate, "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == result.stdout


def test_an_exact_title_wins_over_a_longer_one_containing_it(model: Path) -> None:
    result = _recommend(model, "Heat (1995):5")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[1].split(None, 2) == ["10", "5", "Heat (1995)"]


@pytest.mark.parametrize("rate,candidates", [
    ("star:5", ["1 Star Wars (1977)", "2 Star Trek: First Contact (1996)"]),
    ("Chasing Amy (1997):4", ["6 Chasing Amy (1997)", "7 Chasing Amy (1997)"]),  # one title, two items
])
def test_an_ambiguous_title_exits_2_listing_the_candidates(model: Path, rate: str, candidates: list[str],
                                                           flat) -> None:  # noqa: ANN001
    result = _recommend(model, rate)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output and result.stdout == ""
    assert "is ambiguous" in errors[0] and all(c in errors[0] for c in candidates)
    assert "give the item id" in errors[0]


@pytest.mark.parametrize("rate,message", [
    ("Casablanca (1942):5", "unknown item 'Casablanca (1942)'"),
    ("1:5,999:4", "unknown item '999'"),  # an unknown id is no longer dropped silently
    ("Fargo (1996):good", "rating 'good' for item 'Fargo (1996)' is not a number"),
    ("8:5,Fargo (1996):4", "item 8 is rated twice (as '8' and 'Fargo (1996)')"),
    ("Fargo (1996)", "expects ITEM:RATING pairs"),
])
def test_unknown_or_malformed_ratings_exit_2_naming_them(model: Path, rate: str, message: str,
                                                         flat) -> None:  # noqa: ANN001
    result = _recommend(model, rate)
    assert result.exit_code == 2, result.output
    assert message in flat(result.output) and "Traceback" not in result.output and result.stdout == ""


# ------------------------------------------------------------------------------- one score column
def test_recommend_and_score_name_and_fill_the_score_column_alike(model: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["recae", "recommend", "--model", str(model), "--user", "3", "-k", "4"])
    assert result.exit_code == 0, result.output
    assert _header(result.stdout) == ["rank", "item", "title", "score"]
    shown = [(int(r[1]), float(r[3])) for r in _rows(result.stdout)]
    out = tmp_path / "recs.csv"
    result = runner.invoke(app, ["recae", "score", "--model", str(model), "--out", str(out), "-k", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    recs = pd.read_csv(out)
    assert list(recs.columns) == ["user", "item", "rank", "score"]
    user3 = recs[recs["user"] == 3]
    assert [i for i, _ in shown] == user3["item"].tolist()
    np.testing.assert_allclose([s for _, s in shown], user3["score"], atol=1e-4)


def test_implicit_models_use_the_same_column(tmp_path: Path) -> None:
    rec = AutoencoderRecommender(model="multdae", epochs=1, device="cpu").fit(_ratings())
    assert list(rec.recommend(3, 2).columns) == list(rec.fold_in({1: 5.0}, 2).columns) == ["rank", "item", "score"]


# -------------------------------------------------------------------------- rejected users' lines
def test_rejected_users_carry_their_line_in_the_users_file(model: Path, tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("user\n1\n\nghost\n2\r\n999\nghost\n")
    out = tmp_path / "recs.csv"
    result = runner.invoke(app, ["recae", "score", "--model", str(model), "--out", str(out), "--users", str(users),
                                 "-k", "2", "--quiet"])
    assert result.exit_code == 3, result.output
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert [(r["row"], r["reason"]) for r in manifest["rejected"]] == [(4, "unknown user ghost"),
                                                                      (6, "unknown user 999")]
    assert len(pd.read_csv(out)) == 2 * 2


# ------------------------------------------------------------------------------ titles persistence
def test_titles_round_trip_and_old_models_borrow_the_datasets_titles(tmp_path: Path, data_dir: Path) -> None:
    rec = AutoencoderRecommender(model="deeprec", epochs=1, device="cpu").fit(_ratings())
    rec.attach_titles(_titles_frame()).save(tmp_path / "titled")
    again = AutoencoderRecommender.load(tmp_path / "titled", device="cpu")
    assert again.titles_ == _titles_frame()["title"].tolist()
    assert again.catalog().resolve("fargo") == 8
    # saved without titles but with a named dataset (as before titles were kept): ML-100K's own
    rec.titles_ = None
    rec.save(tmp_path / "old", dataset="ml-100k")
    old = AutoencoderRecommender.load(tmp_path / "old", device="cpu")
    assert old.titles_ is None and old.catalog().title(0) == "Toy Story (1995)"


# ------------------------------------------------------------------------------- the epoch kept
def test_training_reports_the_metric_with_its_sign_and_the_epoch_kept(caplog: pytest.LogCaptureFixture) -> None:
    frame = _ratings(n_users=60)
    train = frame[frame["user"] <= 45]
    held = frame[(frame["user"] > 45) & (frame["rating"] >= 4)].assign(rating=1.0)
    with caplog.at_level(logging.DEBUG, logger="core.train"):
        rec = AutoencoderRecommender(model="multvae", epochs=4, device="cpu").fit(
            train, validation=(held.iloc[::2], held.iloc[1::2]))
    h = rec.history_
    assert "val ndcg@100 0." in caplog.text and "val -" not in caplog.text
    best_ndcg = -h.val_loss[h.best_epoch]
    assert f"kept epoch {h.best_epoch + 1} of 4 (val ndcg@100 {best_ndcg:.4f})" in caplog.text
