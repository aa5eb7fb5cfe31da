"""`ae tsad` end to end: train, detect, evaluate, monitor (bad records, kill and resume), score."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()
TRAIN_ARGS = ["--window", "16", "--epochs", "3", "--device", "cpu", "--quiet"]


def _series(path: Path, n: int = 300, spike: int | None = None, seed: int = 0, channels: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="5min")})
    for c in range(channels):
        v = np.sin(2 * np.pi * t / 25 + c) + 0.05 * rng.standard_normal(n)
        if spike is not None:
            v[spike:spike + 4] += 5.0
        frame[f"v{c}"] = v
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tsad")
    _series(d / "train.csv")
    out = d / "model"
    result = runner.invoke(app, ["tsad", "train", "--data", str(d / "train.csv"), "--out", str(out), *TRAIN_ARGS])
    assert result.exit_code == 0, result.output
    return out


def test_detect_writes_scores_and_plot(model: Path, tmp_path: Path) -> None:
    data = _series(tmp_path / "test.csv", spike=200, seed=1)
    result = runner.invoke(app, ["tsad", "detect", "--model", str(model), "--data", str(data), "--out",
                                 str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.png"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(tmp_path / "s.csv")
    # the default alerting (spot) writes the score it compares with its level as alert_score
    assert list(scores.columns) == ["timestamp", "v0", "score", "score_prob", "alert_score", "is_anomaly"]
    assert scores["is_anomaly"][200:220].any()
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("content,message", [
    ("", "is empty"),
    ("timestamp,v0\nnot-a-time,1\n", "cannot be parsed"),
    ("timestamp,other\n2024-01-01,1\n", "no column 'v0'"),
])
def test_detect_bad_input_writes_nothing(model: Path, tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    result = runner.invoke(app, ["tsad", "detect", "--model", str(model), "--data", str(bad), "--out",
                                 str(tmp_path / "s.csv")])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s.csv").exists()


def test_detect_rejects_an_out_of_order_row_and_scores_the_rest(model: Path, tmp_path: Path, flat) -> None:  # noqa: ANN001
    data = tmp_path / "d.csv"
    data.write_text("timestamp,v0\n2024-01-02,1\n2024-01-01,2\n2024-01-03,3\n")
    result = runner.invoke(app, ["tsad", "detect", "--model", str(model), "--data", str(data), "--out",
                                 str(tmp_path / "s.csv")])
    assert result.exit_code == 3, result.output
    assert "line 3: out-of-order timestamp" in flat(result.output)
    scores = pd.read_csv(tmp_path / "s.csv")
    assert scores["timestamp"].tolist() == ["2024-01-02", "2024-01-03"]


def test_train_bad_arguments(tmp_path: Path, flat) -> None:  # noqa: ANN001
    data = _series(tmp_path / "t.csv")
    for args, message in ([["--model", "lstm"], "'lstm' is not one of 'conv', 'dense', 'vae'"],
                          [["--epochs", "0"], "epochs"], [["--threshold", "magic"], "'magic' is not one of"],
                          [["--smooth", "0"], "--smooth"]):
        result = runner.invoke(app, ["tsad", "train", "--data", str(data), "--out", str(tmp_path / "m"),
                                     "--window", "16", "--quiet", *args])
        assert result.exit_code == 2 and message in flat(result.output)
    assert not (tmp_path / "m").exists()
    result = runner.invoke(app, ["tsad", "train", "--data", str(tmp_path / "missing.csv"), "--out",
                                 str(tmp_path / "m")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_evaluate_own_labelled_file(tmp_path: Path) -> None:
    data = _series(tmp_path / "l.csv", n=400, spike=300)
    frame = pd.read_csv(data)
    frame["label"] = 0
    frame.loc[300:303, "label"] = 1
    frame.to_csv(data, index=False)
    result = runner.invoke(app, ["tsad", "evaluate", "--data", str(data), "--train-rows", "200", "--epochs", "3",
                                 "--json", str(tmp_path / "e.json"), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["metrics"]["pr_auc"] > 0.5 and "rolling_zscore" in doc["baselines"]


def test_evaluate_names_the_channel_that_carries_the_false_alarms(tmp_path: Path, flat) -> None:  # noqa: ANN001
    """Two channels; v1 drifts upward through the test rows (labelled normal), v0 has a labelled
    spike: the false alarms come from v1, and `evaluate` says so (printed and in --json)."""
    data = _series(tmp_path / "l.csv", n=500, channels=2)
    frame = pd.read_csv(data)
    frame.loc[250:, "v1"] += np.linspace(0.0, 6.0, 250)
    frame.loc[400:405, "v0"] += 5.0
    frame["label"] = 0
    frame.loc[400:405, "label"] = 1
    frame.to_csv(data, index=False)
    result = runner.invoke(app, ["tsad", "evaluate", "--data", str(data), "--train-rows", "250", "--epochs", "3",
                                 "--json", str(tmp_path / "e.json"), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    blame = json.loads((tmp_path / "e.json").read_text())["false_alarm_channels"]
    assert list(blame) == ["v1", "v0"] and blame["v1"] > 0.8 and abs(sum(blame.values()) - 1.0) < 1e-3
    assert "false alarms by channel (mean share of the score on flagged normal test rows): v1" in flat(result.output)


def test_evaluate_nab_slice(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AE_DATA_DIR", str(data_dir))
    result = runner.invoke(app, ["tsad", "evaluate", "--benchmark", "nab", "--limit", "2", "--epochs", "1",
                                 "--out", str(tmp_path / "nab"), "--json", str(tmp_path / "n.json"), "--quiet",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "n.json").read_text())
    assert {"nab_standard", "nab_low_fp", "nab_low_fn"} <= set(doc["metrics"])
    assert set(doc["ablations"]["ae_without_level"]) == {"nab_standard", "nab_low_fp", "nab_low_fn"}
    # metrics: the evaluation half at the tuning half's thresholds; metrics_all: the whole corpus
    assert {"nab_standard", "nab_low_fp", "nab_low_fn"} <= set(doc["metrics_all"])
    assert doc["tuning"]["files"] + doc["tuning"]["evaluation_files"] == 2
    assert set(doc["tuning"]["thresholds"]) == {"nab_standard", "nab_low_fp", "nab_low_fn"}
    assert "ae without level (ablation)" in result.output
    written = list((tmp_path / "nab").rglob("*.csv"))
    assert len(written) == 2
    out = pd.read_csv(written[0])
    assert list(out.columns) == ["timestamp", "value", "anomaly_score", "label"]
    assert out["anomaly_score"].between(0, 1).all()


def test_evaluate_rejects_unknown_benchmark(flat) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["tsad", "evaluate", "--benchmark", "yahoo"])
    assert result.exit_code == 2 and "'yahoo' is not one of 'nab', 'skab', 'msl'" in flat(result.output)


@pytest.fixture(scope="module")
def smoothed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tsad_smooth")
    _series(d / "train.csv")
    out = d / "model"
    result = runner.invoke(app, ["tsad", "train", "--data", str(d / "train.csv"), "--out", str(out), "--smooth", "5",
                                 *TRAIN_ARGS])
    assert result.exit_code == 0, result.output
    return out


# ---------------------------------------------------------------------------------------- monitor
def _monitor(model: Path, data: Path, alerts: Path, *extra: str):
    return runner.invoke(app, ["tsad", "monitor", "--model", str(model), "--input", str(data), "--alerts",
                               str(alerts), "--quiet", *extra])


@pytest.mark.parametrize("fixture", ["model", "smoothed_model"])
def test_monitor_matches_detect_and_skips_bad_records(fixture: str, request: pytest.FixtureRequest,
                                                      tmp_path: Path) -> None:
    model = request.getfixturevalue(fixture)
    data = _series(tmp_path / "s.csv", n=300, spike=200, seed=2)
    runner.invoke(app, ["tsad", "detect", "--model", str(model), "--data", str(data), "--out",
                        str(tmp_path / "d.csv"), "--device", "cpu"])
    lines = data.read_text().splitlines()
    noisy = [lines[0], *lines[1:100], "2024-01-01 08:00:00,abc", "garbage", lines[99], *lines[100:]]
    (tmp_path / "noisy.csv").write_text("\n".join(noisy) + "\n")
    result = _monitor(model, tmp_path / "noisy.csv", tmp_path / "a.jsonl", "--emit-scores",
                      str(tmp_path / "sc.jsonl"))
    assert result.exit_code == 0, result.output
    assert "3 rejected" in result.output
    stream = [json.loads(x)["score"] for x in (tmp_path / "sc.jsonl").read_text().splitlines()]
    batch = pd.read_csv(tmp_path / "d.csv")["score"].to_numpy()
    np.testing.assert_allclose(np.array(stream, dtype=float), batch, rtol=1e-6, equal_nan=True)
    alerts = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(alerts) >= 1 and all({"start", "end", "score", "score_prob", "threshold"} <= set(a) for a in alerts)


def test_monitor_kill_and_resume_gives_the_same_alerts(model: Path, tmp_path: Path) -> None:
    data = _series(tmp_path / "long.csv", n=3000, seed=3)
    frame = pd.read_csv(data)
    for start in (700, 1500, 2400):
        frame.loc[start:start + 5, "v0"] += 6.0
    frame.to_csv(data, index=False)
    clean = _monitor(model, data, tmp_path / "clean.jsonl")
    assert clean.exit_code == 0, clean.output
    expected = (tmp_path / "clean.jsonl").read_text()
    assert expected.count("\n") >= 3

    state, alerts = tmp_path / "state.json", tmp_path / "resumed.jsonl"
    cmd = [sys.executable, "-c", "from cli import main; main()", "tsad", "monitor", "--model", str(model),
           "--input", str(data), "--alerts", str(alerts), "--state", str(state), "--checkpoint-every", "200",
           "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not (state.exists() and json.loads(state.read_text())["records"] >= 1000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = json.loads(state.read_text())["records"]
    assert 0 < first < 3000
    resumed = runner.invoke(app, ["tsad", "monitor", "--model", str(model), "--input", str(data), "--alerts",
                                  str(alerts), "--state", str(state), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert alerts.read_text() == expected


# ------------------------------------------------------------------------------------------ score
def test_score_folder_manifest_idempotence_and_exit_codes(model: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    _series(inbox / "a.csv", seed=4)
    _series(inbox / "b.csv", seed=5)
    out = tmp_path / "scores.parquet"
    args = ["tsad", "score", "--model", str(model), "--input", str(inbox), "--out", str(out), "--quiet",
            "--device", "cpu", "--chunk-rows", "64"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    table = pd.read_parquet(out)
    assert len(table) == 600 and set(table["source"].str[-5:]) == {"a.csv", "b.csv"}
    detect = runner.invoke(app, ["tsad", "detect", "--model", str(model), "--data", str(inbox / "a.csv"),
                                 "--out", str(tmp_path / "d.csv"), "--device", "cpu"])
    assert detect.exit_code == 0
    a = table[table["source"].str.endswith("a.csv")]["score"].to_numpy()
    np.testing.assert_allclose(a, pd.read_csv(tmp_path / "d.csv")["score"].to_numpy(), rtol=1e-6, equal_nan=True)
    manifest = json.loads((tmp_path / "scores.parquet.manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["rows_out"] == 600 and len(manifest["inputs"]) == 2
    again = runner.invoke(app, [*args, "--skip-existing"])
    assert again.exit_code == 0 and "up to date" in again.output

    lines = (inbox / "b.csv").read_text().splitlines()
    lines[10] = lines[10].split(",")[0] + ",oops"
    (inbox / "b.csv").write_text("\n".join(lines) + "\n")
    partial = runner.invoke(app, [*args, "--skip-existing"])
    assert partial.exit_code == 3
    manifest = json.loads((tmp_path / "scores.parquet.manifest.json").read_text())
    assert manifest["status"] == "partial" and manifest["rejected"][0]["row"] == 11
    assert "bad number" in manifest["rejected"][0]["reason"]

    missing = runner.invoke(app, ["tsad", "score", "--model", str(model), "--input", str(tmp_path / "none.csv"),
                                  "--out", str(tmp_path / "x.parquet")])
    assert missing.exit_code == 2 and not (tmp_path / "x.parquet").exists()
    assert not (tmp_path / "x.parquet.manifest.json").exists()


def test_threshold_and_denoise_parameters_have_options(tmp_path: Path, flat) -> None:  # noqa: ANN001
    data = _series(tmp_path / "train.csv")
    fitted = {}
    for extra in (["--threshold", "percentile", "--threshold-q", "90"],
                  ["--threshold", "percentile", "--threshold-q", "99.9"],
                  ["--threshold", "contamination", "--contamination", "0.2", "--denoise", "gaussian",
                   "--noise-level", "0.3", "--margin", "1.5"]):
        out = tmp_path / f"m{len(fitted)}"
        result = runner.invoke(app, ["tsad", "train", "--data", str(data), "--out", str(out), *TRAIN_ARGS, *extra])
        assert result.exit_code == 0, result.output
        params = json.loads((out / "config.json").read_text())["extras"]
        fitted[" ".join(extra)] = params
    q90, q999, cont = fitted.values()
    assert q90["params"]["config"]["threshold"]["q"] == 90.0
    assert q90["threshold"]["threshold_"] < q999["threshold"]["threshold_"]
    assert cont["params"]["config"]["network"] == {**cont["params"]["config"]["network"], "denoise": "gaussian",
                                                    "noise_level": 0.3}
    assert cont["params"]["config"]["threshold"]["margin"] == 1.5
    for extra, message in ((["--threshold-q", "95"], "--threshold-q applies to --threshold percentile, not max"),
                           (["--threshold", "pot", "--contamination", "0.1"], "--contamination applies to"),
                           (["--noise-level", "0.2"], "--noise-level applies with --denoise"),
                           (["--threshold", "percentile", "--threshold-q", "120"], "--threshold-q is out of range")):
        result = runner.invoke(app, ["tsad", "train", "--data", str(data), "--out", str(tmp_path / "bad"),
                                     *TRAIN_ARGS, *extra])
        assert result.exit_code == 2 and message in flat(result.output), (extra, result.output)
        assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("name", ["skab", "msl", "nab"])
def test_train_preset_keeps_the_presets_scoring(name: str, tmp_path: Path) -> None:
    """`train --preset X` must train what `evaluate --benchmark X` measures: options left out keep the
    preset's values (its smoothing and score channels were once overwritten by --smooth's default)."""
    from tsad.config import preset

    data = _series(tmp_path / "train.csv", channels=8)
    out = tmp_path / "m"
    result = runner.invoke(app, ["tsad", "train", "--data", str(data), "--out", str(out), "--preset", name,
                                 "--epochs", "1", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())["extras"]["params"]["config"]["scoring"]
    want = preset(name).scoring
    assert saved["smooth"] == want.smooth
    assert saved["score_channels"] == (list(want.score_channels) if want.score_channels is not None else None)


def test_score_columns_pick_the_channels_that_make_the_score(tmp_path: Path, flat) -> None:  # noqa: ANN001
    """The same network (same data and seed) scored on v0 and v2 only: a jump on v1 hardly moves that
    score, while the model scoring every column flags it; a jump on v0 moves both."""
    data = _series(tmp_path / "train.csv", channels=3)
    models = {}
    for label, extra in (("picked", ["--score-columns", "v2, v0", "--smooth", "5"]), ("all", ["--smooth", "5"])):
        models[label] = tmp_path / label
        result = runner.invoke(app, ["tsad", "train", "--data", str(data), "--out", str(models[label]), *TRAIN_ARGS,
                                     *extra])
        assert result.exit_code == 0, result.output
    scoring = json.loads((models["picked"] / "config.json").read_text())["extras"]["params"]["config"]["scoring"]
    assert scoring["score_channels"] == [0, 2] and scoring["smooth"] == 5
    frame = pd.read_csv(data)
    peak = {}
    for column in ("v1", "v0"):
        jumped = frame.copy()
        jumped.loc[150:170, column] += 5.0
        jumped.to_csv(tmp_path / f"{column}.csv", index=False)
        for label, model_dir in models.items():
            out = tmp_path / f"{label}_{column}.csv"
            result = runner.invoke(app, ["tsad", "detect", "--model", str(model_dir), "--data",
                                         str(tmp_path / f"{column}.csv"), "--out", str(out), "--device", "cpu"])
            assert result.exit_code == 0, result.output
            peak[(label, column)] = float(np.nanmax(pd.read_csv(out)["score"].to_numpy()[150:180]))
    assert peak[("picked", "v1")] < 0.5 * peak[("all", "v1")]
    assert peak[("picked", "v0")] > 3 * peak[("picked", "v1")]
    for extra, message in ((["--score-columns", "v0,nope"], "--score-columns: nope; the value columns are v0, v1, v2"),
                           (["--score-columns", ","], "no column given"),
                           (["--preset", "skab"], "the score channels [1, 3, 7] (positions, from 0) need more than "
                                                  "the data's 3 channel(s)")):
        result = runner.invoke(app, ["tsad", "train", "--data", str(data), "--out", str(tmp_path / "bad"),
                                     *TRAIN_ARGS, *extra])
        assert result.exit_code == 2 and message in flat(result.output), result.output
        assert not (tmp_path / "bad").exists()
