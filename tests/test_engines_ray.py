"""`--engine ray` against a local Ray of 2 CPUs: the same rows as the local engine for both score
commands, the same manifest facts, a killed worker retried, and --skip-existing. One Ray for the
module (each job would otherwise pay Ray's start-up)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from core.engines.ray_engine import KILL_ONCE_ENV, read_shards

ray = pytest.importorskip("ray")
runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module", autouse=True)
def local_ray(root: Path):  # noqa: ANN201
    """Ray on 2 CPUs for the module; the workers' kill switch is armed only once its folder exists."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 ** 2,
             runtime_env={"env_vars": {KILL_ONCE_ENV: str(root / "kill" / "once")}})
    yield
    ray.shutdown()


def _ok(args: list[str], code: int = 0) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    return result.output


def _ratings(n_users: int = 150, n_items: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(u, i, float(rng.integers(1, 6))) for u in range(1, n_users + 1)
            for i in rng.choice(n_items, 12, replace=False) + 1]
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


@pytest.fixture(scope="module")
def rec_model(root: Path) -> Path:
    _ratings().to_csv(root / "ratings.csv", index=False)
    _ok(["recae", "train", "--dataset", str(root / "ratings.csv"), "--model", "multvae", "--epochs", "2",
         "--out", str(root / "rec"), "--device", "cpu", "--quiet"])
    return root / "rec"


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def test_recae_ray_rows_equal_local_and_unknown_users_exit_3(rec_model: Path, tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("\n".join(["3", "nobody", *map(str, range(10, 120))]) + "\n")
    common = ["recae", "score", "--model", str(rec_model), "-k", "7", "--users", str(users), "--batch-users", "25",
              "--quiet"]
    _ok([*common, "--out", str(tmp_path / "local.parquet")], code=3)
    _ok([*common, "--out", str(tmp_path / "sharded"), "--engine", "ray", "--workers", "2"], code=3)
    local = pd.read_parquet(tmp_path / "local.parquet")
    sharded = read_shards(tmp_path / "sharded")
    pd.testing.assert_frame_equal(_sorted(sharded, ["user", "rank"]), _sorted(local, ["user", "rank"]))
    manifest = json.loads((tmp_path / "sharded.manifest.json").read_text())
    want = json.loads((tmp_path / "local.parquet.manifest.json").read_text())
    assert manifest["rejected"] == want["rejected"]
    assert want["rejected"] == [{"input": str(users), "row": 2, "reason": "unknown user nobody"}]
    assert manifest["engine"]["workers"] == 2 and manifest["status"] == "partial"
    assert [s["users"] for s in manifest["shards"]] == [25, 25, 25, 25, 11]
    assert sum(s["rows"] for s in manifest["shards"]) == manifest["rows_out"] == len(local)


def test_recae_ray_skip_existing_and_a_killed_worker_is_retried(rec_model: Path, root: Path, tmp_path: Path,
                                                                flat) -> None:  # noqa: ANN001
    (root / "kill").mkdir()  # arm: the first unit's worker kills its own process
    try:
        args = ["recae", "score", "--model", str(rec_model), "--out", str(tmp_path / "recs"), "--engine", "ray",
                "--workers", "2", "--batch-users", "40", "--quiet"]
        _ok(args)
    finally:
        died = (root / "kill" / "once").exists()
        (root / "kill" / "once").unlink(missing_ok=True)
        (root / "kill").rmdir()
    assert died, "no worker was killed: the test did not test a retry"
    _ok(["recae", "score", "--model", str(rec_model), "--out", str(tmp_path / "all.parquet"), "--quiet"])
    pd.testing.assert_frame_equal(_sorted(read_shards(tmp_path / "recs"), ["user", "rank"]),
                                  _sorted(pd.read_parquet(tmp_path / "all.parquet"), ["user", "rank"]))
    assert "up to date" in flat(_ok([*args[:-1], "--skip-existing"]))


def _series(n: int, seed: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(start, start + n)
    return pd.DataFrame({"timestamp": pd.Timestamp("2024-03-01") + pd.to_timedelta(5 * t, unit="min"),
                         "v0": np.sin(2 * np.pi * t / 48) + 0.05 * rng.standard_normal(n),
                         "v1": np.cos(2 * np.pi * t / 48) + 0.05 * rng.standard_normal(n)})


@pytest.fixture(scope="module")
def det_model(root: Path) -> Path:
    _series(240, 0).to_csv(root / "train.csv", index=False)
    _ok(["tsad", "train", "--data", str(root / "train.csv"), "--out", str(root / "det"), "--window", "16",
         "--epochs", "2", "--device", "cpu", "--quiet"])
    return root / "det"


def _tsad_both(det_model: Path, tmp_path: Path, inputs: list[str], *extra: str, code: int = 0) -> tuple:
    common = ["tsad", "score", "--model", str(det_model), *[a for p in inputs for a in ("--input", p)], *extra,
              "--quiet"]
    _ok([*common, "--out", str(tmp_path / "local.parquet")], code=code)
    _ok([*common, "--out", str(tmp_path / "sharded"), "--engine", "ray", "--workers", "2"], code=code)
    keys = ["source", *(["series"] if "--series-col" in extra else []), "timestamp"]
    local, sharded = pd.read_parquet(tmp_path / "local.parquet"), read_shards(tmp_path / "sharded")
    pd.testing.assert_frame_equal(_sorted(sharded, keys), _sorted(local, keys))
    manifests = [json.loads((tmp_path / name).read_text())
                 for name in ("local.parquet.manifest.json", "sharded.manifest.json")]
    return local, *manifests


def test_tsad_ray_scores_each_file_as_local_with_rejected_rows(det_model: Path, tmp_path: Path) -> None:
    files = []
    for i in range(3):
        frame = _series(120 + 10 * i, seed=i + 1).astype({"v0": object})
        if i == 1:
            frame.loc[50, "v0"] = "broken"
        files.append(tmp_path / f"f{i}.csv")
        frame.to_csv(files[-1], index=False)
    local, want, got = _tsad_both(det_model, tmp_path, [str(p) for p in files], code=3)
    assert got["inputs"] == want["inputs"] and got["rejected"] == want["rejected"]
    assert [r["row"] for r in got["rejected"]] == [52]  # the header is line 1
    assert got["rows_in"] == want["rows_in"] == 390 and got["rows_out"] == len(local) == 389
    assert [s["input"] for s in got["shards"]] == [str(p) for p in files]


def test_tsad_ray_series_col_with_state_continues_as_local(det_model: Path, tmp_path: Path) -> None:
    frames = [_series(150, seed=s).assign(unit=name) for s, name in enumerate(["a", "b", "c"])]
    both = pd.concat(frames).sort_values("timestamp", kind="stable")
    first, second = both.iloc[:240], both.iloc[240:]
    first.to_csv(tmp_path / "h1.csv", index=False)
    second.to_csv(tmp_path / "h2.csv", index=False)
    for hour in ("h1", "h2"):
        run = tmp_path / hour
        run.mkdir()
        common = ["tsad", "score", "--model", str(det_model), "--input", str(tmp_path / f"{hour}.csv"),
                  "--series-col", "unit", "--quiet"]
        _ok([*common, "--out", str(run / "local.parquet"), "--state", str(tmp_path / "state_local")])
        _ok([*common, "--out", str(run / "sharded"), "--state", str(tmp_path / "state_ray"), "--engine", "ray"])
        keys = ["series", "timestamp"]
        pd.testing.assert_frame_equal(_sorted(read_shards(run / "sharded"), keys),
                                      _sorted(pd.read_parquet(run / "local.parquet"), keys))
    states = [json.loads((tmp_path / name / "state.json").read_text())["series"]
              for name in ("state_local", "state_ray")]
    assert states[0] == states[1] and sorted(states[0]) == ["a", "b", "c"]


def test_more_workers_than_the_cluster_has_cpus_is_refused(rec_model: Path, tmp_path: Path, flat) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["recae", "score", "--model", str(rec_model), "--out", str(tmp_path / "r"),
                                 "--engine", "ray", "--workers", "3"])
    assert result.exit_code == 2
    assert "--workers 3 needs 3 CPUs; the Ray cluster has 2" in flat(result.output)
    assert not (tmp_path / "r").exists()
