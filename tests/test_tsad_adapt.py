"""Online adaptation (`score`/`monitor --adapt`, tsad.adapt): it lowers the error on drift, learns only
from rows judged normal, never touches the saved model, and gives the same rows whatever the
batching, across runs and restarts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from cli import app
from tsad.adapt import OnlineAdapter
from tsad.batch import CausalScorer, stream_score
from tsad.config import DetectorConfig, from_dict, to_dict
from tsad.detector import WindowDetector
from tsad.ingest import Rows

runner = CliRunner()


def _values(first: int, n: int) -> np.ndarray:
    t = np.arange(first, first + n)
    v = np.sin(2 * np.pi * t / 25) + 0.004 * np.maximum(t - 300, 0)  # a drift training never showed
    v[(t >= 730) & (t < 735)] += 6.0
    return v


def _frame(first: int, n: int) -> pd.DataFrame:
    t = np.arange(first, first + n)
    return pd.DataFrame({"timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(5 * t, unit="min"),
                         "v0": _values(first, n)})


@pytest.fixture(scope="module")
def detector() -> WindowDetector:
    cfg = DetectorConfig(window=16).updated({"training.epochs": 3, "adapt.every": 50, "adapt.steps": 5,
                                             "adapt.lr": 1e-3})
    train = np.sin(2 * np.pi * np.arange(300) / 25)[:, None]
    return WindowDetector(cfg, seed=0, device="cpu").fit(train)


def test_adaptation_lowers_the_error_on_drift_and_leaves_the_model_alone(detector: WindowDetector) -> None:
    values = _values(300, 600)[:, None]
    before = detector.score(values).score
    adapted = stream_score(detector, values, adapt=True).score
    again = stream_score(detector, values, adapt=True).score
    np.testing.assert_array_equal(adapted, again)  # deterministic for the model's seed
    late = slice(400, 600)
    assert np.nanmean(adapted[late]) < 0.5 * np.nanmean(before[late])
    np.testing.assert_array_equal(detector.score(values).score, before)  # the trained weights are untouched
    # the first round comes after `every` rows: until then the scores are the trained model's
    np.testing.assert_array_equal(adapted[:50], before[:50])


def test_only_rows_judged_normal_are_learned(detector: WindowDetector) -> None:
    values = _values(300, 50)[:, None]
    flagged = OnlineAdapter(detector)
    flagged.observe(values, np.ones(50, dtype=bool))  # a round falls due, but every window holds an anomaly
    assert flagged.rounds == 1 and flagged.weights is None
    one_bad_row = np.zeros(50, dtype=bool)
    one_bad_row[[10, 30]] = True  # only windows ending in rows 46..49 avoid both
    normal = OnlineAdapter(detector)
    normal.observe(values, one_bad_row)
    assert normal.weights is not None


def test_batching_does_not_change_a_row(detector: WindowDetector) -> None:
    frame = _frame(300, 600)
    whole = stream_score(detector, frame[["v0"]].to_numpy(), adapt=True)
    scorer = CausalScorer(detector, adapt=True)
    parts = []
    for lo in range(0, 600, 37):
        chunk = frame.iloc[lo:lo + 37]
        rows = Rows(np.arange(lo + 2, lo + 2 + len(chunk)), chunk["v0"].to_numpy()[:, None].astype(float))
        _, scores, rejected = scorer.push(rows)
        assert not rejected
        parts.append(scores.score)
    np.testing.assert_allclose(np.concatenate(parts), whole.score, rtol=1e-4, equal_nan=True)


def test_a_config_without_the_adapt_section_still_loads() -> None:
    d = to_dict(DetectorConfig())
    d.pop("adapt")
    assert from_dict(d).adapt == DetectorConfig().adapt


# ------------------------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("adapt")
    train = _frame(0, 300)
    train["v0"] = np.sin(2 * np.pi * np.arange(300) / 25)
    train.to_csv(d / "train.csv", index=False)
    out = {}
    for mode, extra in (("threshold", []), ("adaptive", ["--level-check"]), ("spot", ["--spot-risk", "0.001"])):
        result = runner.invoke(app, ["tsad", "train", "--data", str(d / "train.csv"), "--out", str(d / mode),
                                     "--window", "16", "--epochs", "3", "--device", "cpu", "--quiet", "--alerting",
                                     mode, "--adapt-every", "40", "--adapt-lr", "1e-3", *extra])
        assert result.exit_code == 0, result.output
        out[mode] = d / mode
    return out


@pytest.mark.parametrize("mode", ["threshold", "adaptive", "spot"])
def test_score_and_monitor_adapt_alike_across_runs_and_restarts(models: dict[str, Path], mode: str,
                                                               tmp_path: Path) -> None:
    model = models[mode]
    whole = _frame(300, 600)
    whole.to_csv(tmp_path / "whole.csv", index=False)
    common = ["--device", "cpu", "--quiet"]
    one = runner.invoke(app, ["tsad", "score", "--model", str(model), "--input", str(tmp_path / "whole.csv"),
                              "--out", str(tmp_path / "one.csv"), "--adapt", *common])
    assert one.exit_code == 0, one.output
    d = pd.read_csv(tmp_path / "one.csv")
    plain = runner.invoke(app, ["tsad", "score", "--model", str(model), "--input", str(tmp_path / "whole.csv"),
                                "--out", str(tmp_path / "plain.csv"), *common])
    assert plain.exit_code == 0, plain.output
    assert not np.allclose(d["score"], pd.read_csv(tmp_path / "plain.csv")["score"], equal_nan=True)

    # score: one run per file, the adapted weights carried by --state
    scored = []
    for i, lo in enumerate(range(0, 600, 90)):
        part = tmp_path / f"part{i}.csv"
        whole.iloc[lo:lo + 90].to_csv(part, index=False)
        result = runner.invoke(app, ["tsad", "score", "--model", str(model), "--input", str(part), "--out",
                                     str(tmp_path / f"s{i}.csv"), "--state", str(tmp_path / "st"), "--adapt", *common])
        assert result.exit_code == 0, result.output
        scored.append(pd.read_csv(tmp_path / f"s{i}.csv"))
    s = pd.concat(scored, ignore_index=True)
    assert s["is_anomaly"].tolist() == d["is_anomaly"].tolist()
    np.testing.assert_allclose(s["score"], d["score"], rtol=1e-4, equal_nan=True)
    saved = json.loads((tmp_path / "st" / "state.json").read_text())
    assert saved["series"]["default"]["adapt"]["rounds"] == 600 // 40
    assert load_file(str(tmp_path / "st" / "adapted.safetensors"))  # the weights, as safetensors

    # monitor: stopped after 250 records, resumed on a replay of the whole stream
    state, lines = tmp_path / "m.state", tmp_path / "sc.jsonl"
    text = (tmp_path / "whole.csv").read_text().splitlines(keepends=True)
    for chunk in ("".join(text[:251]), "".join(text)):
        result = runner.invoke(app, ["tsad", "monitor", "--model", str(model), "--state", str(state), "--alerts",
                                     str(tmp_path / "a.jsonl"), "--emit-scores", str(lines), "--adapt", "--quiet",
                                     "--batch", "7"], input=chunk)
        assert result.exit_code == 0, result.output
    m = [json.loads(x) for x in lines.read_text().splitlines()]
    assert [r["is_anomaly"] for r in m] == d["is_anomaly"].tolist()
    got = np.array([np.nan if r["score"] is None else r["score"] for r in m], dtype=float)
    # float32 convolutions of other batch shapes differ in the last bits, more on some CPUs
    np.testing.assert_allclose(got, d["score"], rtol=1e-4, equal_nan=True)
    kept = sorted(p.name for p in tmp_path.glob("m.state.adapted-*.safetensors"))
    assert kept == [f"m.state.adapted-{600 // 40}.safetensors"]  # the older checkpoint's weights are gone


def test_adapt_refusals_are_one_line_errors(models: dict[str, Path], tmp_path: Path) -> None:
    model = models["threshold"]
    _frame(300, 120).to_csv(tmp_path / "in.csv", index=False)
    base = ["tsad", "score", "--model", str(model), "--input", str(tmp_path / "in.csv"), "--device", "cpu",
            "--quiet"]
    first = runner.invoke(app, [*base, "--out", str(tmp_path / "a.csv"), "--state", str(tmp_path / "st"), "--adapt"])
    assert first.exit_code == 0, first.output
    mixed = runner.invoke(app, [*base, "--out", str(tmp_path / "b.csv"), "--state", str(tmp_path / "st")])
    assert mixed.exit_code == 2
    assert "was written with --adapt" in mixed.output
    ray = runner.invoke(app, [*base, "--out", str(tmp_path / "shards"), "--adapt", "--engine", "ray"])
    assert ray.exit_code == 2
    assert "--adapt runs on the local engine only" in ray.output

    state = tmp_path / "m.state"
    text = (tmp_path / "in.csv").read_text()
    ok = runner.invoke(app, ["tsad", "monitor", "--model", str(model), "--state", str(state), "--alerts",
                             str(tmp_path / "al.jsonl"), "--quiet"], input=text)
    assert ok.exit_code == 0, ok.output
    resumed = runner.invoke(app, ["tsad", "monitor", "--model", str(model), "--state", str(state), "--alerts",
                                  str(tmp_path / "al.jsonl"), "--quiet", "--adapt"], input=text)
    assert resumed.exit_code == 2
    assert "was written without --adapt" in resumed.output
