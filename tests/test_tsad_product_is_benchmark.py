"""The product is the benchmark (issue 11): a model trained with `ae tsad train --preset nab` on a
NAB file's probationary rows and run through `ae tsad monitor` over the file gives the scores that
`ae tsad evaluate --benchmark nab --out` writes for that file, and alerts exactly where they reach
the preset's cutoff."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from tsad import metrics as M
from tsad.config import preset

runner = CliRunner()


@pytest.mark.data
def test_monitor_gives_the_scores_evaluate_writes(data_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AE_DATA_DIR", str(data_dir))
    common = ["--epochs", "2", "--device", "cpu", "--seed", "0"]
    result = runner.invoke(app, ["tsad", "evaluate", "--benchmark", "nab", "--limit", "1", "--out",
                                 str(tmp_path / "nab"), "--quiet", *common])
    assert result.exit_code == 0, result.output
    [written] = list((tmp_path / "nab").rglob("*.csv"))
    evaluated = pd.read_csv(written)
    probation = M.probation_rows(len(evaluated))
    evaluated[["timestamp", "value"]].iloc[:probation].to_csv(tmp_path / "train.csv", index=False)
    evaluated[["timestamp", "value"]].to_csv(tmp_path / "stream.csv", index=False)

    trained = runner.invoke(app, ["tsad", "train", "--preset", "nab", "--data", str(tmp_path / "train.csv"),
                                  "--time-col", "timestamp", "--out", str(tmp_path / "model"), "--quiet", *common])
    assert trained.exit_code == 0, trained.output
    scores = tmp_path / "scores.jsonl"
    watched = runner.invoke(app, ["tsad", "monitor", "--model", str(tmp_path / "model"), "--input",
                                  str(tmp_path / "stream.csv"), "--alerts", str(tmp_path / "alerts.jsonl"),
                                  "--emit-scores", str(scores), "--quiet"])
    assert watched.exit_code == 0, watched.output
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(rows) == len(evaluated)
    got = np.array([np.nan if r["alert_score"] is None else r["alert_score"] for r in rows], dtype=float)
    # the same up to float32 convolutions over other batch shapes (monitor: 32 rows at a time), which
    # the likelihood's squashing can magnify to about 1e-4 on some CPUs
    np.testing.assert_allclose(got, evaluated["anomaly_score"].to_numpy(dtype=float), rtol=1e-3, atol=1e-4,
                               equal_nan=True)
    cutoff = preset("nab").alerting.cutoff
    assert [r["is_anomaly"] for r in rows] == (np.nan_to_num(got) >= cutoff).tolist()
    assert any(r["is_anomaly"] for r in rows)  # the comparison covers alerts, not only silence
