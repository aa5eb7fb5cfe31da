"""`ae tsad evaluate --json` has one shape for every benchmark (issue 11, item 6): `metrics` and
`baselines` over the evaluation part, `metrics_all` / `baselines_all` over the whole corpus, `tuning`
the split rule, the parts' sizes and where the preset's settings were chosen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from tsad import metrics as M
from tsad.config import DetectorConfig, NetworkConfig
from tsad.datasets import Series
from tsad.detector import WindowDetector
from tsad.evaluate import (
    MSL_SPLIT_RULE,
    SKAB_SPLIT_RULE,
    SPLITS,
    evaluate_split,
    msl_halves,
    skab_halves,
)

runner = CliRunner()
BENCH = Path(__file__).resolve().parents[1] / "bench"
POINT_KEYS = {"best_f1", "f1_pa", "pr_auc", "roc_auc", "vus_pr", "f1", "precision", "recall", "far", "mar",
              "event_recall", "range_precision", "range_recall", "range_f1"}


# ------------------------------------------------------------------------------------ the rules
def test_skab_halves_alternate_within_each_folder_in_numeric_order() -> None:
    """Folders in order of first appearance (the loader's: valve1, valve2, other); within one, numeric
    order (10 after 9, not after 1); even positions tuning, odd evaluation."""
    names = ["valve1/0.csv", "valve1/1.csv", "valve1/2.csv", "valve1/10.csv", "valve1/9.csv",
             "valve2/0.csv", "other/1.csv", "other/2.csv", "other/3.csv"]
    tuning, evaluation = skab_halves(names)
    assert tuning == ["valve1/0.csv", "valve1/2.csv", "valve1/10.csv", "valve2/0.csv", "other/1.csv", "other/3.csv"]
    assert evaluation == ["valve1/1.csv", "valve1/9.csv", "other/2.csv"]
    assert skab_halves(list(reversed(names[:5]))) == skab_halves(names[:5])  # order within a folder is irrelevant
    assert skab_halves([]) == ([], [])
    assert "even positions" in SKAB_SPLIT_RULE and "valve1" in SKAB_SPLIT_RULE


def test_msl_halves_sort_by_channel_id_and_alternate() -> None:
    tuning, evaluation = msl_halves(["T-9", "C-2", "D-14", "C-1", "A-7"])
    assert tuning == ["A-7", "C-2", "T-9"] and evaluation == ["C-1", "D-14"]
    # test series' names ("C-1/test") split as their channel ids, and come back as given
    tuning, evaluation = msl_halves(["C-2/test", "C-1/test", "D-14/test"])
    assert tuning == ["C-1/test", "D-14/test"] and evaluation == ["C-2/test"]
    assert "even positions" in MSL_SPLIT_RULE
    assert SPLITS["skab"].halves is skab_halves and SPLITS["msl"].halves is msl_halves
    assert "bench/tsad_skab_protocol.py" in SPLITS["skab"].settings
    assert "bench/tsad_msl_protocol.py" in SPLITS["msl"].settings


@pytest.mark.data
def test_halves_on_the_corpora_match_the_benches_records(data_dir: Path) -> None:
    """On the real file lists the rules give the parts the protocol benches recorded."""
    from tsad.datasets import iter_msl, iter_skab

    skab = json.loads((BENCH / "tsad_skab_protocol.json").read_text())
    assert skab_halves([s.name for s in iter_skab(data_dir)]) == (skab["tuning_files"], skab["evaluation_files"])
    msl = json.loads((BENCH / "tsad_msl_protocol.json").read_text())
    tuning, evaluation = msl_halves([c.test.name for c in iter_msl(data_dir)])
    assert [n.split("/")[0] for n in tuning] == msl["tuning_channels"]
    assert [n.split("/")[0] for n in evaluation] == msl["evaluation_channels"]


# --------------------------------------------------------------------------- evaluate_split
def _small() -> WindowDetector:
    config = DetectorConfig(window=16, network=NetworkConfig(channels=(8, 4), kernel_size=3))
    config.training.epochs, config.training.batch_size, config.training.patience = 2, 32, None
    return WindowDetector(config, device="cpu")


def _pairs(n: int) -> list[tuple[Series, Series]]:
    pairs = []
    for k in range(n):
        rng = np.random.default_rng(k)
        t = np.arange(260)
        values = (np.sin(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(260))[:, None]
        test = values[100:].copy()
        labels = np.zeros(160, dtype=int)
        labels[60 + 10 * k:70 + 10 * k] = 1
        test[labels == 1] += 2.0 + k
        pairs.append((Series(values[:100], ["v"], name=f"valve1/{k}.csv"),
                      Series(test, ["v"], labels=labels, name=f"valve1/{k}.csv")))
    return pairs


def test_evaluate_split_reports_the_evaluation_part_and_the_whole(tmp_path: Path) -> None:
    result = evaluate_split(_pairs(3), _small, "skab", baselines=("rolling_zscore",), out=tmp_path,
                            split=SPLITS["skab"])
    doc = result.to_dict()
    assert doc["tuning"] == {"rule": SKAB_SPLIT_RULE, "files": 2, "evaluation_files": 1,
                             "settings": SPLITS["skab"].settings}
    assert set(doc["metrics"]) == POINT_KEYS | {"points_per_second"} and set(doc["metrics_all"]) == POINT_KEYS
    assert set(doc["baselines"]) == set(doc["baselines_all"]) == {"rolling_zscore"}
    frames = {p.name: pd.read_csv(p) for p in tmp_path.iterdir()}
    assert sorted(frames) == ["valve1__0.csv", "valve1__1.csv", "valve1__2.csv"]  # every file, either part

    def f1(files: list[str]) -> float:
        y = np.concatenate([frames[f]["label"].to_numpy() for f in files])
        return M.point_prf(y, np.concatenate([frames[f]["is_anomaly"].to_numpy() for f in files]))["f1"]

    assert doc["metrics"]["f1"] == pytest.approx(f1(["valve1__1.csv"]), abs=1e-4)  # the 2nd file: evaluation
    assert doc["metrics_all"]["f1"] == pytest.approx(f1(sorted(frames)), abs=1e-4)


def test_evaluate_split_without_split_and_with_an_empty_evaluation_part() -> None:
    alone = evaluate_split(_pairs(1), _small, "mine.csv", baselines=(), no_split="none: a single user file")
    assert alone.extra["tuning"] == {"rule": "none: a single user file"}
    assert {k: v for k, v in alone.metrics.items() if k != "points_per_second"} == alone.extra["metrics_all"]
    only_tuning = evaluate_split(_pairs(1), _small, "skab", baselines=(), split=SPLITS["skab"])  # e.g. --limit 1
    assert only_tuning.extra["tuning"]["evaluation_files"] == 0
    assert all(np.isnan(v) for k, v in only_tuning.metrics.items() if k != "points_per_second")
    assert set(only_tuning.metrics) == POINT_KEYS | {"points_per_second"}


def test_whole_file_metrics_count_the_training_rows_as_skab_does() -> None:
    """With labelled training rows (SKAB's files), `*_whole_file` F1/FAR/MAR are over every row of each
    file, the training rows scored by the fitted detector: its own predictions there, recomputed here."""
    labelled = [(Series(tr.values, tr.channels, labels=np.zeros(len(tr), dtype=int), name=tr.name), te)
                for tr, te in _pairs(2)]
    labelled[0][0].labels[5:15] = 1  # an anomaly inside the training rows counts as missed unless flagged
    result = evaluate_split(labelled, _small, "mine", baselines=("rolling_zscore",))
    keys = {"f1_whole_file", "far_whole_file", "mar_whole_file"}
    assert keys <= set(result.metrics) and keys <= set(result.baselines["rolling_zscore"])
    y, p = [], []
    for train, test in labelled:
        det = _small().fit(train)
        y += [train.labels, test.labels]
        p += [det.score(train.values).is_anomaly, det.score(test.values).is_anomaly]
    far, mar = M.far_mar(np.concatenate(y), np.concatenate(p))
    assert result.metrics["far_whole_file"] == pytest.approx(far, abs=1e-4)
    assert result.metrics["mar_whole_file"] == pytest.approx(mar, abs=1e-4)
    assert result.metrics["f1_whole_file"] == pytest.approx(
        M.point_prf(np.concatenate(y), np.concatenate(p))["f1"], abs=1e-4)
    # the 10 labelled training rows add misses the test-rows-only MAR does not see
    assert result.metrics["mar_whole_file"] > result.metrics["mar"]
    unlabelled = evaluate_split(_pairs(2), _small, "mine", baselines=())  # no training labels: no such keys
    assert not keys & set(unlabelled.metrics)


# ------------------------------------------------------------------------------------ the CLI
@pytest.mark.data
def test_evaluate_skab_json_shape(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AE_DATA_DIR", str(data_dir))
    result = runner.invoke(app, ["tsad", "evaluate", "--benchmark", "skab", "--limit", "4", "--epochs", "1",
                                 "--out", str(tmp_path / "scored"), "--json", str(tmp_path / "s.json"),
                                 "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "s.json").read_text())
    assert {"metrics", "metrics_all", "baselines", "baselines_all", "tuning"} <= set(doc)
    assert POINT_KEYS | {"points_per_second"} <= set(doc["metrics"]) and POINT_KEYS <= set(doc["metrics_all"])
    assert set(doc["baselines"]) == set(doc["baselines_all"]) and "pca" in doc["baselines"]
    assert {"f1_whole_file", "far_whole_file", "mar_whole_file"} <= set(doc["metrics"])  # SKAB's own convention
    for name, m in doc["baselines"].items():
        assert POINT_KEYS <= set(m) and POINT_KEYS <= set(doc["baselines_all"][name])
    # the first 4 files in the loader's order: valve1/0..3; 0 and 2 tune, 1 and 3 evaluate
    assert doc["tuning"]["rule"] == SKAB_SPLIT_RULE
    assert (doc["tuning"]["files"], doc["tuning"]["evaluation_files"]) == (2, 2)
    assert "bench/tsad_skab_protocol.py" in doc["tuning"]["settings"]
    assert "the table: the evaluation part (2 files" in result.output
    assert "SKAB's leaderboard convention" in result.output
    written = sorted(p.name for p in (tmp_path / "scored").iterdir())
    assert written == ["valve1__0.csv", "valve1__1.csv", "valve1__2.csv", "valve1__3.csv"]
