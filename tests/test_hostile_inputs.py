"""Hostile inputs through the CLI: bad ratings, ids that look like floats, labels that cannot be
measured, NaN metrics, repeated or undecodable user lists. Each must give exit 2 with one `error:`
line and write nothing, or (ids, repeats) work as the user wrote them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from core.errors import UserError
from recae.datasets import load_ml1m, load_ratings_file

runner = CliRunner()
TRAIN = ["--model", "deeprec", "--epochs", "1", "--device", "cpu", "--quiet"]


def _ratings(n_users: int = 30, n_items: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(u + 1, int(i) + 1, float(rng.integers(1, 6))) for u in range(n_users)
            for i in rng.choice(n_items, 8, replace=False)]
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def _error_line(result, flat) -> str:  # noqa: ANN001
    """The single `error:` line of a failed command (no traceback), flattened."""
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return flat(lines[0])


@pytest.mark.parametrize("bad,message", [
    ("inf", "rating inf on row 3 is not a finite number"),
    ("-inf", "rating -inf on row 3 is not a finite number"),
    ("-3", "rating -3 on row 3 is not positive"),
    ("0", "rating 0 on row 3 is not positive"),
])
def test_train_rejects_bad_ratings(tmp_path: Path, bad: str, message: str, flat) -> None:  # noqa: ANN001
    data = tmp_path / "r.csv"
    data.write_text(f"user,item,rating\n1,1,4\n2,2,5\n3,3,{bad}\n4,1,2\n")
    result = runner.invoke(app, ["recae", "train", "--dataset", str(data), "--out", str(tmp_path / "m"), *TRAIN])
    assert result.exit_code == 2, result.output
    assert message in _error_line(result, flat)
    assert not (tmp_path / "m").exists()


def test_declared_movielens_scale_rejects_out_of_scale_rating(tmp_path: Path) -> None:
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ratings.dat").write_text("1::1193::5::978300760\n2::661::50::978302109\n")
    with pytest.raises(UserError, match=r"rating 50\.0 on row 2 is outside the scale 1-5"):
        load_ml1m(tmp_path)


def test_ratings_file_scale_is_declared_or_inferred_and_logged(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "r.csv"
    data.write_text("user,item,rating\n1,1,4\n2,2,50\n")
    with pytest.raises(UserError, match=r"rating 50 on row 2 is outside the scale 1-5"):
        load_ratings_file(data, scale=(1, 5))
    with caplog.at_level(logging.INFO, logger="recae.datasets"):
        load_ratings_file(data)
    assert "rating scale 4-50 inferred" in caplog.text


def test_rating_scale_option_declares_the_scale(tmp_path: Path, flat) -> None:  # noqa: ANN001
    data = tmp_path / "r.csv"
    _ratings().to_csv(data, index=False)
    good = runner.invoke(app, ["recae", "train", "--dataset", str(data), "--out", str(tmp_path / "m"),
                               "--rating-scale", "0.5:5", *TRAIN])
    assert good.exit_code == 0, good.output
    assert json.loads((tmp_path / "m" / "config.json").read_text())["extras"]["scale"] == [0.5, 5.0]
    with data.open("a") as fh:
        fh.write("99,1,7\n")
    for scale, message in (("1:5", "rating 7.0 on row 241 is outside the scale 1-5"),
                           ("5:1", "the scale needs finite LO < HI"), ("one:5", "is not LO:HI"),
                           ("1:inf", "the scale needs finite LO < HI")):
        result = runner.invoke(app, ["recae", "train", "--dataset", str(data), "--out", str(tmp_path / "m2"),
                                     "--rating-scale", scale, *TRAIN])
        assert result.exit_code == 2, (scale, result.output)
        assert message in flat(result.output), (scale, result.output)
        assert not (tmp_path / "m2").exists()


def test_ids_round_trip_as_written(tmp_path: Path) -> None:
    """One item id `1.5` must not turn every item id into `N.0`; leading zeros are kept too."""
    frame = _ratings().astype({"item": object})
    frame.loc[0, "item"] = "1.5"
    frame.loc[1, "item"] = "007"
    data = tmp_path / "r.csv"
    frame.to_csv(data, index=False)
    loaded = load_ratings_file(data)
    assert {"1.5", "007", "3"} <= set(loaded["item"]) and loaded["user"].dtype.kind == "i"
    model = tmp_path / "m"
    result = runner.invoke(app, ["recae", "train", "--dataset", str(data), "--out", str(model), *TRAIN])
    assert result.exit_code == 0, result.output
    rated = int(loaded["item"].iloc[5])  # an ordinary id, given as an int on the command line
    result = runner.invoke(app, ["recae", "recommend", "--model", str(model), "--rate", f"{rated}:5,1.5:4"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "recs.csv"
    result = runner.invoke(app, ["recae", "score", "--model", str(model), "--out", str(out), "-k", "25", "--quiet"])
    assert result.exit_code == 0, result.output
    items = set(pd.read_csv(out, dtype=str)["item"])
    assert "1.5" in items and "007" in items and not any(i.endswith(".0") for i in items)


def test_recae_evaluate_refuses_nan_metrics(tmp_path: Path, flat) -> None:  # noqa: ANN001
    """Every user rates once, so no test rating is by a user seen in training: nothing to measure."""
    data = tmp_path / "r.csv"
    pd.DataFrame({"user": range(1, 61), "item": [i % 6 + 1 for i in range(60)],
                  "rating": [float(i % 5 + 1) for i in range(60)]}).to_csv(data, index=False)
    result = runner.invoke(app, ["recae", "evaluate", "--dataset", str(data), "--split", "random", "--json",
                                 str(tmp_path / "e.json"), *TRAIN])
    assert result.exit_code == 2, result.output
    assert "nothing to measure" in _error_line(result, flat)
    assert not (tmp_path / "e.json").exists()


def _labelled(path: Path, labels: list) -> Path:  # noqa: ANN001
    n = len(labels)
    t = np.arange(n)
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="5min"),
                  "v0": np.sin(2 * np.pi * t / 25), "label": labels}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("labels,message", [
    ([0] * 300, "no positive labels (1) in the test part"),
    ([0] * 200 + [1] * 100, "no negative labels (0) in the test part"),
    ([0] * 250 + [2] + [0] * 49, "label 2 on row 251 is not 0 or 1"),
    ([0] * 250 + ["yes"] + [1] * 49, "label 'yes' on row 251 is not 0 or 1"),  # text is never read as 0
    ([0] * 250 + [None] + [1] * 49, "label an empty cell on row 251 is not 0 or 1"),
])
def test_tsad_evaluate_refuses_unmeasurable_labels(tmp_path: Path, labels: list, message: str,
                                                   flat) -> None:  # noqa: ANN001
    data = _labelled(tmp_path / "l.csv", labels)
    result = runner.invoke(app, ["tsad", "evaluate", "--data", str(data), "--labels", "label", "--train-rows", "200",
                                 "--epochs", "1", "--json", str(tmp_path / "e.json"), "--device", "cpu", "--quiet"])
    assert result.exit_code == 2, result.output
    assert message in _error_line(result, flat)
    assert not (tmp_path / "e.json").exists()


def test_tsad_write_json_never_writes_nan(tmp_path: Path) -> None:
    from tsad.evaluate import EvalResult, write_json

    result = EvalResult("file", "conv", {"best_f1": float("nan"), "pr_auc": np.float32(0.5)},
                        {"pca": {"roc_auc": float("inf")}}, 1.0)
    write_json(result, tmp_path / "e.json")
    text = (tmp_path / "e.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    assert doc["metrics"] == {"best_f1": None, "pr_auc": 0.5} and doc["baselines"]["pca"]["roc_auc"] is None


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hostile_model")
    _ratings().to_csv(d / "r.csv", index=False)
    result = runner.invoke(app, ["recae", "train", "--dataset", str(d / "r.csv"), "--out", str(d / "m"), *TRAIN])
    assert result.exit_code == 0, result.output
    return d / "m"


def test_score_drops_repeated_users(model: Path, tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("3\n1\n3\n03\n1\n2\n")
    out = tmp_path / "recs.csv"
    result = runner.invoke(app, ["recae", "score", "--model", str(model), "--out", str(out), "--users", str(users),
                                 "-k", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    recs = pd.read_csv(out)
    assert len(recs) == 3 * 4 and list(dict.fromkeys(recs["user"])) == [3, 1, 2]
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["inputs"][0]["duplicates_dropped"] == 3 and manifest["inputs"][0]["rows"] == 6


def test_score_rejects_non_utf8_users_file(model: Path, tmp_path: Path, flat) -> None:  # noqa: ANN001
    users = tmp_path / "users.txt"
    users.write_bytes(b"1\n2\n\xff\xfe3\n")
    out = tmp_path / "recs.csv"
    result = runner.invoke(app, ["recae", "score", "--model", str(model), "--out", str(out), "--users", str(users),
                                 "--quiet"])
    assert result.exit_code == 2, result.output
    assert "is not UTF-8 text (byte 0xff on line 3)" in _error_line(result, flat)
    assert not out.exists() and not Path(f"{out}.manifest.json").exists()


# ------------------------------------------------------------------ tsad: outputs, long cells, zones, bad lines
def _series_csv(path: Path, n: int = 120, start: str = "2024-01-01") -> Path:
    t = np.arange(n)
    pd.DataFrame({"timestamp": pd.date_range(start, periods=n, freq="5min").strftime("%Y-%m-%d %H:%M:%S"),
                  "v0": np.sin(2 * np.pi * t / 25)}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hostile_detector")
    result = runner.invoke(app, ["tsad", "train", "--data", str(_series_csv(d / "t.csv")), "--out", str(d / "m"),
                                 "--window", "8", "--epochs", "1", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return d / "m"


def test_an_output_that_is_an_input_is_refused(detector: Path, model: Path, tmp_path: Path, flat) -> None:  # noqa: ANN001
    data = _series_csv(tmp_path / "d.csv")
    before = data.read_bytes()
    link = tmp_path / "link.csv"
    link.symlink_to(data)
    for args in (["tsad", "detect", "--model", str(detector), "--data", str(data), "--out", str(data)],
                 ["tsad", "detect", "--model", str(detector), "--data", str(data), "--out", str(tmp_path / "s.csv"),
                  "--plot", str(link)],
                 ["tsad", "score", "--model", str(detector), "--input", str(data), "--out", str(link)]):
        result = runner.invoke(app, [*args, "--quiet"])
        assert result.exit_code == 2, result.output
        assert "is both input and output of this job" in _error_line(result, flat)
    users = tmp_path / "users.csv"
    users.write_text("1\n2\n")
    result = runner.invoke(app, ["recae", "score", "--model", str(model), "--users", str(users), "--out", str(users)])
    assert result.exit_code == 2 and "is both input and output" in _error_line(result, flat)
    assert data.read_bytes() == before and users.read_text() == "1\n2\n"
    assert not (tmp_path / "s.csv").exists()


def test_huge_cells_are_rejected_quickly_and_the_rest_scored(detector: Path, tmp_path: Path) -> None:
    data = _series_csv(tmp_path / "d.csv")
    lines = data.read_text().splitlines()
    lines[20] = "2" * 1_000_000 + ",1.0"  # a 1 MB timestamp: past the CSV reader's field limit
    lines[30] = "2024-01-01 02:29:59," + "9" * 10_000  # a 10 kB number: past ours
    lines[40] = "2" * 10_000 + ",1.0"  # a 10 kB timestamp
    data.write_text("\n".join(lines) + "\n")
    for command in ("detect", "score"):
        out = tmp_path / f"{command}.csv"
        args = ["--data", str(data)] if command == "detect" else ["--input", str(data)]
        result = runner.invoke(app, ["tsad", command, "--model", str(detector), *args, "--out", str(out), "--quiet"])
        assert result.exit_code == 3, result.output
        assert len(pd.read_csv(out)) == 117
    reasons = {r["row"]: r["reason"] for r in json.loads(Path(f"{out}.manifest.json").read_text())["rejected"]}
    assert sorted(reasons) == [21, 31, 41]
    assert "field larger than field limit" in reasons[21]
    assert reasons[31] == "v0 has 10,000 characters (at most 200)"
    assert reasons[41] == "timestamp has 10,000 characters (at most 200)"


def test_mixed_time_zones_are_read_as_utc_and_files_scored(detector: Path, tmp_path: Path) -> None:
    a = _series_csv(tmp_path / "a.csv")
    frame = pd.read_csv(a)
    frame["timestamp"] = [f"{t}+01:00" if i % 2 else f"{t}Z" for i, t in enumerate(frame["timestamp"])]
    frame.to_csv(tmp_path / "b.csv", index=False)
    out = tmp_path / "s.parquet"
    result = runner.invoke(app, ["tsad", "score", "--model", str(detector), "--input", str(tmp_path / "*.csv"),
                                 "--out", str(out), "--quiet"])
    assert result.exit_code == 3, result.output  # b's +01:00 stamps go back an hour: rejected as out of order
    scored = pd.read_parquet(out)
    assert set(scored["source"].map(lambda s: Path(s).name)) == {"a.csv", "b.csv"}
    assert (scored["source"].str.endswith("a.csv")).sum() == 120


def test_score_rejects_one_bad_line_and_keeps_the_rest(detector: Path, tmp_path: Path) -> None:
    data = _series_csv(tmp_path / "d.csv", n=1000)
    lines = data.read_text().splitlines()
    lines[401] += ",extra"  # line 402: a wrong field count
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "s.csv"
    result = runner.invoke(app, ["tsad", "score", "--model", str(detector), "--input", str(data), "--out", str(out),
                                 "--chunk-rows", "100", "--quiet"])
    assert result.exit_code == 3, result.output
    assert len(pd.read_csv(out)) == 999
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert [(r["row"], r["reason"][:8]) for r in manifest["rejected"]] == [(402, "expected")]


def test_an_overflowing_reading_is_an_alert_not_silence(detector: Path, tmp_path: Path) -> None:
    data = _series_csv(tmp_path / "d.csv")
    lines = data.read_text().splitlines()
    lines[61] = lines[61].split(",")[0] + ",1e308"  # finite, but beyond anything float32 can hold
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "s.csv"
    result = runner.invoke(app, ["tsad", "detect", "--model", str(detector), "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    assert scores["score"][7:].notna().all()  # every row with a full window is scored, the wild one's too
    assert bool(scores["is_anomaly"][60]) and scores["score"][60] > 1e6 * scores["score"][7:60].max()


def test_training_on_overflowing_values_is_refused(tmp_path: Path, flat) -> None:  # noqa: ANN001
    data = _series_csv(tmp_path / "t.csv")
    frame = pd.read_csv(data)
    frame.loc[10, "v0"] = 1e308
    frame.to_csv(data, index=False)
    result = runner.invoke(app, ["tsad", "train", "--data", str(data), "--out", str(tmp_path / "m"), "--window", "8",
                                 "--epochs", "1", "--device", "cpu", "--quiet"])
    assert result.exit_code == 2, result.output
    assert "training values are too large to scale" in _error_line(result, flat)
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------ deeply nested JSON, special files
def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_deeply_nested_json_is_a_user_error_everywhere(detector: Path, tmp_path: Path, flat) -> None:  # noqa: ANN001
    from core.artifact import CONFIG_NAME
    from core.jsontext import parse_json

    for depth in (100, 100_000):  # past the depth limit; past the interpreter's recursion limit
        with pytest.raises(UserError, match="nested"):
            parse_json(_nested(depth), "x")
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(detector.resolve(), copy)
    (copy / CONFIG_NAME).write_text('{"format": "ae-model-dir", "extras": ' + _nested(100_000) + "}")
    data = _series_csv(tmp_path / "d.csv")
    result = runner.invoke(app, ["tsad", "detect", "--model", str(copy), "--data", str(data),
                                 "--out", str(tmp_path / "s.csv"), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "nested too deeply" in _error_line(result, flat)
    state = tmp_path / "state.json"
    state.write_text(_nested(100_000))
    result = runner.invoke(app, ["tsad", "monitor", "--model", str(detector), "--input", str(data),
                                 "--state", str(state), "--alerts", str(tmp_path / "a.jsonl"), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "state file" in _error_line(result, flat)


@pytest.fixture
def no_hang():  # noqa: ANN201 - a blocked open() of a FIFO fails the test instead of hanging it
    import signal

    def alarm(signum, frame):  # noqa: ANN001, ANN202
        raise TimeoutError("blocked on a named pipe")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_named_pipe_is_refused_as_one_not_as_missing_or_empty(detector: Path, model: Path, tmp_path: Path,
                                                                 flat, no_hang) -> None:  # noqa: ANN001
    import os

    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    users = tmp_path / "users.txt"
    os.mkfifo(users)
    for args in (["tsad", "detect", "--model", str(detector), "--data", str(fifo), "--out", str(tmp_path / "s.csv")],
                 ["tsad", "score", "--model", str(detector), "--input", str(fifo), "--out", str(tmp_path / "s.csv")],
                 ["tsad", "train", "--data", str(fifo), "--out", str(tmp_path / "m")],
                 ["recae", "train", "--dataset", str(fifo), "--out", str(tmp_path / "m"), *TRAIN],
                 ["recae", "score", "--model", str(model), "--users", str(users), "--out", str(tmp_path / "r.csv")]):
        result = runner.invoke(app, [*args, "--quiet"] if "--quiet" not in args else args)
        assert result.exit_code == 2, (args, result.output)
        assert "named pipe" in _error_line(result, flat), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "users.txt"]
