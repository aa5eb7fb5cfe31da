"""`ae tsad score --state DIR`: scheduled runs over small files carry each series' history, so their
scores are those of one causal run over the files joined together; counts say why rows lack a score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from core.jobs.tables import EXACT_FLOATS

runner = CliRunner()
WINDOW, SMOOTH = 16, 2  # a score needs WINDOW + SMOOTH - 1 = 17 rows
NEED = WINDOW + SMOOTH - 1


def _frame(start: int, n: int, seed: int = 0) -> pd.DataFrame:
    """Rows start..start+n of one daily-looking series at 5-minute steps (12 rows an hour)."""
    rng = np.random.default_rng(seed + start)
    t = np.arange(start, start + n)
    return pd.DataFrame({"timestamp": pd.Timestamp("2024-03-01") + pd.to_timedelta(5 * t, unit="min"),
                         "v0": np.sin(2 * np.pi * t / 48) + 0.05 * rng.standard_normal(n)})


def _train(root: Path, seed: int = 0) -> Path:
    _frame(0, 240).to_csv(root / "train.csv", index=False)
    out = root / f"model{seed}"
    result = runner.invoke(app, ["tsad", "train", "--data", str(root / "train.csv"), "--out", str(out), "--window",
                                 str(WINDOW), "--smooth", str(SMOOTH), "--epochs", "2", "--seed", str(seed),
                                 "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("score_state"))


def _hourly(root: Path, sizes: list[int], gap_at: int | None = None) -> list[Path]:
    """Consecutive files of the series (named by hour, as a scheduler would), one per size."""
    paths, start = [], 1000
    for i, n in enumerate(sizes):
        frame = _frame(start, n)
        if gap_at is not None and i == gap_at:
            frame.loc[1, "v0"] = np.nan  # a missing reading: the causal fill must carry across runs too
        path = root / f"in_{i:03d}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
        start += n
    return paths


def _score(model: Path, inputs: list[Path], out: Path, *extra: str) -> tuple[int, str]:
    ins = [arg for p in inputs for arg in ("--input", str(p))]
    result = runner.invoke(app, ["tsad", "score", "--model", str(model), *ins,
                                 "--out", str(out), "--device", "cpu", "--quiet", *extra])
    return result.exit_code, result.output


def _one_run_per_file(model: Path, files: list[Path], root: Path, *extra: str) -> list[pd.DataFrame]:
    outs = []
    for i, path in enumerate(files):
        code, output = _score(model, [path], root / f"out_{i:03d}.parquet", "--state", str(root / "state"), *extra)
        assert code == 0, output
        outs.append(pd.read_parquet(root / f"out_{i:03d}.parquet"))
    return outs


def _joined(model: Path, files: list[Path], root: Path) -> pd.DataFrame:
    joined = root / "joined.csv"
    pd.concat([pd.read_csv(p, **EXACT_FLOATS) for p in files]).to_csv(joined, index=False)
    code, output = _score(model, [joined], root / "joined.parquet")
    assert code == 0, output
    return pd.read_parquet(root / "joined.parquet")


def _same_scores(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got["timestamp"].tolist() == want["timestamp"].tolist()
    np.testing.assert_allclose(got["v0"].to_numpy(), want["v0"].to_numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-6, atol=1e-9,
                               equal_nan=True)
    assert (got["is_anomaly"].to_numpy() == want["is_anomaly"].to_numpy()).all()


def test_hourly_files_after_a_backlog_are_scored_fully_and_as_one_run(model: Path, tmp_path: Path) -> None:
    # the first run reads a backlog (longer than the window), then one 12-row file an hour
    files = _hourly(tmp_path, [40] + [12] * 8, gap_at=3)
    outs = _one_run_per_file(model, files, tmp_path)
    want = _joined(model, files, tmp_path)
    got = pd.concat(outs, ignore_index=True)
    _same_scores(got, want)
    assert np.isfinite(got["score"][NEED - 1:]).all() and got["score"][:NEED - 1].isna().all()
    for out in outs[1:]:  # every row from the second file on has a score
        assert np.isfinite(out["score"]).all() and np.isfinite(out["score_prob"]).all()
    # rows without a score have an empty probability too, not 0.0
    assert outs[0]["score_prob"][:NEED - 1].isna().all() and outs[0]["score_prob"][NEED - 1:].notna().all()


def test_files_shorter_than_the_window_are_scored_once_history_suffices(model: Path, tmp_path: Path) -> None:
    files = _hourly(tmp_path, [6] * 6)  # 36 rows; a score needs 17
    outs = _one_run_per_file(model, files, tmp_path)
    _same_scores(pd.concat(outs, ignore_index=True), _joined(model, files, tmp_path))
    # rows 17 and 18 of 36 are the first with a score
    assert [int(o["score"].notna().sum()) for o in outs] == [0, 0, 2, 6, 6, 6]
    manifest = json.loads((tmp_path / "out_000.parquet.manifest.json").read_text())
    entry = manifest["inputs"][0]
    assert (entry["rows"], entry["scored"], entry["unscored"], entry["rejected"]) == (6, 0, 6, 0)
    assert f"6 need window history ({NEED} rows: window {WINDOW}, smooth {SMOOTH})" in entry["note"]
    assert manifest["params"]["state"] == str(tmp_path / "state")
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert list(state["series"]) == ["default"] and len(state["series"]["default"]["context"]) == NEED - 1


def test_without_state_the_summary_says_why_rows_have_no_score(model: Path, tmp_path: Path, flat) -> None:  # noqa: ANN001
    files = _hourly(tmp_path, [12])
    code, output = _score(model, files, tmp_path / "s.csv")
    assert code == 0, output
    text = flat(output)
    assert "read 12 rows from 1 file(s): 0 scored, 12 written without a score (need window history)" in text
    assert "use --state to carry context between runs" in text
    scores = pd.read_csv(tmp_path / "s.csv")
    assert scores["score"].isna().all() and scores["score_prob"].isna().all()


def test_one_run_over_many_files_equals_one_run_per_file(model: Path, tmp_path: Path) -> None:
    files = _hourly(tmp_path, [7, 5, 12, 9])
    per_file = pd.concat(_one_run_per_file(model, files, tmp_path), ignore_index=True)
    code, output = _score(model, files, tmp_path / "all.parquet", "--state", str(tmp_path / "state2"))
    assert code == 0, output
    _same_scores(pd.read_parquet(tmp_path / "all.parquet"), per_file)


def test_rows_already_scored_are_skipped_and_counted(model: Path, tmp_path: Path, flat) -> None:  # noqa: ANN001
    files = _hourly(tmp_path, [20, 6, 6])
    state = ["--state", str(tmp_path / "state")]
    assert _score(model, files[:2], tmp_path / "a.parquet", *state)[0] == 0
    # a scheduler's glob reads the old files again: their rows are skipped, not rejected (exit 0)
    code, output = _score(model, files, tmp_path / "b.parquet", *state)
    assert code == 0, output
    assert "6 scored" in flat(output) and "26 already scored by an earlier run" in flat(output)
    manifest = json.loads((tmp_path / "b.parquet.manifest.json").read_text())
    assert [e["already_scored"] for e in manifest["inputs"]] == [20, 6, 0] and manifest["rejected"] == []
    assert len(pd.read_parquet(tmp_path / "b.parquet")) == 6


def test_the_state_refuses_another_model_and_a_foreign_directory(model: Path, tmp_path: Path, flat) -> None:  # noqa: ANN001
    files = _hourly(tmp_path, [20])
    assert _score(model, files, tmp_path / "a.parquet", "--state", str(tmp_path / "state"))[0] == 0
    other = _train(tmp_path, seed=1)
    code, output = _score(other, files, tmp_path / "b.parquet", "--state", str(tmp_path / "state"))
    assert code == 2 and "was written with another model" in flat(output)
    assert not (tmp_path / "b.parquet").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "data.csv").write_text("x\n")
    code, output = _score(model, files, tmp_path / "c.parquet", "--state", str(tmp_path / "busy"))
    assert code == 2 and "without state.json" in flat(output) and (tmp_path / "busy" / "data.csv").exists()


def test_a_failed_run_leaves_the_old_state(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tsad.batch as batch

    files = _hourly(tmp_path, [20, 6])
    assert _score(model, files[:1], tmp_path / "a.parquet", "--state", str(tmp_path / "state"))[0] == 0
    before = (tmp_path / "state" / "state.json").read_text()

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("disk full")

    monkeypatch.setattr(batch, "scores_frame", broken)
    code, _ = _score(model, files[1:], tmp_path / "b.parquet", "--state", str(tmp_path / "state"))
    assert code == 1 and not (tmp_path / "b.parquet").exists()
    assert (tmp_path / "state" / "state.json").read_text() == before
    monkeypatch.undo()
    code, output = _score(model, files[1:], tmp_path / "b.parquet", "--state", str(tmp_path / "state"))
    assert code == 0, output
    assert pd.read_parquet(tmp_path / "b.parquet")["score"].notna().all()


def test_series_col_keeps_one_history_per_series(model: Path, tmp_path: Path) -> None:
    a, b = _frame(1000, 30), _frame(5000, 30)
    a["host"], b["host"] = "a", "b"
    for i, (lo, hi) in enumerate([(0, 10), (10, 20), (20, 30)]):
        pd.concat([a[lo:hi], b[lo:hi]]).to_csv(tmp_path / f"in_{i}.csv", index=False)
    outs = []
    for i in range(3):
        code, output = _score(model, [tmp_path / f"in_{i}.csv"], tmp_path / f"o{i}.parquet", "--series-col", "host",
                              "--state", str(tmp_path / "state"))
        assert code == 0, output
        outs.append(pd.read_parquet(tmp_path / f"o{i}.parquet"))
    got = pd.concat(outs, ignore_index=True)
    for host, frame in (("a", a), ("b", b)):
        frame.drop(columns="host").to_csv(tmp_path / f"{host}.csv", index=False)
        assert _score(model, [tmp_path / f"{host}.csv"], tmp_path / f"{host}.parquet")[0] == 0
        _same_scores(got[got["series"] == host].reset_index(drop=True), pd.read_parquet(tmp_path / f"{host}.parquet"))
